#!/usr/bin/env bash
# Install what the tests need, then run the test suite (slow benchmarks excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
