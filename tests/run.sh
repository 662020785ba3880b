#!/usr/bin/env bash
# The whole test suite, as CI runs it: the gates (ruff, mypy), lint the catalog, every Molecule scenario, then pytest
# (unit, integration against lab containers, end to end, a real small model: tests/local_model.py; coverage floor),
# and the store's tests once more on PostgreSQL. Run lab/setup.sh first.
# Fast inner loop instead: .venv/bin/pytest -m unit
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== gates: ruff, mypy"
ruff check .
mypy remediator

echo "== ansible-lint (production profile)"
ansible-lint --profile production playbooks/ molecule/

echo "== molecule: every scenario"
molecule test --all

echo "== pytest (with the coverage floor of pyproject.toml)"
pytest -ra --cov --cov-report=term "$@"

echo "== the store's tests again, on PostgreSQL (a throwaway cluster: tests/postgres.py)"
REMEDIATOR_TEST_DATABASE=postgres pytest -ra -m unit tests/unit/test_intake.py tests/unit/test_pipeline.py \
  tests/unit/test_audit.py tests/unit/test_notify.py tests/unit/test_approvals.py tests/unit/test_breaker.py \
  tests/unit/test_api.py tests/unit/test_faults.py tests/security/test_fairness.py \
  tests/security/test_store_limits.py tests/security/test_amplification.py tests/unit/test_retention.py \
  tests/unit/test_suggest.py tests/unit/test_reports.py tests/unit/test_blast.py
