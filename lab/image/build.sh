#!/usr/bin/env bash
# Builds the lab host image: a Debian root with systemd and python3 (debootstrap), the lab
# services on top, imported into Podman (no registry is reachable here).
# Cached twice: the debootstrap root by its package list, the image by the hash of its inputs,
# so a second build with nothing changed takes well under a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${REMEDIATOR_LAB_IMAGE:-localhost/remediator-lab}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,systemd,systemd-sysv,dbus,procps,iproute2,nginx,openssh-server,sudo
cache=${REMEDIATOR_CACHE:-/var/cache/remediator}

inputs_hash=$( (echo "$suite $packages"; cd "$here" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)
if podman image exists "$image:$inputs_hash"; then
  podman tag "$image:$inputs_hash" "$image:latest"
  echo "lab image $image:$inputs_hash is up to date"
  exit 0
fi

base="$cache/rootfs-$suite-$(echo "$packages" | sha256sum | cut -c1-8)"
if [ ! -f "$base/.complete" ]; then
  rm -rf "$base"; mkdir -p "$cache"
  echo "debootstrap $suite into $base (a few minutes, once)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$base" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  touch "$base/.complete"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$base" "$work/root"
root="$work/root"
cp -a "$here/overlay/." "$root/"
# Two releases of the webapp; `current` points at the newest. rollback_release moves it back.
for v in 1.4.1 1.4.2; do
  mkdir -p "$root/opt/webapp/releases/$v"
  cp "$root/usr/local/lib/remediator-lab/webapp.py" "$root/opt/webapp/releases/$v/webapp.py"
  echo "$v" > "$root/opt/webapp/releases/$v/VERSION"
  touch -d "2026-01-0${v##*.} 00:00" "$root/opt/webapp/releases/$v"
done
ln -sfn /opt/webapp/releases/1.4.2 "$root/opt/webapp/current"
mkdir -p "$root/var/log/webapp" "$root/var/spool/webapp/queue" "$root/var/tmp/webapp"
echo "lab" > "$root/etc/hostname"
# Units a container has no use for, and that only slow the boot down.
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service \
            systemd-networkd-wait-online.service getty@tty1.service console-getty.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$root"/etc/ssh/ssh_host_*   # each host gets its own key at `lab up`, never one shared by the image
rm -f "$root/etc/nginx/sites-enabled/default"    # the lab's site is conf.d/webapp.conf, on 127.0.0.1:8000
systemctl --root="$root" enable webapp.service api-gateway.service worker@1.service nginx.service lab-client.service ssh.service >/dev/null 2>&1
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

tar -C "$root" -c . | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' - "$image:$inputs_hash" >/dev/null
podman tag "$image:$inputs_hash" "$image:latest"
echo "built $image:$inputs_hash"
