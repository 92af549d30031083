#!/usr/bin/env bash
# Run here, before each GPU device call (docs/DEVICE_TRAINING.md):
#
#   scripts/device_prepare.sh [RETURNED_DIR | --from-checkpoint FILE | --fresh] [-- TRAIN_DEFAULT_ARGS...]
#
# Why: the device gets the working tree plus at most 64 MiB in all, with no registry and no
# ../shared/datasets. This fills var/device-carry/ (ignored by git, carried by name):
#   wheels/   compressai 1.2.8 (cp312, the device's Python), pytorch-msssim and pytorch-optimizer
#             (SOAP, for --optimizer soap), the packages the device image lacks;
#   ckpt/     the checkpoint parts to resume from: those a device call returned (RETURNED_DIR, the
#             tool's files_at folder: its ckpt/ is verified against the manifest), or a local
#             last.pt split into parts (--from-checkpoint), or none (--fresh);
#   pack.zip  training crops, built once (deterministic) to fit the space the rest leaves.
# What a call returned besides the parts (weights.pt, logs.tar.gz, encode_timing.json) is kept
# in var/device-runs/<time>/, outside the carry. Then it checks the size and prints the carry list
# and the device command.
#
# Environment: UDIC_PACK_MAX_MIB=40 (pack size cap), UDIC_EXPECT_CKPT_MIB=25 (room kept for a
# checkpoint when ckpt/ is empty: N=96 with Adam state is 24 MiB), UDIC_PACK_ARGS (more pack options).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${UDIC_PYTHON:-.venv/bin/python}
CARRY=var/device-carry
LIMIT_MIB=64
MARGIN_MIB=1

returned="" from_ckpt="" fresh=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --from-checkpoint) from_ckpt="$2"; shift ;;
        --fresh) fresh=1 ;;
        --) shift; break ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) returned="$1" ;;
    esac
    shift
done
train_args=("$@")
((${#train_args[@]})) || train_args=(--init codec/zoo/weights/default.pt)
mkdir -p "$CARRY/wheels" "$CARRY/ckpt"

mib() { "$PY" -c "import sys; print(f'{int(sys.argv[1]) / 2**20:.2f}')" "$1"; }
bytes_of() { { find "$@" -type f -printf '%s\n' 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
tree_bytes() {
    # what travels besides the carry: tracked and untracked-not-ignored files that exist
    git ls-files -z --cached --others --exclude-standard | "$PY" -c "
import os, sys
names = sys.stdin.buffer.read().split(b'\0')
print(sum(os.path.getsize(n) for n in names if n and os.path.isfile(n)))"
}

# 1. wheels (only what the device image lacks; the pure-Python ones at the versions used here)
if ! ls "$CARRY"/wheels/compressai-1.2.8-cp312-*.whl "$CARRY"/wheels/pytorch_optimizer-*.whl >/dev/null 2>&1; then
    msssim=$("$PY" -c "import importlib.metadata as m; print(m.version('pytorch-msssim'))")
    soap=$("$PY" -c "import importlib.metadata as m; print(m.version('pytorch-optimizer'))")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d "$CARRY/wheels" compressai==1.2.8 "pytorch-msssim==$msssim" "pytorch-optimizer==$soap"
fi

# 2. checkpoint parts
if [[ -n "$returned" ]]; then
    manifest=$(find "$returned" -maxdepth 2 -name 'last.pt.manifest.json' | head -n 1)
    [[ -n "$manifest" ]] || { echo "no last.pt.manifest.json in $returned" >&2; exit 1; }
    "$PY" -m codec.training.chunks verify "$manifest"
    keep="var/device-runs/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$keep"
    find "$returned" -maxdepth 1 -type f -exec cp {} "$keep/" \;
    rm -f "$CARRY"/ckpt/*
    cp "$(dirname "$manifest")"/last.pt.* "$CARRY/ckpt/"
    echo "checkpoint parts from $returned -> $CARRY/ckpt; weights and logs kept in $keep"
elif [[ -n "$from_ckpt" ]]; then
    cp "$from_ckpt" "$CARRY/last.pt.tmp"
    rm -f "$CARRY"/ckpt/*
    mv "$CARRY/last.pt.tmp" "$CARRY/last.pt"
    "$PY" -m codec.training.chunks split "$CARRY/last.pt" "$CARRY/ckpt"
    rm -f "$CARRY/last.pt"
elif ((fresh)); then
    rm -f "$CARRY"/ckpt/*
fi

# 3. the pack, in the room the tree, the wheels and the checkpoint leave
tree=$(tree_bytes)
wheels=$(bytes_of "$CARRY/wheels")
ckpt=$(bytes_of "$CARRY/ckpt")
((ckpt > 0)) || ckpt=$(("${UDIC_EXPECT_CKPT_MIB:-25}" << 20))
room=$("$PY" -c "print(round(min(${UDIC_PACK_MAX_MIB:-40}, $LIMIT_MIB - $MARGIN_MIB - ($tree + $wheels + $ckpt) / 2**20), 2))")
pack_bytes=$(bytes_of "$CARRY/pack.zip")
if [[ ! -f "$CARRY/pack.zip" ]] || "$PY" -c "import sys; sys.exit(not $pack_bytes > $room * 2**20)"; then
    echo "building the pack in ${room} MiB (tree $(mib "$tree"), wheels $(mib "$wheels"), checkpoint $(mib "$ckpt") MiB)"
    # shellcheck disable=SC2086
    "$PY" -m codec.training.pack --out "$CARRY/pack.zip" --max-mib "$room" ${UDIC_PACK_ARGS:-}
fi

# 4. the total that travels
carry=$(bytes_of "$CARRY")
total=$((tree + carry))
echo "travels: tree $(mib "$tree") MiB + $CARRY $(mib "$carry") MiB (pack $(mib "$(bytes_of "$CARRY/pack.zip")"), \
ckpt $(mib "$(bytes_of "$CARRY/ckpt")"), wheels $(mib "$wheels")) = $(mib "$total") of $LIMIT_MIB MiB"
if ((total > (LIMIT_MIB << 20))); then
    echo "over the limit: rebuild a smaller pack (rm $CARRY/pack.zip; UDIC_PACK_MAX_MIB=...)" >&2
    exit 1
fi
printf -v args ' %q' "${train_args[@]}"
# the CUDA encode timing once, until a call has returned one
timing="--encode-timing "
compgen -G "var/device-runs/*/encode_timing.json" >/dev/null && timing=""
echo
echo "carry: [\"$CARRY\"]"
echo "command: bash scripts/device_train.sh ${timing}--$args"
echo "timeout_s: 600; afterwards: scripts/device_prepare.sh FILES_AT_FOLDER"
