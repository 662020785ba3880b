#!/usr/bin/env bash
# The first fix, through the engine: start the lab fleet (with its Prometheus and Alertmanager) and
# `remediator serve` (in the background,
# with the lab inventory), stop api-gateway on api-server-01, post the captured Alertmanager sample
# with curl, and show the incident: diagnosed, planned, dry-run, restarted, verified, audited.
# The server keeps running afterwards on 127.0.0.1:8080 (token: $REMEDIATOR_TOKENS, else one made for this
# data dir on the first run and kept in DATA_DIR/serve-token, var/ by default, mode 0600); stop it with
#   kill "$(cat var/serve.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# The settings the engine reads too (REMEDIATOR_DATA_DIR, REMEDIATOR_PORT, the lab's REMEDIATOR_LAB_*_PORT), so the
# serve started here is the one `remediator demo` finds afterwards (tests/chaos/test_drills.py runs both, in order).
data=${REMEDIATOR_DATA_DIR:-var}
mkdir -p "$data"
if [ -z "${REMEDIATOR_TOKENS:-}" ]; then   # never a well-known default: a token of this data dir's own
  [ -s "$data/serve-token" ] || (umask 077 && python3 -c 'import secrets; print("demo:" + secrets.token_urlsafe(32))' >"$data/serve-token")
  REMEDIATOR_TOKENS=$(cat "$data/serve-token")
fi
export REMEDIATOR_TOKENS
# The lab breaks hosts of both its regions within minutes on purpose (`remediator demo` after this, the drills): the
# serve started here runs with the cross-region brake and the waves off, as theirs does (docs/scaling.md).
export REMEDIATOR_BRAKE_REGIONS=${REMEDIATOR_BRAKE_REGIONS:-99} REMEDIATOR_WAVE_WINDOW_S=${REMEDIATOR_WAVE_WINDOW_S:-0}
# The lab's own Prometheus and Alertmanager (started by `lab up`): evidence, verify, truncated groups.
export REMEDIATOR_PROMETHEUS_URL=${REMEDIATOR_PROMETHEUS_URL:-http://127.0.0.1:${REMEDIATOR_LAB_PROMETHEUS_PORT:-19090}}
export REMEDIATOR_ALERTMANAGER_URL=${REMEDIATOR_ALERTMANAGER_URL:-http://127.0.0.1:${REMEDIATOR_LAB_ALERTMANAGER_PORT:-19093}}
token=${REMEDIATOR_TOKENS%%,*}
url=http://127.0.0.1:${REMEDIATOR_PORT:-8080}
sample=${SAMPLE:-$root/tests/fixtures/samples/alertmanager-firing-grouped.json}

.venv/bin/remediator lab up
if [ -f "$data/serve.pid" ] && kill -0 "$(cat "$data/serve.pid")" 2>/dev/null; then
  echo "== remediator serve is already running (pid $(cat "$data/serve.pid"))"
else
  nohup .venv/bin/remediator serve >"$data/serve.log" 2>&1 &
  echo $! >"$data/serve.pid"
  for _ in $(seq 60); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.5; done
  curl -fs "$url/healthz" >/dev/null || { tail -20 "$data/serve.log"; exit 1; }
  echo "== remediator serve is up on $url (pid $(cat "$data/serve.pid"), log $data/serve.log)"
fi

# api-server-01's container (`lab status` names it: remediator-lab-api-server-01 in the checkout's lab)
host=$(.venv/bin/remediator lab status | sed -n 's/^api-server-01: .*(container \([^,]*\),.*/\1/p')
podman exec "$host" systemctl stop api-gateway
echo "== api-gateway on api-server-01: $(podman exec "$host" systemctl is-active api-gateway || true)"
echo "== posting $(basename "$sample") (ServiceDown for api-server-01, -02, -03)"
curl -fsS -X POST "$url/webhook/alertmanager" -H "Authorization: Bearer $token" \
     -H 'Content-Type: application/json' --data-binary @"$sample"
echo
# The 200 means the delivery is stored; the ingester opens its incidents a moment later.
incident=
for _ in $(seq 50); do
  incident=$(.venv/bin/remediator incidents list --json | python3 -c \
    'import json,sys; print(next((i["id"] for i in json.load(sys.stdin) if i["host"] == "api-server-01"), ""))')
  [ -n "$incident" ] && break
  sleep 0.2
done
[ -n "$incident" ] || { echo "no incident for api-server-01"; tail -20 "$data/serve.log"; exit 1; }
for _ in $(seq 120); do
  state=$(curl -fs -H "Authorization: Bearer $token" "$url/incidents/$incident" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  case $state in resolved|failed|escalated|denied|awaiting_approval) break;; esac
  sleep 1
done
echo "== incident $incident: $state"
COLUMNS=${COLUMNS:-160} .venv/bin/remediator incidents show "$incident"
echo "== api-gateway on api-server-01: $(podman exec "$host" systemctl is-active api-gateway || true)"
COLUMNS=${COLUMNS:-160} .venv/bin/remediator incidents list
.venv/bin/remediator audit verify
echo "== the whole chain: podman exec remediator-lab-app-server-01 systemctl stop webapp  -> Prometheus sees it,"
echo "   Alertmanager posts it, remediator fixes it: watch .venv/bin/remediator incidents list"
echo "== the server keeps running: curl -H 'Authorization: Bearer $token' $url/incidents ; stop it: kill \$(cat $data/serve.pid)"
