"""What a training session of the default model reads and records: its training images (folders
or a pack) with the Kodak bench crops it evaluates on, and the record of where and on what it ran,
which the model card turns into its history table and continue command."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.datasets import bench_images, datasets_root
from codec.sampling import load_training_images
from codec.training.pack import load_pack


def data_name(folder: Path) -> str:
    """A training folder as the model card names it: relative to the shared datasets when inside
    them (``graphics-train/screen``, never just ``screen``, which is an evaluation folder's name)."""
    root = datasets_root()
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix() if root else folder.name
    except ValueError:
        return folder.name


def session_record(args: argparse.Namespace, device: torch.device, trainer: Any) -> dict:
    """What the model card reports per session: where it ran, on what data, from which step."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return {
        "device": name,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "data": str(args.pack) if args.pack else [data_name(Path(f)) for f in args.data],
        "precision": args.precision,
        "optimiser": args.optimizer,
        "lr": args.lr,
        "N": trainer.model.N,
        "start_step": trainer.step,
        "start_wall": trainer.wall,
    }


def training_images(args: argparse.Namespace, folders: list[Path]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The training images (folders or pack) and the Kodak bench crops, or None where neither has them."""
    crops = None
    if args.pack is not None:
        pack = load_pack(args.pack)
        images = [c for c in pack.crops if min(c.shape[1:]) >= args.crop]
        if not images:
            raise SystemExit(f"{args.pack} holds no crop of at least {args.crop} pixels")
        crops = pack.eval_crops.get("kodak")
    else:
        images = load_training_images(folders, args.crop)
    root = datasets_root()
    if crops is None and root is not None and (root / "kodak").is_dir():
        crops = [b.rgb for b in bench_images("kodak")]
    return images, (as_batch(crops) if crops else None)


def as_batch(crops: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 crops as one float batch in [0, 1], as the trainer evaluates them."""
    return torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() / 255 for c in crops])
