"""Progress events of an encode, for the worker (job progress), the CLI (tqdm) and the SDK.

A callback may raise to stop the encode (cancellation); the exception propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # "analysis", "latent-refinement", "adapters", "entropy-coding", "verification", "done"
    iteration: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    bpp: float | None = None  # current estimate, when the stage has one
    psnr: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    return None
