#!/usr/bin/env bash
# A first fix on the lab, by hand: stop webapp on app-server-01, dry-run restart_service (nothing
# changes), run it for real, and show webapp answering again on 127.0.0.1:18081.
set -euo pipefail
cd "$(dirname "$0")/../playbooks"
ap=../.venv/bin/ansible-playbook
args=(-i ../inventory/lab.yml restart_service.yml -e target_hosts=app-server-01
      -e restart_service_unit=webapp -e "restart_service_reason=first fix from the README")
podman exec remediator-lab-app-server-01 systemctl stop webapp
echo "== webapp stopped: $(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:18081/health || true)"
echo "== dry run (--check --diff)"; "$ap" "${args[@]}" --check --diff
echo "== still down: $(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:18081/health || true)"
echo "== real run"; "$ap" "${args[@]}"
echo "== webapp answers: $(curl -s 127.0.0.1:18081/health)"
