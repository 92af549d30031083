"""Widen the image transforms of a trained model without changing what it computes.

The shipped model is narrow (N=48), chosen to train fast on 2 CPU cores; its high-rate end is
limited by that width. Training a wider model from scratch throws away the CPU-hours already spent.
Instead, new channels are added to every hidden layer of ``g_a`` and ``g_s``: their incoming weights
are random, their outgoing weights zero, and GDN does not mix them into the old channels. The wider
network then computes exactly what the narrow one did, and training grows the new channels from
there (the outgoing weights get gradients at once, the incoming ones as soon as those are nonzero).
The hyper transforms and the latent width M are unchanged, so the entropy model is too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codec.models.gained import GainedMeanScaleHyperprior


def widen(narrow: GainedMeanScaleHyperprior, N: int, seed: int = 0) -> GainedMeanScaleHyperprior:
    """A copy of ``narrow`` with ``N`` channels in the hidden layers of ``g_a`` and ``g_s``."""
    if N < narrow.N:
        raise ValueError(f"cannot widen N={narrow.N} to a smaller N={N}")
    torch.manual_seed(seed)
    cfg = narrow.config() | {"N": N, "Nh": narrow.Nh}
    wide = GainedMeanScaleHyperprior.from_config(cfg)
    old = narrow.state_dict()
    new_state = {}
    for key, fresh in wide.state_dict().items():
        src = old[key]
        widened = key.startswith(("g_a.", "g_s.")) and src.shape != fresh.shape
        new_state[key] = _embed(key, src, fresh) if widened else src.clone()
    # probability tables are buffers sized by what they hold: take them as they are
    wide.load_state_dict(new_state, strict=False)
    return wide


def _embed(key: str, src: Tensor, fresh: Tensor) -> Tensor:
    """``fresh`` with ``src`` in its leading block and zero weights out of the new channels."""
    out = fresh.clone()
    out[tuple(slice(0, n) for n in src.shape)] = src
    if key.endswith(".weight") and src.dim() == 4:
        # conv weights are (out, in, k, k); transposed-conv (deconv) weights are (in, out, k, k)
        in_dim = 0 if key.startswith("g_s.") else 1
        if out.shape[in_dim] > src.shape[in_dim]:
            out.narrow(in_dim, src.shape[in_dim], out.shape[in_dim] - src.shape[in_dim]).zero_()
    # GDN gamma (C, C): a fresh GDN's off-diagonal entries are already an effective zero, so the
    # old channels' normalisation sees none of the new ones.
    return out
