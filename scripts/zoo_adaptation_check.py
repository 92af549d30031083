"""Functional figures of the adaptive encode on CompressAI's hyperprior family, offline.

Random-init zoo weights (``tests/zoo_weights.py``) are put where torch.hub looks for the download, and
a 64x64 Kodak crop is encoded plain and adaptively at quality 5 with the configuration of
``tests/test_zoo_adaptation.py``. Random weights show that the path works, not what quality to expect.

    PYTHONPATH=. .venv/bin/python scripts/zoo_adaptation_check.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from codec.adaptation.encoder import adaptive_encode
from codec.datasets import datasets_root
from codec.zoo import Registry
from tests.zoo_weights import write_random_zoo_weights


def main() -> None:
    home = Path(tempfile.mkdtemp())
    os.environ["TORCH_HOME"] = str(home)
    root = datasets_root()
    assert root is not None, "the shared datasets are needed (kodak/kodim23.png)"
    with Image.open(root / "kodak" / "kodim23.png") as im:
        crop = im.convert("RGB").crop((330, 220, 394, 284))
    for arch in ("bmshj2018-hyperprior", "mbt2018-mean"):
        write_random_zoo_weights(home, arch, 5)
        t = time.monotonic()
        r = adaptive_encode(
            crop, arch, quality=5, config="fast", registry=Registry(), device=torch.device("cpu"),
            latent_iters=30, latent_lr=0.05, decoder_iters=15, decoder_lr=0.02, amp=False,
        )  # fmt: skip
        points = {k: (round(b, 3), round(p, 2)) for k, (b, p) in r.points.items()}
        print(f"{arch}: chose {r.choice}; (bpp, PSNR) {points}; RD saving {r.rd_saving_pct:.1f} %; "
              f"{time.monotonic() - t:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
