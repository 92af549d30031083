#!/usr/bin/env bash
# "More than one machine", run on one: the bucket (moto's S3 server here; MinIO or S3 in production),
# Redis with AOF, the API and two workers as separate processes, each started in its own empty working
# directory with nothing but the environment below -- they share only Redis and the bucket. Then
# scripts/multi_host_check.py drives it through the SDK.
# Usage: bash scripts/multi_host_demo.sh [--out docs/bench/multi_host_demo.json]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-$REPO/.venv/bin/python}
DEMO=$(mktemp -d /tmp/udic-multihost.XXXXXX)
S3_PORT=${S3_PORT:-9107} REDIS_PORT=${REDIS_PORT:-6397} API_PORT=${API_PORT:-8017}
REDIS_SERVER=$("$PY" -c "from service.stack import redis_server_binary; print(redis_server_binary())")
mkdir -p "$DEMO"/{redis,api,worker-1,worker-2}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# what every process needs: Redis and the bucket (endpoint + credentials), nothing on a shared disk
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret AWS_DEFAULT_REGION=us-east-1
export UDIC_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export UDIC_STORAGE_URL=s3://udic/demo UDIC_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export UDIC_HEARTBEAT_INTERVAL_S=2 UDIC_HEARTBEAT_GRACE_S=6 UDIC_LOG_JSON=true

# 1. the bucket
"$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$DEMO/s3.log" 2>&1 & pids+=($!)
# 2. Redis, append-only file fsynced every second
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEMO/redis" --appendonly yes \
  --appendfsync everysec --save "" >"$DEMO/redis.log" 2>&1 & pids+=($!)
"$PY" - <<PYEOF
import time, boto3, redis
for _ in range(100):
    try:
        boto3.client("s3", endpoint_url="$UDIC_S3_ENDPOINT_URL").create_bucket(Bucket="udic")
        redis.Redis.from_url("$UDIC_REDIS_URL").ping()
        break
    except Exception:
        time.sleep(0.2)
PYEOF
# 3. the API ("host A") and 4. two workers ("hosts B and C"), each in its own empty folder
(cd "$DEMO/api" && exec "$PY" -m service.main --host 127.0.0.1 --port "$API_PORT") >"$DEMO/api.log" 2>&1 & pids+=($!)
(cd "$DEMO/worker-1" && exec "$PY" -m worker.main --name worker-1) >"$DEMO/worker-1.log" 2>&1 & pids+=($!)
(cd "$DEMO/worker-2" && exec "$PY" -m worker.main --name worker-2) >"$DEMO/worker-2.log" 2>&1 & pids+=($!)

"$PY" "$REPO/scripts/multi_host_check.py" --url "http://127.0.0.1:$API_PORT" --logs "$DEMO" "$@"
echo "logs in $DEMO"
