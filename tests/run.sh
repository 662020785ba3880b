#!/usr/bin/env bash
# The whole test suite, as CI runs it. Run lab/setup.sh first.
#   - the gates (ruff, mypy, ansible-lint of the catalog), in the background: they need the CPU the lab lanes leave;
#   - pytest over 4 xdist workers (--dist loadgroup, tests/conftest.py LANES): two lab lanes, each with a lab
#     instance of its own, and everything else (unit, security, every Molecule scenario as a test item, the store's
#     tests again on PostgreSQL) spread over whichever worker is free; coverage floor of pyproject;
#   - then the real small model's tests, alone (their time bounds need a CPU of their own);
#   - at the end, a table of each phase's minutes, pytest's slowest tests and where the CPU went (tests/cpu.py): on
#     two cores the run is as long as its CPU time, so every log shows where the time goes.
# Fast inner loop instead: .venv/bin/pytest -m unit -n 2    (or one file, without -n)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
logs=var/ci
rm -rf "$logs"; mkdir -p "$logs"
started=$SECONDS
python -m tests.cpu snapshot "$logs/cpu-start.json"

# timed NAME CMD...: run CMD, note its seconds and exit code in $logs/phases
timed() {
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$rc" >> "$logs/phases"
  return "$rc"
}

table() {
  echo
  echo "== phases (minutes; the gates overlap pytest)"
  if [ -n "${REMEDIATOR_CI_SETUP_S:-}" ]; then   # .ci/run: lab/setup.sh ran before this script
    awk -v s="$REMEDIATOR_CI_SETUP_S" 'BEGIN { printf "  %-34s %6.1f  ok\n", "setup (lab/setup.sh)", s / 60 }'
  fi
  awk -F'\t' '{ printf "  %-34s %6.1f  %s\n", $1, $2 / 60, ($3 == 0 ? "ok" : "FAILED rc=" $3) }' "$logs/phases"
  awk -v s=$((SECONDS - started)) 'BEGIN { printf "  %-34s %6.1f\n", "tests/run.sh, wall", s / 60 }'
  [ -z "${REMEDIATOR_CI_SETUP_S:-}" ] ||
    awk -v s=$((SECONDS - started + REMEDIATOR_CI_SETUP_S)) 'BEGIN { printf "  %-34s %6.1f\n", ".ci/run, wall", s / 60 }'
}
trap table EXIT

gates() {
  timed "gates: ruff" nice -n 15 ruff check . &&
  timed "gates: mypy" nice -n 15 mypy remediator &&
  timed "gates: ansible-lint" nice -n 15 ansible-lint -q --profile production playbooks/ molecule/
}
# The gates run niced: they have no deadline, the lab lanes do.
echo "== gates (ruff, mypy, ansible-lint) in the background: $logs/gates.log"
gates > "$logs/gates.log" 2>&1 &
gates_pid=$!

echo "== pytest: -n 4 --dist loadgroup (lab lanes, Molecule, unit, security, the store on PostgreSQL)"
timed "pytest" pytest -ra -n 4 --dist loadgroup -m "not model" --durations=40 --junitxml="$logs/junit.xml" \
  --cov --cov-report=term "$@"
pytest_rc=$?

# The real model answers within the planner's time bounds only on a CPU of its own: on two cores shared with the lab
# lanes its answers ran past them (tests/local_model.py). So it runs after the rest, alone.
model() {   # exit code 5: none of the tests asked for is a model test
  local rc=0
  pytest -ra -m model --durations=10 --junitxml="$logs/junit-model.xml" "$@" || rc=$?
  [ "$rc" -eq 5 ] && rc=0
  return "$rc"
}
echo "== pytest: the real small model (-m model), alone"
python -m tests.cpu busiest 5   # whatever still runs: the model phase took twice its time alone in CI
python -m tests.cpu snapshot "$logs/cpu-model.json"
(sleep 120; python -m tests.cpu busiest 10 > "$logs/busiest-model.txt") &   # and what it shares the cores with
timed "pytest: the model" model "$@" || pytest_rc=1
cat "$logs/busiest-model.txt" 2>/dev/null
python -m tests.cpu since "$logs/cpu-model.json"

gates_rc=0
wait "$gates_pid" || gates_rc=$?
echo "== gates"
cat "$logs/gates.log"
python -m tests.cpu snapshot "$logs/cpu-end.json"
python -m tests.cpu report "$logs/cpu-start.json" "$logs/cpu-end.json" "$logs/junit.xml" "$logs/junit-model.xml"

# Nothing a run started may outlive it: no lab container, Molecule instance, ansible-playbook, serve or model server.
if ! left=$(python -m tests.leftovers); then
  echo "== left behind by the tests:"
  echo "$left"
  pytest_rc=1
fi

[ "$gates_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ]
