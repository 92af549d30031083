"""One optimisation loop for every trainer of the codec.

The per-image stages (latent refinement, adapters, OMP: :mod:`codec.adaptation.stages`) and the two
stages of a domain adapter (:mod:`codec.domains.train`) differ only in what one step computes. The
scaffolding around the step lives here, once, because its copies had drifted (the OMP trainer
ignored the time budget and early stop):

- the learning rate drops to ``lr_drop_factor`` times its start value from ``lr_drop_at`` of the
  iterations on (seed 001's schedule);
- a non-finite loss skips the optimiser step, so one bad estimate cannot turn the parameters into NaN;
- no step starts after the deadline, except the first ``min_iterations`` (a stage that starts late
  still returns a trained state, not its initial one);
- early stop after ``early_stop_patience`` steps without a relative improvement above
  ``early_stop_tol``;
- ``on_step`` runs after every step: progress events, loss curves, periodic validation. Cancellation
  is the progress callback raising (see :mod:`codec.progress`); the exception propagates unchanged.

The loop draws no random numbers and computes nothing but the backward pass and the optimiser step,
in the order the hand-written loops did (forward, zero_grad, backward, step), so a trainer moved onto
it computes exactly the same numbers and its bitstreams stay byte-identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

StepFn = Callable[[int], Tensor]  # iteration (0-based) -> the loss to minimise
OnStep = Callable[[int, float], None]  # (iterations done, loss value) after each optimiser step


@dataclass(frozen=True)
class Schedule:
    """How long a loop runs and how its learning rate moves."""

    iterations: int
    lr_drop_at: float | None = 0.8  # fraction of the iterations; None: a constant learning rate
    lr_drop_factor: float = 0.1
    deadline: float | None = None  # a time.monotonic() value; None: no time limit
    min_iterations: int = 0  # steps that run even past the deadline
    early_stop_patience: int = 0  # 0: off
    early_stop_tol: float = 1e-3

    def lr_factor(self, it: int) -> float:
        """Multiplier of the start learning rate at iteration ``it``."""
        if self.lr_drop_at is None:
            return 1.0
        return self.lr_drop_factor if it >= self.lr_drop_at * self.iterations else 1.0

    def out_of_time(self, it: int) -> bool:
        """Whether iteration ``it`` must not start: past the deadline and past the free iterations."""
        return it >= self.min_iterations and self.deadline is not None and time.monotonic() >= self.deadline


def deadline_after(seconds: float | None) -> float | None:
    """The deadline ``seconds`` from now (None stays None: no limit)."""
    return None if seconds is None else time.monotonic() + seconds


class EarlyStop:
    """Stops after ``patience`` losses in a row without a relative improvement above ``tol``."""

    def __init__(self, patience: int, tol: float):
        self.patience, self.tol, self.best, self.since = patience, tol, float("inf"), 0

    def update(self, loss: float) -> bool:
        """Record one loss; True when the loop should stop."""
        if self.patience <= 0:
            return False
        if loss < self.best * (1 - self.tol):
            self.best, self.since = loss, 0
        else:
            self.since += 1
        return self.since >= self.patience


StopReason = Literal["count", "time", "flat"]


@dataclass(frozen=True)
class LoopResult:
    iterations: int  # optimiser steps taken (attempted: a skipped non-finite step counts)
    stopped_by: StopReason  # "count": all iterations ran; "time": the deadline; "flat": early stop


def optimise(
    step: StepFn, optimizer: torch.optim.Optimizer, schedule: Schedule, on_step: OnStep | None = None
) -> LoopResult:
    """Run ``step`` under ``schedule``, minimising the loss it returns with ``optimizer``.

    The start learning rate is read from the optimiser's parameter groups, so it is set in one place
    (where the optimiser is built).
    """
    start_lrs = [group["lr"] for group in optimizer.param_groups]
    stop = EarlyStop(schedule.early_stop_patience, schedule.early_stop_tol)
    for it in range(schedule.iterations):
        if schedule.out_of_time(it):
            return LoopResult(it, "time")
        factor = schedule.lr_factor(it)
        for group, lr in zip(optimizer.param_groups, start_lrs, strict=True):
            group["lr"] = lr * factor
        loss = step(it)
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        value = float(loss.detach())
        if on_step is not None:
            on_step(it + 1, value)
        if stop.update(value):
            return LoopResult(it + 1, "flat")
    return LoopResult(schedule.iterations, "count")
