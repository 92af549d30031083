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

import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
