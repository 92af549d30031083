"""Random-weight WACNN checkpoints in the authors' published format, for tests and functional figures.

No published file is reachable offline, so tests write random weights the way the authors' training
saves them: a ``state_dict`` entry next to training state, ``module.`` prefixes (DataParallel) and
CompressAI's older names for the entropy bottleneck (``_matrix0`` ...). As in ``tests/zoo_weights.py``,
the analysis's last convolution is scaled so that the latents span a few quantisation bins, like a
trained model's, and the synthesis outputs mid-grey rather than black.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codec.models.wacnn import WACNN

LATENT_SCALE = 30.0
_OLD_EB = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}


def as_published(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    """Our state dict as the authors' training saves it (DataParallel, older CompressAI names)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "entropy_bottleneck" and parts[1] in _OLD_EB:
            k = f"entropy_bottleneck.{_OLD_EB[parts[1]]}{parts[2]}"
        out[f"module.{k}"] = v
    return {"epoch": 3, "state_dict": out, "loss": 1.0, "optimizer": {"state": {}}}


def write_random_wacnn(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = WACNN()
    net.update(force=True)
    with torch.no_grad():
        net.g_a[7].weight.mul_(LATENT_SCALE)  # the last convolution, before the final attention module
        net.g_s[-1].bias.fill_(0.45)
    torch.save(as_published(net.state_dict()), path)
    return path
