"""Canonical compute for entropy coding and decoding.

rANS decoding only works when the decoder derives *exactly* the same CDF indexes as the encoder.
Floating-point results of convolutions can change with the thread count (work is split
differently) and with the device. So everything that feeds the entropy coder runs here: the
analysis and hyper transforms of an encode, the hyper-synthesis and entropy decoding of a decode.
CPU, float32, one intra-op thread, deterministic algorithms, TF32 off. Optimisation (the slow part
of an adaptive encode) may use any device and precision; only the final coding passes through this.

The synthesis decides no CDF index, so a decode runs it outside, on all cores or CUDA; its pixels
then depend on the thread count (a few pixels by one level, measured in ``codec.decoding``). A
bit-exact decode (``decode_image(bit_exact=True)``, ``udic decode --bit-exact``, the encoder's
verification) runs it here too, for the same pixels everywhere.

``torch.set_num_threads`` is process-wide, so entries are serialised by a lock; keep one model
instance per process (docs/ARCHITECTURE.md) and decode in a worker pool when throughput matters.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_LOCK = threading.RLock()
CANONICAL_DEVICE = torch.device("cpu")


@contextmanager
def canonical_compute() -> Iterator[None]:
    """Run the enclosed torch code on the canonical settings, then restore the caller's."""
    with _LOCK:
        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        tf32_mm = torch.backends.cuda.matmul.allow_tf32
        tf32_cudnn = torch.backends.cudnn.allow_tf32
        try:
            torch.set_num_threads(1)
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            torch.backends.cuda.matmul.allow_tf32 = tf32_mm
            torch.backends.cudnn.allow_tf32 = tf32_cudnn


def best_device() -> torch.device:
    """CUDA when present, else CPU: for the optimisation parts of an encode."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=1)
def _cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (avx512_bf16 or AMX): elsewhere oneDNN emulates
    it and bf16 is slower than fp32, so the optimisation stays in fp32 there."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16")) and bool(torch.backends.mkldnn.is_available())


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up optimisation on ``device`` (CUDA with bf16, or a bf16 CPU).

    Used by the adaptive encode (``codec.adaptation``): bf16 only ever runs in the optimisation,
    never in the final coding, which goes through :func:`canonical_compute` in fp32.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False
