#!/usr/bin/env bash
# Install what the tests need (the project, its SDK, a redis-server), then run the test suite.
# Slow benchmarks are excluded (pytest -m slow runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure_redis.sh >&2
exec .venv/bin/python -m pytest -q "$@"
