#!/usr/bin/env bash
# Builds remediator's OCI image from a wheel: bash packaging/image/build.sh dist/remediator-*.whl [TAG]
# The base is a Debian root (debootstrap: python3, venv, the SSH client) imported into Podman, since no image
# registry is reachable here; with one, FROM debian:bookworm-slim plus those packages is the same base.
# The wheel and every dependency are gathered into a wheelhouse first, so the build itself needs no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wheel=$(realpath "${1:?usage: build.sh WHEEL [TAG]}")
tag=${2:-localhost/remediator:latest}
base=${REMEDIATOR_IMAGE_BASE:-localhost/remediator-base:bookworm}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,openssh-client,ca-certificates
cache=${REMEDIATOR_CACHE:-/var/cache/remediator}
python=${PYTHON:-python3}

if ! podman image exists "$base"; then
  root="$cache/rootfs-$suite-$(echo "$packages" | sha256sum | cut -c1-8)"
  if [ ! -f "$root/.complete" ]; then
    rm -rf "$root"; mkdir -p "$cache"
    echo "debootstrap $suite into $root (a few minutes, once)"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$cache/debootstrap-image.log" 2>&1 \
      || { tail -20 "$cache/debootstrap-image.log"; exit 1; }
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    touch "$root/.complete"
  fi
  tar -C "$root" --exclude=./.complete -c . | podman import - "$base" >/dev/null
  echo "imported the base $base"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Containerfile" "$context/"
mkdir "$context/wheels"
"$python" -m pip wheel -q -w "$context/wheels" "$wheel"
podman build -q --format docker --build-arg "BASE=$base" -t "$tag" "$context" >/dev/null
echo "built $tag"
