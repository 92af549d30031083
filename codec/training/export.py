"""Export a training checkpoint as shipped weights: fp16 parameters plus probability tables.

The tables are computed *after* rounding the weights to fp16, from exactly the weights a decoder
will load, and stored in the file, so no ``update()`` runs at decode time (docs/ARCHITECTURE.md, decode).

    python -m codec.training.export runs/default/last.pt codec/zoo/weights/default.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from codec.models.gained import GainedMeanScaleHyperprior
from codec.zoo.loaders import load_gained_file


def _floor(key: str) -> bool:
    """Likelihood floors (1e-9) stay fp32: fp16 would flush them to 0."""
    return "likelihood_lower_bound" in key


def export(src: Path, dst: Path, description: str = "") -> bytes:
    state = torch.load(src, map_location="cpu", weights_only=False)
    cfg = state["config"]
    net = GainedMeanScaleHyperprior.from_config(cfg)
    net.load_state_dict(state["model"], strict=False)
    # round trip through fp16 first, so the tables belong to the shipped weights
    sd16 = {
        k: (v.half() if v.is_floating_point() and "quantized_cdf" not in k else v) for k, v in net.state_dict().items()
    }
    net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in sd16.items()}, strict=False)
    net.update(force=True)
    out = {
        k: (v.half() if v.is_floating_point() and k != "gaussian_conditional.scale_table" and not _floor(k) else v)
        for k, v in net.state_dict().items()
    }
    payload = {
        "config": cfg,
        "state_dict": out,
        "description": description
        or f"gained mean-scale hyperprior N={cfg['N']} M={cfg['M']}, step {state.get('step')}",
        "step": state.get("step"),
        "train_seconds": state.get("wall"),
        "history": state.get("history", []),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, dst)
    # the hash decoders will see: the file read back by the loader they use
    return load_gained_file(dst, "export").hash


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    h = export(args.src, args.dst)
    print(f"wrote {args.dst} ({args.dst.stat().st_size / 1e6:.2f} MB), weights hash {h.hex()}")


if __name__ == "__main__":
    main()
