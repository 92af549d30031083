"""Seconds of WACNN's coding at 768x512 (kodim23) with random weights, offline.

A random-weight checkpoint in the published format (``tests/wacnn_weights.py``) is registered as a
user model would be; then one process measures the model load, a plain encode (its verification
decode included), a decode on all cores and a bit-exact one, and the adaptive encode's cost per
latent-refinement step and per adapter step (a few steps each: the preset's counts times these give
an encode's length), then the functional check of ``tests/test_wacnn.py`` on a 64x64 crop (plain,
refined latents, latents + adapters). Random weights: the seconds are real, the bits and PSNR only
show that the path works. Writes
``docs/bench/wacnn_timing.json`` with the load average, which says how busy the machine was.

    nice -n 5 env PYTHONPATH=. .venv/bin/python scripts/wacnn_timing.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from codec.adaptation import stages
from codec.adaptation.config import PRESETS
from codec.adaptation.encoder import AdaptiveEncoder, adaptive_encode, resolve_config
from codec.coder import decode_image, encode_resolved, load_input
from codec.datasets import datasets_root
from codec.progress import no_progress
from codec.zoo import Registry
from tests.wacnn_weights import write_random_wacnn

OUT = Path("docs/bench/wacnn_timing.json")
LATENT_STEPS, ADAPTER_STEPS = 4, 4


CPU: dict[str, float] = {}


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    """(result, wall seconds); the process's CPU seconds go to :data:`CPU` under the function's name
    (on a busy machine they say more than the wall clock: both threads' work, not the waiting)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    CPU[getattr(fn, "__name__", "?")] = round(time.process_time() - c, 2)
    return out, round(time.perf_counter() - t, 2)


def decode_bit_exact(data: bytes, reg: Registry) -> object:
    return decode_image(data, reg, bit_exact=True)


def functional(reg: Registry, path: Path) -> dict[str, object]:
    """The adaptive encode of ``tests/test_wacnn.py``'s 64x64 crop with its configuration: candidates
    as (bpp, PSNR) of real files, and the RD saving of the chosen one (random weights: the path works)."""
    with Image.open(path) as im:
        crop = im.convert("RGB").crop((330, 220, 394, 284))
    r = adaptive_encode(
        crop, "wacnn-random", config="fast", registry=reg, device=torch.device("cpu"),
        latent_iters=12, latent_lr=0.05, decoder_iters=8, decoder_lr=0.02, amp=False,
    )  # fmt: skip
    points = {k: [round(b, 3), round(p, 2)] for k, (b, p) in r.points.items()}
    return {"points_bpp_psnr": points, "choice": r.choice, "rd_saving_pct": round(r.rd_saving_pct, 1)}


def main() -> None:
    root = datasets_root()
    assert root is not None, "the shared datasets are needed (kodak/kodim23.png)"
    with Image.open(root / "kodak" / "kodim23.png") as im:
        img = load_input(im.convert("RGB"))
    ckpt = write_random_wacnn(Path(tempfile.mkdtemp()) / "wacnn.pth.tar")
    reg = Registry(capacity=1)
    reg.register_checkpoint("wacnn-random", ckpt, "wacnn", 0.0130)
    (base, level), load_s = _timed(reg.resolve, "wacnn-random")
    plain, encode_s = _timed(encode_resolved, base, img, level, reg)
    _, decode_s = _timed(decode_image, plain.data, reg)
    _, exact_s = _timed(decode_bit_exact, plain.data, reg)
    cfg = resolve_config("fast", latent_iters=LATENT_STEPS, decoder_iters=ADAPTER_STEPS, amp=False)
    enc = AdaptiveEncoder(base, img, level, cfg, torch.device("cpu"), no_progress, reg)
    with torch.no_grad():
        y0, z0 = enc.model.analysis(enc.x)
    (yg, z), refine_s = _timed(enc.refine_latents, y0, z0)  # a hard check at the start and after each step
    _, hard_s = _timed(stages.hard_loss, enc, yg, z)
    _, adapters_s = _timed(enc.train_adapters, yg, z)
    step_s = max(0.0, refine_s - (LATENT_STEPS + 1) * hard_s) / LATENT_STEPS
    fast = PRESETS["fast"]  # its checks: one at the start and every tenth of the steps
    fast_s = 3 * encode_s + fast.latent_iters * step_s + 11 * hard_s + fast.decoder_iters * adapters_s / ADAPTER_STEPS
    result = {
        "image": "kodim23.png 768x512",
        "weights": "random (tests/wacnn_weights.py), published checkpoint format",
        "threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "model_load_s": load_s,
        "plain_encode_s": encode_s,
        "decode_s": decode_s,
        "decode_bit_exact_s": exact_s,
        "plain_bytes": len(plain.data),
        "latent_refinement_s_per_step": round(step_s, 2),
        "hard_check_s": hard_s,
        "adapter_s_per_step": round(adapters_s / ADAPTER_STEPS, 2),
        "fast_preset_estimate_s": round(fast_s, 1),
        "fast_estimate_from": "plain encode + 2 candidate files (each coded and verified like it) + "
        f"{fast.latent_iters} refinement steps + 11 hard checks + {fast.decoder_iters} adapter steps",
        "cpu_s": CPU,
        "command": "nice -n 5 env PYTHONPATH=. .venv/bin/python scripts/wacnn_timing.py",
    }
    result["functional_64x64"] = functional(reg, root / "kodak" / "kodim23.png")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
