"""The adaptive encode in tiles: its memory is set by the tile size, not by the image size (issue 12).

Above the tiling threshold (``codec.tiling``: ``UDIC_TILE_THRESHOLD_PIXELS`` / ``UDIC_TILE_PX``,
the settings the plain tiled encode uses) the latent refinement and the adapter / OMP training
never run the synthesis on the whole image. The whole latents y and z stay in memory (1/256 and
1/4096 of the pixels; with their gradient and the optimiser's state, measured 23 bytes a pixel);
what runs per tile is the synthesis, whose feature maps made a 12 Mpixel ``fast`` encode take 7 GB.

**The loss, tile by tile.** For each tile (:class:`codec.tiling.LatentWindow`) the hyper-synthesis
runs on the tile's z positions plus a halo, the relaxed (SGA) latents of the tile and its y halo go
through the synthesis, and the tile contributes the rate of the latents it *owns* (y and z) and the
squared error of its *own* pixels (the halo's pixels belong to the neighbours). Each contribution
is normalised by the whole image's pixel count, so the tiles' losses add up to the whole-image
loss ``bits/pixel + lambda * 255^2 * MSE``, and because the halo covers the synthesis's reach the
gradients add up to the whole-image gradient too (up to the SGA noise, drawn per window, and the
hyper-synthesis at window edges, which only feeds halo latents).

**The schedule: one iteration is one pass over all tiles.** Each tile's backward pass runs right
after its forward pass (so only one tile's graph is alive), its gradient is added into the whole
y/z gradient, and after the last tile the optimiser takes *one* step on the whole y and z. That is
the whole-image optimisation of the preset, step for step: the same iteration count, learning rate,
lr drop, SGA temperature schedule, early stop and best-of-ten hard-rounded check, so the RD saving
of ``fast`` carries over (docs/bench/tiled_adapt.json: 6.69 % tiled, 6.74 % whole at 2 Mpixel).
Stepping one tile at a time instead (250 steps per tile with its neighbours frozen) would cost the
same, but optimise each tile against stale neighbours, with ten hard checks per tile. The work is
the whole-image work times the halo overhead, ((32 + 2*2) / 32)^2 = 1.27 for 512-pixel tiles, plus,
in the adapter stage, the synthesis up to the first adapter: the whole-image stage computes it
once and keeps it, which at 48 Mpixel is 2.3 GB of features, so here it is recomputed per tile and
iteration (in bf16 where that is fast). An iteration is long on a large image, and a time budget is checked between
iterations, so a budget may be overrun by up to one pass.

The final coding is the plain tiled coding (grouped entropy coding, ``Field.TILING``, verification
decode in tiles), so a decoder needs nothing new; per-image adapters and domain adapters apply
inside every tile as they do for plain tiled files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from codec.adaptation import stages
from codec.adaptation.adapters import AdapterSpec, apply_adapter, as_stored, logistic_bits, split_params
from codec.adaptation.backends import Adaptable, GainedAdaptable
from codec.adaptation.config import AdaptConfig
from codec.adaptation.loop import optimise
from codec.adaptation.rate import gaussian_nll_bits, y_bits, z_bits
from codec.adaptation.sga import sga_round, sga_temperature
from codec.adaptation.synthesis import Hook, channels_after, default_adapter_positions, run_layers
from codec.bitstream import Field
from codec.coder import EncodeResult, tileable
from codec.entropy_chunks import compress_gained_grouped
from codec.imageio import CodecImage, padded_size
from codec.models.gained import EntropyParams, GainedMeanScaleHyperprior, ste_round
from codec.tiling import (
    LATENT_STRIDE,
    Z_STRIDE,
    LatentWindow,
    TileLayout,
    analysis_tiled,
    current_policy,
    latent_windows,
    release_heap,
)
from codec.zoo.base import BaseModel

if TYPE_CHECKING:  # the encoder calls these functions: a run-time import would be a cycle
    from codec.adaptation.encoder import AdaptiveEncoder

ROW_BLOCK = 256  # image rows per block of the real-cost sum (bounds its float64 temporaries)


def tiled_layout(base: BaseModel, img: CodecImage) -> TileLayout | None:
    """The layout an adaptive encode of ``img`` runs in, or None for the whole-image encode: the
    plain encode's choice (the policy in force, gained models only), for tiles that are whole
    multiples of the hyper-latent grid (every ``UDIC_TILE_PX`` is)."""
    layout = current_policy().layout_for(img.width, img.height) if tileable(base) else None
    return layout if layout is not None and layout.tile % Z_STRIDE == 0 else None


def plan(base: BaseModel, img: CodecImage, cfg: AdaptConfig) -> Tiles | None:
    """The tiles an adaptive encode of ``img`` runs in (:class:`Tiles`), or None: whole-image.

    The adaptive quantisation step (``cfg.qstep``, ``codec.adaptation.qstep``) is optimised by the
    whole-image refinement only: such an encode stays whole-image (and its memory with it)."""
    layout = None if cfg.qstep else tiled_layout(base, img)
    return None if layout is None else Tiles(base, img, layout)


class _GroupedCoder(GainedAdaptable):
    """The gained model's final coding in channel groups (``codec.entropy_chunks``): the bytes of
    ``compress_gained`` without its whole-tensor temporaries, as the plain tiled encode codes."""

    def compress(self, yc: Tensor, z: Tensor) -> tuple[list[list[bytes]], list[Tensor]]:
        out: dict[str, Any] = compress_gained_grouped(self.gained, yc, z, self.q)
        return out["strings"], out["symbols"]


class Tiles:
    """What an adaptive encode above the tiling threshold does differently: the hooks of
    :class:`~codec.adaptation.encoder.AdaptiveEncoder` call these when its ``tiles`` is set."""

    def __init__(self, base: BaseModel, img: CodecImage, layout: TileLayout):
        net = base.net
        assert isinstance(net, GainedMeanScaleHyperprior)  # tiled_layout: gained models only
        self.net, self.layout = net, layout
        pw, ph = padded_size(img.width, img.height)
        self.windows = latent_windows(ph // LATENT_STRIDE, pw // LATENT_STRIDE, layout)

    def coder(self, level: float) -> Adaptable:
        """The final coding: the plain tiled encode's grouped entropy coding."""
        return _GroupedCoder(self.net, torch.tensor([level], dtype=torch.float32))

    def analysis(self, enc: AdaptiveEncoder) -> tuple[Tensor, Tensor]:
        """(y, z) from the tiled analysis, never a float copy of the whole image."""
        y = analysis_tiled(self.net.g_a, enc.img.rgb, self.layout, self.net.M).to(enc.device)
        release_heap()
        return y, enc.model.h_a(y)

    def coding_fields(self) -> dict[int, bytes]:
        return {Field.TILING: self.layout.to_bytes()}

    def real_cost(self, enc: AdaptiveEncoder, res: EncodeResult) -> float:
        """bpp + lambda*255^2*MSE of a real file, summed in row blocks (no whole float64 image)."""
        got, ref, sse = res.decoded.rgb, enc.img.rgb, 0.0
        for r in range(0, ref.shape[0], ROW_BLOCK):
            err = ((got[r : r + ROW_BLOCK].astype(np.float64) - ref[r : r + ROW_BLOCK]) / 255.0) ** 2
            sse += float((err if enc.roi is None else err * enc.roi[r : r + ROW_BLOCK, :, None]).sum())
        return res.bpp + enc.lmbda * 255.0**2 * sse / ref.size

    def own_sse(self, enc: AdaptiveEncoder, x_hat: Tensor, win: LatentWindow) -> Tensor:
        """Squared error (ROI-weighted when there is a map) of the tile's own real pixels, from the
        synthesis output of its window (clamped to [0, 1] as decoded)."""
        r0, _, c0, _ = win.tile
        top, left = r0 * LATENT_STRIDE, c0 * LATENT_STRIDE
        bottom = min(win.tile[1] * LATENT_STRIDE, enc.h)
        right = min(win.tile[3] * LATENT_STRIDE, enc.w)
        oy, ox = (r0 - win.synth[0]) * LATENT_STRIDE, (c0 - win.synth[2]) * LATENT_STRIDE
        out = x_hat[..., oy : oy + bottom - top, ox : ox + right - left].float().clamp(0, 1)
        patch = np.ascontiguousarray(enc.img.rgb[top:bottom, left:right])
        ref = torch.from_numpy(patch).to(enc.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        err = (out - ref) ** 2
        if enc.roi is not None:
            err = err * torch.from_numpy(enc.roi[top:bottom, left:right]).to(enc.device)[None, None]
        return err.sum()

    @staticmethod
    def distortion(enc: AdaptiveEncoder, sse: float | Tensor) -> Any:
        """lambda*255^2*MSE of a squared-error sum (over the whole image's samples)."""
        return enc.lmbda * 255.0**2 * sse / (3.0 * enc.pixels)


def _tiles(enc: AdaptiveEncoder) -> Tiles:
    assert enc.tiles is not None, "a tiled stage of an encoder without tiles"
    return enc.tiles


# ---------------------------------------------------------------------------- latents
def _params(model: Adaptable, z_t: Tensor, win: LatentWindow) -> EntropyParams:
    """Entropy parameters of the window's y (``synth``), from its hyper-latents (``hyper``)."""
    p = model.entropy_params(z_t)
    rs, cs = LatentWindow.rel(win.synth, win.hyper_y)
    return EntropyParams(p.means[..., rs, cs], p.scales[..., rs, cs], p.gain, p.inv_gain)


def _own_y_bits(model: Adaptable, win: LatentWindow, y_t: Tensor, p: EntropyParams) -> Tensor:
    """Bits of the y latents the tile owns (of tensors covering its ``synth`` window). z is small:
    its bits are taken whole, once per pass (many tiny per-tile calls cost more than the sum)."""
    rs, cs = LatentWindow.rel(win.tile, win.synth)
    return y_bits(model.gaussian_conditional, y_t[..., rs, cs], p.scales[..., rs, cs], p.means[..., rs, cs])


def _hard_windows(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> Iterator[tuple[LatentWindow, Tensor, float]]:
    """Per tile: the window, its synthesis input as the decoder will see it (hard-rounded latents)
    and the bits of the y latents it owns (z's bits: :func:`_hard_z_bits`)."""
    model, med = enc.model, enc.model.z_medians()
    with torch.no_grad():
        z_hat = torch.round(z - med) + med
    for win in _tiles(enc).windows:
        with torch.no_grad():  # not around the yield: grad mode would stay off in the caller
            p = _params(model, z_hat[_region(win.hyper)], win)
            y_hat = torch.round(yg[_region(win.synth)] - p.means) + p.means
            item = (win, model.synthesis_input(y_hat, p), float(_own_y_bits(model, win, y_hat, p)))
        yield item


@torch.no_grad()
def _hard_z_bits(enc: AdaptiveEncoder, z: Tensor) -> float:
    med = enc.model.z_medians()
    return float(z_bits(enc.model.entropy_bottleneck, torch.round(z - med) + med))


def hard_loss(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> float:
    """:func:`codec.adaptation.stages.hard_loss`, tile by tile (the synthesis in bf16 where fast)."""
    bits, sse = _hard_z_bits(enc, z), 0.0
    for win, inp, tile_bits in _hard_windows(enc, yg, z):
        with torch.no_grad(), enc.autocast():
            sse += float(_tiles(enc).own_sse(enc, enc.model.g_s(inp), win))
        bits += tile_bits
    return bits / enc.pixels + float(Tiles.distortion(enc, sse))


def _carrier(value: float, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """A loss whose value is ``value`` and whose gradient for each parameter is the gradient
    gathered for it tile by tile, so :func:`codec.adaptation.loop.optimise` (zero_grad, backward,
    step, lr drop, deadline, early stop) runs the tiled stages unchanged."""
    dot = sum(((p * g).sum() for p, g in pairs), torch.zeros((), device=pairs[0][0].device))
    return dot - dot.detach() + value


def refine_latents(enc: AdaptiveEncoder, y0: Tensor, z0: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`codec.adaptation.stages.refine_latents` with the loss and its gradient gathered tile
    by tile (module notes): (coded-domain y, z), the best iterate by the hard-rounded RD loss."""
    cfg, model = enc.cfg, enc.model
    total, train_z = cfg.latent_iters, cfg.latent != "blr"
    yg = model.coded(y0).detach().clone().requires_grad_(True)
    z = z0.detach().clone().requires_grad_(train_z)
    opt = torch.optim.Adam([yg] + ([z] if train_z else []), lr=cfg.latent_lr)
    med = model.z_medians()
    drop_h_a = stages._dropout_hyper_encoder(model.h_a, cfg.dr_dropout).train() if cfg.latent == "dr" else None
    budget = enc.clock.share_left(cfg.latent_iters / max(1, cfg.latent_iters + cfg.decoder_iters))
    best = (hard_loss(enc, yg, z), yg.detach().clone(), z.detach().clone())
    enc.curve.append(("latent-hard", 0, enc.clock.elapsed(), best[0]))
    check_every = max(1, total // 10)
    last = {"bits": 0.0, "sse": 0.0}

    def tile_loss(win: LatentWindow, y_w: Tensor, z_t: Tensor, tau: float) -> Tensor:
        p = _params(model, z_t, win)
        yr, yc = LatentWindow.rel(win.synth, win.hyper_y)
        y_t = sga_round(y_w[..., yr, yc] - p.means, tau) + p.means
        bits = _own_y_bits(model, win, y_t, p)
        with enc.autocast():
            sse = _tiles(enc).own_sse(enc, model.synthesize(y_t, p), win)
        loss = bits / enc.pixels + Tiles.distortion(enc, sse)
        if drop_h_a is not None:
            samples = drop_h_a(model.hyper_input(y_w).expand(cfg.dr_samples, -1, -1, -1))
            zr, zc = LatentWindow.rel(win.tile_z(), win.hyper)
            post_mean, post_var = samples.mean(0, keepdim=True), samples.var(0, keepdim=True)
            nll = gaussian_nll_bits(z_t[..., zr, zc], post_mean[..., zr, zc], post_var[..., zr, zc])
            loss = loss + cfg.dr_beta * nll / enc.pixels
        last["bits"] += float(bits.detach())
        last["sse"] += float(sse.detach())
        return loss

    def step(it: int) -> Tensor:
        tau = sga_temperature(it, total)
        # z relaxed once per pass (one noise draw for every window, as in the whole-image step);
        # the windows read a detached copy, whose gradient is carried back through z_t at the end
        z.grad = None  # the optimiser leaves the last step's gradient: this pass must not add to it
        z_t = sga_round(z - med, tau) + med if train_z else torch.round(z.detach() - med) + med
        zb = z_bits(model.entropy_bottleneck, z_t)
        z_in = z_t.detach().requires_grad_(train_z)
        grad_y = torch.zeros_like(yg)
        value, last["bits"], last["sse"] = float(zb.detach()) / enc.pixels, float(zb.detach()), 0.0
        for win in _tiles(enc).windows:
            ys = _region(win.hyper_y)
            y_w = yg.detach()[ys].clone().requires_grad_(True)
            loss = tile_loss(win, y_w, z_in[_region(win.hyper)], tau)
            if torch.isfinite(loss):
                loss.backward()
                grad_y[ys] += y_w.grad if y_w.grad is not None else 0.0
            value += float(loss.detach())
        if not train_z:
            return _carrier(value, [(yg, grad_y)])
        upstream = z_in.grad if z_in.grad is not None else torch.zeros_like(z_in)
        torch.autograd.backward([zb / enc.pixels, z_t], [torch.ones_like(zb), upstream])
        grad_z = z.grad if z.grad is not None else torch.zeros_like(z)
        z.grad = None
        return _carrier(value, [(yg, grad_y), (z, grad_z.clone())])

    def check_hard(done: int) -> None:
        nonlocal best
        hard = hard_loss(enc, yg, z)
        enc.curve.append(("latent-hard", done, enc.clock.elapsed(), hard))
        if hard < best[0]:
            best = (hard, yg.detach().clone(), z.detach().clone())

    def on_step(done: int, loss: float) -> None:
        enc.curve.append(("latent-refinement", done, enc.clock.elapsed(), loss))
        enc.report("latent-refinement", done, total, last["bits"], last["sse"] / (3.0 * enc.pixels))
        if done % check_every == 0:
            check_hard(done)

    ran = optimise(step, opt, stages._schedule(enc, total, budget), on_step).iterations
    if ran % check_every:
        check_hard(ran)
    return best[1], best[2]


def _region(box: tuple[int, int, int, int]) -> tuple[Any, ...]:
    """Index of a (rows, cols) box of a (1, C, H, W) tensor."""
    return (slice(None), slice(None), slice(box[0], box[1]), slice(box[2], box[3]))


# ---------------------------------------------------------------------------- decoder side
def _tail_pass(
    enc: AdaptiveEncoder, yg: Tensor, z: Tensor, position: int, tail: Callable[[Tensor], Tensor]
) -> Iterator[tuple[Tensor, float]]:
    """Per tile: the squared error of its own pixels through ``tail`` (the synthesis after layer
    ``position``, with the weights being trained), and the bits of its latents. The synthesis up
    to ``position`` runs without gradient (module notes: recomputed, not kept)."""
    g_s = enc.model.g_s
    for win, inp, bits in _hard_windows(enc, yg, z):
        with torch.no_grad(), enc.autocast():
            feat = run_layers(g_s, inp, 0, position + 1)
        with enc.autocast():
            sse = _tiles(enc).own_sse(enc, tail(feat), win)
        yield sse, bits  # outside the autocast block: it would stay on in the caller


def train_adapters(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> tuple[list[AdapterSpec], list[int]] | None:
    """:func:`codec.adaptation.stages.train_adapters`, one step per pass over the tiles: adapter
    weights (integers, in units of ``delta``) for fixed latents; None if all came out zero."""
    cfg, g_s = enc.cfg, enc.model.g_s
    delta, prior_scale = as_stored(cfg.delta), as_stored(cfg.prior_scale)
    positions = cfg.adapter_positions or default_adapter_positions(g_s)
    specs = [AdapterSpec(p, channels_after(g_s, p), cfg.adapter_rank) for p in sorted(positions)]
    first, n = specs[0].position, sum(s.size for s in specs)
    w = (torch.randn(n, device=enc.device) * cfg.adapter_init_std).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.decoder_lr)
    total = cfg.decoder_iters
    last = {"bits": 0.0, "sse": 0.0}

    def tail(feat: Tensor) -> Tensor:
        w_dec = ste_round(w / delta) * delta
        hooks: dict[int, Hook] = {
            s.position: _adapter_hook(*ab) for s, ab in zip(specs, split_params(w_dec, specs), strict=True)
        }
        return run_layers(g_s, hooks[first](feat), first + 1, None, hooks)

    z_bits_fixed = _hard_z_bits(enc, z)  # the latents are fixed here: reported with the adapters' bits

    def step(_: int) -> Tensor:
        value, last["bits"], last["sse"] = 0.0, z_bits_fixed, 0.0
        w.grad = None  # the optimiser leaves the last step's gradient: the tiles must not add to it
        for sse, bits in _tail_pass(enc, yg, z, first, tail):
            loss = Tiles.distortion(enc, sse)
            if torch.isfinite(loss):
                loss.backward()
            value += float(loss.detach())
            last["bits"] += bits
            last["sse"] += float(sse.detach())
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        w.grad = None
        rate = logistic_bits(w + (torch.rand_like(w) - 0.5) * delta, delta, prior_scale) / enc.pixels
        return _carrier(value, [(w, grad.clone())]) + rate

    def on_step(done: int, loss: float) -> None:
        enc.curve.append(("adapters", done, enc.clock.elapsed(), loss))
        enc.report("adapters", done, total, last["bits"], last["sse"] / (3.0 * enc.pixels))

    optimise(step, opt, stages._schedule(enc, total, enc.clock.share_left(1.0)), on_step)
    ints = torch.round(w.detach() / delta).to(torch.int64).cpu().tolist()
    if not any(ints):
        return None
    return specs, ints


def train_omp(enc: AdaptiveEncoder, yg: Tensor, z: Tensor) -> tuple[int, Tensor]:
    """:func:`codec.adaptation.stages.train_omp`, one step per pass over the tiles."""
    cfg, g_s = enc.cfg, enc.model.g_s
    position = (cfg.adapter_positions or default_adapter_positions(g_s))[0]
    scale = torch.ones(1, channels_after(g_s, position), 1, 1, device=enc.device, requires_grad=True)
    opt = torch.optim.Adam([scale], lr=cfg.decoder_lr)
    total = cfg.decoder_iters

    def step(_: int) -> Tensor:
        value, scale.grad = 0.0, None  # not on top of the last step's gradient
        for sse, _bits in _tail_pass(enc, yg, z, position, lambda f: run_layers(g_s, f * scale, position + 1)):
            mse = sse / (3.0 * enc.pixels)
            if torch.isfinite(mse):
                mse.backward()
            value += float(mse.detach())
        grad = scale.grad if scale.grad is not None else torch.zeros_like(scale)
        scale.grad = None
        return _carrier(value, [(scale, grad.clone())])

    def on_step(done: int, mse: float) -> None:
        enc.report("omp", done, total, 0.0, mse)

    optimise(step, opt, stages._schedule(enc, total, enc.clock.share_left(1.0)), on_step)
    return position, scale.detach().flatten().cpu()


def _adapter_hook(a: Tensor, b: Tensor) -> Hook:
    return lambda feat: apply_adapter(feat, a, b)


__all__ = ["Tiles", "hard_loss", "plan", "refine_latents", "tiled_layout", "train_adapters", "train_omp"]
