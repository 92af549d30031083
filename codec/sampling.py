"""Training images held in RAM and random crops from them.

Shared by the base-model training and the domain-adapter training, so it lives outside both (domain
adapters must not depend on training scripts), and both draw batches the same way: uniform over
images, a uniform crop position, a horizontal flip half of the time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from codec.datasets import list_images


def load_training_images(folders: Iterable[Path], min_side: int) -> list[torch.Tensor]:
    """Every image of ``folders`` as a uint8 CHW tensor; images smaller than ``min_side`` are skipped."""
    paths = [p for folder in folders for p in list_images(folder)]
    images = []
    for path in tqdm(paths, desc="loading", leave=False):
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    return images


def random_batch(images: list[torch.Tensor], batch: int, crop: int, gen: random.Random) -> torch.Tensor:
    """``batch`` random ``crop`` x ``crop`` patches in [0, 1], float32 NCHW."""
    out = torch.empty(batch, 3, crop, crop, dtype=torch.uint8)
    for i in range(batch):
        img = images[gen.randrange(len(images))]
        _, h, w = img.shape
        y, x = gen.randrange(h - crop + 1), gen.randrange(w - crop + 1)
        patch = img[:, y : y + crop, x : x + crop]
        if gen.random() < 0.5:
            patch = patch.flip(-1)
        out[i] = patch
    return out.float().div_(255.0)
