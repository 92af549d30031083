"""The shared optimisation loop (codec.adaptation.loop) and the trainers built on it.

The loop's rules (lr drop, finite-loss guard, deadline, early stop, cancellation) are checked on a
toy problem; the OMP trainer, which once ignored the time budget and early stop, on a real encode.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from codec.adaptation.encoder import adaptive_encode
from codec.adaptation.loop import Schedule, StepFn, optimise
from codec.domains.train import _crop_source
from codec.imageio import CodecImage
from codec.progress import ProgressEvent
from tests.conftest import synthetic_rgb


def _toy() -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    return w, torch.optim.SGD([w], lr=0.5)


def _step(w: torch.nn.Parameter, values: list[float] | None = None, *, flat_grad: bool = False) -> StepFn:
    """Loss ``(w - 3)^2``, or ``values[it] * w`` (gradient ``values[it]``), or ``values[it]`` exactly
    (``flat_grad``: the gradient is zero)."""

    def step(it: int) -> torch.Tensor:
        if values is None:
            return ((w - 3) ** 2).sum()
        return values[it] + 0 * w.sum() if flat_grad else values[it] * w.sum()

    return step


def test_learning_rate_drops_at_the_configured_fraction() -> None:
    w, opt = _toy()
    seen: list[float] = []
    optimise(_step(w), opt, Schedule(10, lr_drop_at=0.8), lambda done, loss: seen.append(opt.param_groups[0]["lr"]))
    assert seen == [0.5] * 8 + [0.5 * 0.1] * 2
    w, opt = _toy()
    seen.clear()
    optimise(_step(w), opt, Schedule(4, lr_drop_at=None), lambda done, loss: seen.append(opt.param_groups[0]["lr"]))
    assert seen == [0.5] * 4


def test_a_non_finite_loss_skips_the_step_and_the_loop_goes_on() -> None:
    w, opt = _toy()
    values = [1.0, float("nan"), float("inf"), 1.0]
    trace: list[float] = []
    result = optimise(_step(w, values), opt, Schedule(4), lambda done, loss: trace.append(float(w.detach())))
    assert result.iterations == 4 and result.stopped_by == "count"
    assert trace[1] == trace[0] and trace[2] == trace[0]  # the NaN and inf steps changed nothing
    assert trace[3] != trace[2] and all(np.isfinite(trace))


def test_deadline_stops_the_loop_after_the_free_iterations() -> None:
    past = time.monotonic() - 1.0
    w, opt = _toy()
    assert optimise(_step(w), opt, Schedule(50, deadline=past)).iterations == 0
    r = optimise(_step(w), opt, Schedule(50, deadline=past, min_iterations=2))
    assert (r.iterations, r.stopped_by) == (2, "time")
    r = optimise(_step(w), opt, Schedule(50, deadline=time.monotonic() + 60))
    assert (r.iterations, r.stopped_by) == (50, "count")


def test_early_stop_on_a_flat_loss() -> None:
    w, opt = _toy()
    values = [1.0, 0.5, 0.49, 0.49, 0.49, 0.1, 0.1, 0.1]
    r = optimise(_step(w, values, flat_grad=True), opt, Schedule(8, early_stop_patience=3, early_stop_tol=0.1))
    assert (r.iterations, r.stopped_by) == (5, "flat")  # 0.49 three times is within 10% of 0.5


def test_a_raising_progress_callback_cancels_the_loop() -> None:
    class Cancelled(Exception):
        pass

    def cancel_at_3(done: int, loss: float) -> None:
        if done == 3:
            raise Cancelled

    w, opt = _toy()
    with pytest.raises(Cancelled):
        optimise(_step(w), opt, Schedule(10), cancel_at_3)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.fromarray(synthetic_rgb(64, 72, seed=4))


def _omp_iterations(picture: Image.Image, **overrides: object) -> int:
    events: list[ProgressEvent] = []
    r = adaptive_encode(
        picture, quality=2, config="fast", latent_iters=4, decoder="omp", progress=events.append, **overrides
    )
    assert "latents+omp" in r.costs  # a valid file came out whatever stopped the stage
    return max(e.iteration for e in events if e.stage == "omp")


def test_omp_stops_on_a_flat_loss(picture: Image.Image) -> None:
    assert _omp_iterations(picture, decoder_iters=60) == 60
    assert _omp_iterations(picture, decoder_iters=60, early_stop_patience=2, early_stop_tol=0.5) < 60


def test_omp_keeps_to_the_time_budget(picture: Image.Image) -> None:
    """Before the shared loop, OMP ran all its iterations whatever the budget (here: about a minute)."""
    t0 = time.monotonic()
    iterations = _omp_iterations(picture, decoder_iters=5_000, time_budget_s=1.0)
    assert iterations < 5_000
    assert time.monotonic() - t0 < 30  # the budget plus the fixed costs (plain encode, coding, checks)


def test_domain_crops_match_replicate_padding_of_the_float_image() -> None:
    """Small domain samples are edge-padded as uint8 for random_batch: the same crops as the float
    replicate padding the domain trainer used before it shared the base trainer's sampler."""
    img = CodecImage(rgb=synthetic_rgb(40, 50, seed=5))
    crop = 64
    src = _crop_source(img, crop)
    assert src.dtype == torch.uint8 and tuple(src.shape) == (3, crop, crop)
    x = torch.from_numpy(img.rgb.copy()).permute(2, 0, 1).float() / 255.0
    ref = torch.nn.functional.pad(x[None], (0, crop - 50, 0, crop - 40), mode="replicate")[0]
    assert torch.equal(src.float() / 255.0, ref)
