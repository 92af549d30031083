"""Quality and rate measures, defined once (every benchmark and the service use these).

PSNR is over 8-bit RGB after rounding (all channels together); bpp counts every byte of the
file, header and side sections included.
"""

from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images; ``inf`` when identical."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def bpp(num_bytes: int, width: int, height: int) -> float:
    return num_bytes * 8.0 / (width * height)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM on RGB in [0, 255]; NaN for images too small for its five scales (< 161 px)."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) < 161:
        return float("nan")
    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    return float(_ms_ssim(ta, tb, data_range=255.0).item())
