"""The trainers of the content-adaptive encode, on the shared loop of :mod:`codec.adaptation.loop`.

Stage 1 refines the latents (``blr``, ``sga`` or ``dr``); stage 2 trains decoder adapters or OMP
channel multipliers with the latents fixed. They live apart from :class:`AdaptiveEncoder`, which
keeps the image, the model and the final coding, so that each trainer reads as its step alone.
Every function takes the encoder for its state (image, level, lambda, clock, curve, progress).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from codec.adaptation.adapters import AdapterSpec, apply_adapter, as_stored, logistic_bits, split_params
from codec.adaptation.loop import Schedule, deadline_after, optimise
from codec.adaptation.qstep import QSteps, StepSearch
from codec.adaptation.rate import gaussian_nll_bits, hard_bits, hard_latents, y_bits, z_bits
from codec.adaptation.sga import sga_round, sga_temperature
from codec.adaptation.synthesis import Hook, channels_after, linear_tail, low_rank_through, run_layers
from codec.models.gained import ste_round

if TYPE_CHECKING:  # the encoder calls these functions: a run-time import would be a cycle
    from codec.adaptation.encoder import AdaptiveEncoder


def _schedule(enc: AdaptiveEncoder, iterations: int, budget_s: float | None) -> Schedule:
    """A stage's schedule, starting now: ``budget_s`` seconds, the config's lr drop and early stop.

    One step always runs, so a stage that starts after the budget is spent still returns a state
    it has trained (the final choice among real files keeps the plain encode if that is better).
    """
    cfg = enc.cfg
    return Schedule(
        iterations,
        lr_drop_at=cfg.lr_drop_at,
        deadline=deadline_after(budget_s),
        min_iterations=1,
        early_stop_patience=cfg.early_stop_patience,
        early_stop_tol=cfg.early_stop_tol,
    )


def _dropout_hyper_encoder(h_a: nn.Sequential, p: float) -> nn.Sequential:
    """h_a with dropout after each activation (MC-dropout posterior of seed 002)."""
    layers: list[nn.Module] = []
    for layer in h_a:
        layers.append(layer)
        if isinstance(layer, nn.LeakyReLU | nn.ReLU | nn.GELU):  # GELU: WACNN's hyper-analysis
            layers.append(nn.Dropout(p))
    return nn.Sequential(*layers)


@torch.no_grad()
def hard_loss(
    enc: AdaptiveEncoder, yg: Tensor, z: Tensor, search: StepSearch | None = None, steps: QSteps | None = None
) -> float:
    """Estimated RD cost of the latents as they would really be coded (the refinement keeps the best);
    with a step ``search``, coded with ``steps`` (its current ones by default)."""
    model, yc = (enc.model, yg) if search is None else search.hard(yg, steps)
    hard = hard_latents(model, yc, z)
    mse = enc.mse(model.synthesize(hard.y_hat, hard.params))
    return float(hard_bits(model, hard) / enc.pixels + enc.lmbda * 255.0**2 * mse)


def refine_latents(enc: AdaptiveEncoder, y0: Tensor, z0: Tensor) -> tuple[Tensor, Tensor]:
    """Refined (coded-domain y, z: gained for gained models); returns the best iterate by its hard-rounded RD loss.

    The relaxed loss only estimates the real one, so the hard-rounded loss is checked ten times
    over the stage and at its end, and the best of those iterates (or the start) is returned.
    With ``cfg.qstep`` the y quantisation step is optimised too (:class:`StepSearch`); the best
    iterate's step is handed to the encoder (``enc.use_steps``) and y returned in its coded domain.
    """
    cfg, model = enc.cfg, enc.model
    total = cfg.latent_iters
    yg = model.coded(y0).detach().clone().requires_grad_(True)
    z = z0.detach().clone().requires_grad_(cfg.latent != "blr")
    qs = StepSearch(enc) if cfg.qstep else None
    opt = torch.optim.Adam([yg] + ([z] if cfg.latent != "blr" else []), lr=cfg.latent_lr)
    if qs is not None:
        opt.add_param_group({"params": qs.params(), "lr": cfg.qstep_lr})
        if cfg.latent != "blr":  # blr keeps z as it is
            qs.pick_z(lambda st: hard_loss(enc, yg, z, qs, st))
    med = model.z_medians()
    drop_h_a = _dropout_hyper_encoder(model.h_a, cfg.dr_dropout).train() if cfg.latent == "dr" else None
    budget = enc.clock.share_left(cfg.latent_iters / max(1, cfg.latent_iters + cfg.decoder_iters))
    best = (hard_loss(enc, yg, z, qs), yg.detach().clone(), z.detach().clone(), qs.steps() if qs else None)
    enc.curve.append(("latent-hard", 0, enc.clock.elapsed(), best[0]))
    fixed = None
    if cfg.latent == "blr":  # z, and so the entropy parameters, do not change
        with torch.no_grad():
            z_fixed = torch.round(z - med) + med
            fixed = (z_fixed, model.entropy_params(z_fixed))
    check_every = max(1, total // 10)
    last: dict[str, Tensor] = {}

    def step(it: int) -> Tensor:
        tau = sga_temperature(it, total)
        m, yc = (model, yg) if qs is None else qs.relaxed(yg)
        if fixed is not None:
            z_t, p = fixed[0], (fixed[1] if qs is None else m.entropy_params(fixed[0]))
        else:
            z_t = sga_round(z - med, tau) + med if qs is None else qs.relaxed_z(z, med, tau)
            p = m.entropy_params(z_t)
        y_t, p = m.quantize(yc, p, lambda v: sga_round(v, tau))  # around the means (context models: their own)
        bits = y_bits(model.gaussian_conditional, y_t, p.scales, p.means) + z_bits(m.entropy_bottleneck, z_t)
        with enc.autocast():
            x_hat = m.synthesize(y_t, p)
        mse = enc.mse(x_hat)
        loss = bits / enc.pixels + enc.lmbda * 255.0**2 * mse
        if drop_h_a is not None:
            samples = drop_h_a(model.hyper_input(yg).expand(cfg.dr_samples, -1, -1, -1))
            post_mean, post_var = samples.mean(0, keepdim=True), samples.var(0, keepdim=True)
            loss = loss + cfg.dr_beta * gaussian_nll_bits(z_t, post_mean, post_var) / enc.pixels
        last["bits"], last["mse"] = bits, mse
        return loss

    def check_hard(done: int) -> None:
        nonlocal best
        hard = hard_loss(enc, yg, z, qs)
        enc.curve.append(("latent-hard", done, enc.clock.elapsed(), hard))
        if hard < best[0]:
            best = (hard, yg.detach().clone(), z.detach().clone(), qs.steps() if qs else None)

    def on_step(done: int, loss: float) -> None:
        enc.curve.append(("latent-refinement", done, enc.clock.elapsed(), loss))
        enc.report("latent-refinement", done, total, float(last["bits"].detach()), float(last["mse"].detach()))
        if done % check_every == 0:
            check_hard(done)

    ran = optimise(step, opt, _schedule(enc, total, budget), on_step).iterations
    if ran % check_every:  # the last iterate (stopped by the count, the budget or early stop)
        check_hard(ran)
    if qs is not None and best[3] is not None:
        steps = best[3]
        if cfg.latent != "blr":  # the z step again, for the latents kept
            steps = qs.pick_z(lambda st: hard_loss(enc, best[1], best[2], qs, st), steps.y_code)
        enc.use_steps(steps)
        return best[1] / steps.dy, best[2]
    return best[1], best[2]


def train_adapters(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> tuple[list[AdapterSpec], list[int]] | None:
    """Adapter weights (integers, in units of ``delta``) for fixed latents; None if all came out zero.

    The synthesis up to the first adapter does not depend on the weights: it runs once, not per step.
    """
    cfg, g_s = enc.cfg, enc.model.g_s
    delta = as_stored(cfg.delta)  # exactly what the decoder will multiply by
    prior_scale = as_stored(cfg.prior_scale)
    positions = cfg.adapter_positions or enc.model.adapter_positions()
    specs = [AdapterSpec(p, channels_after(g_s, p), cfg.adapter_rank) for p in sorted(positions)]
    hard = hard_latents(enc.model, yg, z)
    latent_bits = float(hard_bits(enc.model, hard))  # fixed in this stage: reported with the adapter bits
    first = specs[0].position
    with torch.no_grad():
        feat = run_layers(g_s, enc.model.synthesis_input(hard.y_hat, hard.params), 0, first + 1)
    synthesize = _adapted_tail(enc, specs, feat)
    n = sum(s.size for s in specs)
    w = (torch.randn(n, device=enc.device) * cfg.adapter_init_std).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.decoder_lr)
    total = cfg.decoder_iters
    last: dict[str, Tensor] = {}

    def step(_: int) -> Tensor:
        w_dec = ste_round(w / delta) * delta
        w_rate = w + (torch.rand_like(w) - 0.5) * delta
        bits = logistic_bits(w_rate, delta, prior_scale)
        mse = enc.mse(synthesize(w_dec))
        last["bits"], last["mse"] = bits, mse
        return bits / enc.pixels + enc.lmbda * 255.0**2 * mse

    def on_step(done: int, loss: float) -> None:
        enc.curve.append(("adapters", done, enc.clock.elapsed(), loss))
        enc.report("adapters", done, total, latent_bits + float(last["bits"].detach()), float(last["mse"].detach()))

    optimise(step, opt, _schedule(enc, total, enc.clock.share_left(1.0)), on_step)
    ints = torch.round(w.detach() / delta).to(torch.int64).cpu().tolist()
    if not any(ints):
        return None  # all-zero adapters change nothing: do not spend bytes on them
    return specs, ints


def _adapted_tail(enc: AdaptiveEncoder, specs: list[AdapterSpec], feat: Tensor) -> Callable[[Tensor], Tensor]:
    """The synthesis output for adapter weights ``w``, from ``feat`` (the output of the first adapter's layer).

    With one adapter just before a linear output layer (the default place), the output is the
    fixed ``layer(feat)``, computed once, plus the layer applied to the low-rank term alone
    (:func:`codec.adaptation.synthesis.low_rank_through`): per step an ``r``-channel convolution
    instead of the full-resolution output layer, forward and backward. The same function up to float
    rounding (computed in fp32), about six times faster per step here; any other placement runs the layers.
    """
    g_s, first = enc.model.g_s, specs[0].position
    layer = linear_tail(g_s, first) if len(specs) == 1 and enc.cfg.push_adapters else None
    if layer is not None:
        feat32 = feat.float().contiguous()  # once: the per-step product then needs no layout copy
        with torch.no_grad():
            fixed = layer(feat32)

        def through_linear_tail(w: Tensor) -> Tensor:
            a, b = split_params(w, specs)[0]
            return fixed + low_rank_through(layer, b, torch.einsum("rc,nchw->nrhw", a, feat32))

        return through_linear_tail

    def through_layers(w: Tensor) -> Tensor:
        hooks: dict[int, Hook] = {
            s.position: _adapter_hook(*ab) for s, ab in zip(specs, split_params(w, specs), strict=True)
        }
        with enc.autocast():
            return run_layers(g_s, hooks[first](feat), first + 1, None, hooks)

    return through_layers


def train_omp(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> tuple[int, Tensor]:
    """(position, per-channel multipliers) after the first adapter position, for distortion only.

    As in the OMP baseline the multipliers cost no modelled bits; like the other stages they stop
    at the time budget and on a flat loss.
    """
    cfg, g_s = enc.cfg, enc.model.g_s
    position = (cfg.adapter_positions or enc.model.adapter_positions())[0]
    hard = hard_latents(enc.model, yg, z)
    with torch.no_grad():
        feat = run_layers(g_s, enc.model.synthesis_input(hard.y_hat, hard.params), 0, position + 1)
    scale = torch.ones(1, feat.shape[1], 1, 1, device=enc.device, requires_grad=True)
    opt = torch.optim.Adam([scale], lr=cfg.decoder_lr)
    total = cfg.decoder_iters

    def step(_: int) -> Tensor:
        return enc.mse(run_layers(g_s, feat * scale, position + 1))

    def on_step(done: int, mse: float) -> None:
        enc.report("omp", done, total, 0.0, mse)

    optimise(step, opt, _schedule(enc, total, enc.clock.share_left(1.0)), on_step)
    return position, scale.detach().flatten().cpu()


def _adapter_hook(a: Tensor, b: Tensor) -> Hook:
    """The synthesis hook that applies one adapter (``feat + B(A(feat))``) to a layer's output."""
    return lambda feat: apply_adapter(feat, a, b)
