#!/usr/bin/env bash
# The one command run on the GPU device machine (docs/DEVICE_TRAINING.md), from the repo root:
#
#   bash scripts/device_train.sh [--encode-timing] [--no-train] [-- TRAIN_DEFAULT_ARGS...]
#
# Why one script: the device runs one bash command of at most 10 minutes on a copy of the tree
# plus the carried var/device-carry (wheels, pack.zip, ckpt/ parts), cannot reach a registry or
# ../shared/datasets, and returns at most 8 files of at most 16 MiB from $OUT. So it installs the
# carried wheels offline, rebuilds the previous checkpoint from its parts, trains from the pack
# until a deadline inside the 10 minutes (SIGTERM on overrun: train_default then saves), and
# returns the checkpoint as <= 15 MiB parts, the exported weights and the logs.
#
# $OUT gets: ckpt/last.pt.partNNN + ckpt/last.pt.manifest.json, weights.pt (shipped format),
# logs.tar.gz (train.log, log.csv, eval.csv, env.txt, encode_timing.json), encode_timing.json.
#
# Environment (defaults for the device; the tests shrink them):
#   UDIC_CARRY=var/device-carry  UDIC_PYTHON=python3  UDIC_RUN_DIR=/tmp/udic-device-run
#   UDIC_BUDGET_S=560 (the whole command)  UDIC_TRAIN_MINUTES=8.5 (at most)  UDIC_SCHEDULE_MINUTES=17
#   UDIC_SKIP_INSTALL=1 (never pip; else pip only when compressai does not import)
#   UDIC_ENCODE_IMAGE (default: the pack's kodim23)  UDIC_PART_MIB=15
set -euo pipefail

CARRY=${UDIC_CARRY:-var/device-carry}
OUT=${OUT:?set OUT to the folder whose files come back}
PY=${UDIC_PYTHON:-python3}
RUN_DIR=${UDIC_RUN_DIR:-/tmp/udic-device-run}
BUDGET_S=${UDIC_BUDGET_S:-560}
TRAIN_MINUTES=${UDIC_TRAIN_MINUTES:-8.5}
SCHEDULE_MINUTES=${UDIC_SCHEDULE_MINUTES:-17}
RESERVE_S=${UDIC_RESERVE_S:-60}   # model load before the loop's clock starts, then save, split, export
PART_MIB=${UDIC_PART_MIB:-15}
SITE=${UDIC_SITE:-/tmp/udic-site}

ENCODE_TIMING=0
TRAIN=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --encode-timing) ENCODE_TIMING=1 ;;
        --no-train) TRAIN=0 ;;
        --) shift; break ;;
        *) break ;;
    esac
    shift
done
TRAIN_ARGS=("$@")

mkdir -p "$OUT" "$RUN_DIR"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

log() { echo "[device_train $(date +%H:%M:%S) +${SECONDS}s] $*"; }

