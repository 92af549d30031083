#!/usr/bin/env bash
# Install what the tests need (the project, its SDK, a redis-server), check style and types, then run
# the test suite. Fails on a ruff finding, an unformatted file or a mypy error (CI runs exactly this).
# Slow benchmarks are excluded (pytest -m slow runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure_redis.sh >&2
echo "test.sh: ruff check, ruff format --check, mypy" >&2
.venv/bin/ruff check . || { echo "test.sh: ruff check failed (fix, or run .venv/bin/ruff check --fix .)" >&2; exit 1; }
.venv/bin/ruff format --check . || { echo "test.sh: files not formatted (run .venv/bin/ruff format .)" >&2; exit 1; }
.venv/bin/mypy codec service worker udic_jobs client/udic_client || { echo "test.sh: mypy found type errors" >&2; exit 1; }
# Idle torch/OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
# slowed adaptive-encode tests several times over (numerics are unchanged).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m pytest -q "$@"
