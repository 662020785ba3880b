#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint the catalog, every Molecule scenario, then pytest
# (unit, integration against lab containers, end to end). Run lab/setup.sh first.
# Fast inner loop instead: .venv/bin/pytest -m unit
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== ansible-lint (production profile)"
ansible-lint --profile production playbooks/ molecule/

echo "== molecule: every scenario"
molecule test --all

echo "== pytest"
pytest -ra "$@"