install_deps() {
    # compressai, pytorch-msssim and pytorch-optimizer are not in the device image; torch, numpy, PIL are.
    if [[ "${UDIC_SKIP_INSTALL:-0}" == 1 ]] || "$PY" -c "import compressai, pytorch_msssim, pytorch_optimizer" 2>/dev/null; then
        log "dependencies already importable"
        return
    fi
    log "installing the carried wheels: $(find "$CARRY/wheels" -name "*.whl" -printf "%f ")"
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$CARRY"/wheels/*.whl; then
        # a wheel is a zip of the installed files: unpacking it is enough for an import
        log "pip refused the wheels: unpacking them into $SITE instead"
        for whl in "$CARRY"/wheels/*.whl; do "$PY" -m zipfile -e "$whl" "$SITE"; done
    fi
    export PYTHONPATH="$PYTHONPATH:$SITE"
    "$PY" -c "import compressai, pytorch_msssim; print('compressai', compressai.__version__)"
}

probe() {
    {
        "$PY" -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'numpy', \
numpy.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() \
else '-')"
        nvidia-smi -L 2>/dev/null || true
        git rev-parse HEAD 2>/dev/null || true
    } | tee "$RUN_DIR/env.txt"
}

restore_checkpoint() {
    local manifest="$CARRY/ckpt/last.pt.manifest.json"
    if [[ -f "$RUN_DIR/last.pt" ]]; then
        log "continuing from $RUN_DIR/last.pt (same machine)"
    elif [[ -f "$manifest" ]]; then
        "$PY" -m codec.training.chunks join "$manifest" "$RUN_DIR/last.pt"
    else
        log "no checkpoint parts in $CARRY/ckpt: a new run (pass --init in the train arguments)"
    fi
}

encode_timing() {
    local img="${UDIC_ENCODE_IMAGE:-}"
    if [[ -z "$img" ]]; then
        img=$("$PY" -c "from pathlib import Path; from codec.training.pack import extract_extras as e; \
print(next(iter(e(Path('$CARRY/pack.zip'), Path('$RUN_DIR/extra'))), ''))")
    fi
    [[ -n "$img" ]] || { log "no image for the encode timing"; return 1; }
    # at most 4 minutes, so a stuck encode still leaves time to train
    timeout 240 "$PY" - "$img" "$RUN_DIR" <<'EOF' | tee "$RUN_DIR/encode_timing.txt"
"""Time the CLI's adaptive encode (fast preset, quality 3) twice: the first run includes CUDA start-up."""
import json, subprocess, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
img, run = Path(sys.argv[1]), Path(sys.argv[2])
out, rec = run / "enc.udic", run / "enc.png"
runs = []
for _ in range(2):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "codec.cli", "encode", str(img), "-o", str(out), "-q", "3",
                    "--adapt", "fast", "--quiet"], check=True)
    runs.append(round(time.perf_counter() - t, 2))
t = time.perf_counter()
subprocess.run([sys.executable, "-m", "codec.cli", "decode", str(out), "-o", str(rec), "--quiet"], check=True)
dec = round(time.perf_counter() - t, 2)
a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in (img, rec))
import torch
res = {"image": img.name, "size": list(Image.open(img).size), "preset": "fast", "quality": 3,
       "encode_s": runs, "decode_s": dec, "bytes": out.stat().st_size,
       "bpp": round(8 * out.stat().st_size / (a.shape[0] * a.shape[1]), 4),
       "psnr": round(float(10 * np.log10(255**2 / np.mean((a - b) ** 2))), 3),
       "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
       "note": "wall seconds of the whole CLI process (Python start, model load, CUDA init)"}
(run / "encode_timing.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res))
EOF
    cp "$RUN_DIR/encode_timing.json" "$OUT/"
}

train() {
    local stop_s=$((BUDGET_S - SECONDS - RESERVE_S))
    local stop_min
    stop_min=$("$PY" -c "print(round(max(0.05, min($TRAIN_MINUTES, $stop_s / 60)), 3))")
    local hard=$((BUDGET_S - SECONDS - 20))
    log "training for at most $stop_min min (schedule $SCHEDULE_MINUTES min), hard stop in ${hard}s"
    local rc
    set +e
    timeout -s TERM -k 15 "$hard" "$PY" -m codec.training.train_default --pack "$CARRY/pack.zip" --out "$RUN_DIR" \
        --minutes "$SCHEDULE_MINUTES" --stop-after-minutes "$stop_min" "${TRAIN_ARGS[@]}" 2>&1 \
        | tee -a "$RUN_DIR/train.log"
    rc=${PIPESTATUS[0]}
    set -e
    # 124: the hard stop sent SIGTERM, on which train_default saves its checkpoint and leaves
    if [[ $rc != 0 && $rc != 124 ]]; then
        log "train_default failed (exit $rc)"
        return "$rc"
    fi
}

ship() {
    # what comes back: <= 8 files of <= 16 MiB, at most two folders down
    if [[ -f "$RUN_DIR/last.pt" ]]; then
        "$PY" -m codec.training.chunks split "$RUN_DIR/last.pt" "$OUT/ckpt" --part-mib "$PART_MIB"
        "$PY" -m codec.training.export "$RUN_DIR/last.pt" "$OUT/weights.pt"
    fi
    local files=()
    for f in train.log log.csv eval.csv env.txt encode_timing.json encode_timing.txt; do
        [[ -f "$RUN_DIR/$f" ]] && files+=("$f")
    done
    tar czf "$OUT/logs.tar.gz" -C "$RUN_DIR" "${files[@]}"
    [[ -f "$RUN_DIR/log.csv" ]] && { log "log.csv (last rows):"; tail -n 5 "$RUN_DIR/log.csv"; }
    [[ -f "$RUN_DIR/eval.csv" ]] && { log "eval.csv (last rows):"; tail -n 6 "$RUN_DIR/eval.csv"; }
    local n
    n=$(find "$OUT" -type f | wc -l)
    log "\$OUT holds $n files:"
    find "$OUT" -type f -printf '  %P %s\n' | sort
    if ((n > 8)) || find "$OUT" -type f -size +16M | grep -q .; then
        log "WARNING: more than 8 files or a file over 16 MiB in \$OUT: not everything comes back"
    fi
}

rc=0
probe
install_deps
if ((ENCODE_TIMING)); then
    encode_timing || { log "encode timing failed"; rc=1; }
fi
if ((TRAIN)); then
    restore_checkpoint
    train || rc=$?
fi
ship
log "done (exit $rc)"
exit "$rc"
