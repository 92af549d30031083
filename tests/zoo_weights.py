"""Random-weight CompressAI zoo models, made available the way real users get them offline.

``compressai.zoo`` loads its pretrained weights with torch.hub's ``load_state_dict_from_url``, which
reads ``$TORCH_HOME/hub/checkpoints/<file name of the URL>`` when it is there and downloads only
when it is not. Tests write randomly initialised state dicts under those names in a temporary
``TORCH_HOME``: ``codec.zoo.loaders.load_zoo`` then runs its real ``pretrained=True`` path with no
internet, in this process and in every subprocess (worker, API) given that ``TORCH_HOME``.

A fresh network's latents are ~0.01, so every one rounds to zero and there is nothing to refine;
the last layer of ``g_a`` is scaled so that they span a few quantisation bins, like a trained model's,
and the synthesis outputs mid-grey rather than black (so distortion is in a trained model's range).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

LATENT_SCALE = 30.0


def zoo_file_name(arch: str, quality: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.zoo.image import model_urls
    return str(model_urls[arch]["mse"][quality]).rsplit("/", 1)[1]


def write_random_zoo_weights(torch_home: Path, arch: str, quality: int, seed: int = 0) -> Path:
    """A random-init state dict of ``arch`` at ``quality`` where torch.hub looks for the download."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from compressai.zoo.image import _load_model

    torch.manual_seed(seed)
    net = _load_model(arch, "mse", quality, pretrained=False)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(LATENT_SCALE)
        net.g_s[-1].bias.fill_(0.45)  # mid-grey output instead of black
    path = torch_home / "hub" / "checkpoints" / zoo_file_name(arch, quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
