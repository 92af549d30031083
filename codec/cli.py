"""The ``udic`` command line: encode, decode, info, models.

Every failure the user can cause ends in one line on stderr (``udic: error: ...``) and a
non-zero exit: 2 for bad input or usage, 3 for a missing model, 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Never

from tqdm import tqdm

from codec.cli_parser import build_parser
from codec.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:  # the codec (torch) is imported when a command runs, not for --help
    from codec.coder import EncodeResult
    from codec.rate_control import RateTarget
    from codec.roi import RoiSpec

EXIT_BAD_INPUT = 2
EXIT_MODEL = 3
EXIT_INTERNAL = 1


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


def _register_checkpoints(specs: Sequence[str]) -> None:
    from codec.zoo import parse_checkpoint, register_checkpoint

    for spec in specs:
        if "=" not in spec:
            raise CliError(f"--checkpoint takes NAME=PATH[@ARCH], got {spec!r}")
        entry = parse_checkpoint(spec)
        register_checkpoint(entry.name, entry.path, entry.arch)


def _register_user_models() -> None:
    """The models kept by ``udic models add`` (a changed file is skipped, and said so)."""
    from codec.zoo import default_registry
    from codec.zoo.user_models import register_user_models

    for name in register_user_models(default_registry()):
        print(f"udic: warning: model {name}'s checkpoint changed since it was added; not used", file=sys.stderr)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def _iteration_bar(src: Path, quiet: bool) -> tuple[tqdm[Never], ProgressCallback]:
    """A tqdm bar over the optimisation steps of an adaptive encode, and the callback that drives it."""
    bar = tqdm(desc=f"{src.name}: adapting", unit="it", disable=quiet, file=sys.stderr, leave=False, mininterval=0.5)
    stage = {"now": ""}

    def show(ev: ProgressEvent) -> None:
        if ev.stage in ("latent-refinement", "adapters", "omp"):
            if stage["now"] != ev.stage:
                stage["now"] = ev.stage
                bar.reset(total=ev.total)
                bar.set_description(f"{src.name}: {ev.stage}", refresh=False)
            bar.set_postfix(bpp=f"{ev.bpp:.3f}", psnr=f"{ev.psnr:.2f}", refresh=False)
            bar.update(ev.iteration - bar.n)

    return bar, show


def _encode_one(src: Path, args: argparse.Namespace) -> EncodeResult:
    """One file through ``codec.pipeline.encode``; adaptive encodes show a bar and say what they chose."""
    from codec.pipeline import EncodeRequest, encode

    request = EncodeRequest(
        model=args.model,
        quality=args.quality,
        lmbda=args.lmbda,
        adaptation=args.adapt,
        time_budget_s=args.time_budget,
        latent_iters=args.latent_iters,
        decoder_iters=args.decoder_iters,
        domain=args.domain,
        target=_target(args),
        roi=_roi(args),
    )
    adaptive = args.adapt != "none"
    bar, show = _iteration_bar(src, quiet=args.quiet or not adaptive)
    try:
        with _tiling(args):
            outcome = encode(src, request, max_pixels=args.max_pixels, progress=show)
    finally:
        bar.close()
    if adaptive and not args.quiet:
        costs = ", ".join(f"{k} {v:.4f}" for k, v in outcome.adaptive.costs.items())
        tqdm.write(f"  adaptation: chose {outcome.choice} (RD cost: {costs})", file=sys.stdout)
    if outcome.target is not None and not args.quiet:
        t = outcome.target
        tqdm.write(
            f"  target {t.target.kind} {t.target.value:g}: reached {t.reached:g} ({t.status}, "
            f"{t.probes} probes, {t.adaptive_runs} adaptive runs, {t.search_seconds:.1f} s searching)",
            file=sys.stdout,
        )
    return outcome.result


def _roi(args: argparse.Namespace) -> RoiSpec | None:
    """The region of interest of --roi auto / --roi-mask FILE / --roi-rects JSON (codec.roi)."""
    from codec.roi import RoiSpec, parse_rects

    if args.roi_mask is not None:
        try:
            return RoiSpec("mask", data=Path(args.roi_mask).read_bytes())
        except OSError as exc:
            raise CliError(f"cannot read the mask: {exc.strerror or exc}") from None
    if args.roi_rects is not None:
        return RoiSpec("rects", rects=parse_rects(args.roi_rects))
    return RoiSpec("auto") if args.roi == "auto" else None


def _target(args: argparse.Namespace) -> RateTarget | None:
    """The rate target of --target-bytes/--target-bpp/--target-psnr (one line and exit 2 when impossible)."""
    from codec.rate_control import InvalidTargetError, RateTarget

    try:
        return RateTarget.from_options(args.target_bytes, args.target_bpp, args.target_psnr)
    except InvalidTargetError as exc:
        raise CliError(str(exc)) from None


def _tiling(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The tiling policy of --tile-threshold / --tile-size (codec.tiling)."""
    from codec.tiling import TilingPolicy, tiling_policy

    return tiling_policy(TilingPolicy.from_pixels(args.tile_threshold, args.tile_size))


def cmd_encode(args: argparse.Namespace) -> int:
    inputs: list[Path] = args.inputs
    out: Path | None = args.output
    if len(inputs) > 1 and out is not None and not out.is_dir():
        raise CliError("with several inputs, -o must be an existing folder")
    bar = tqdm(inputs, desc="encode", unit="img", disable=len(inputs) < 2 or args.quiet, file=sys.stderr)
    for src in bar:
        dst = (out / (src.stem + ".udic") if out is not None and out.is_dir() else out) or src.with_suffix(".udic")
        res = _encode_one(src, args)
        _write_atomic(dst, res.data)
        if not args.quiet:
            quality = args.quality if args.quality is not None else res.level + 1
            tqdm.write(
                f"{src} -> {dst}: {res.width}x{res.height}, {len(res.data)} bytes, "
                f"{res.bpp:.4f} bpp, PSNR {res.psnr:.2f} dB (model {res.model}, quality {quality:g})",
                file=sys.stdout,
            )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from codec.coder import decode_image

    src: Path = args.input
    dst: Path = args.output or src.with_suffix(".png")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {src}: {exc.strerror or exc}") from None
    with _tiling(args):
        img = decode_image(data, max_pixels=args.max_pixels, bit_exact=args.bit_exact)
    if dst.suffix.lower() not in (".png", ".tif", ".tiff", ".bmp", ".webp"):
        raise CliError(
            f"decode writes a lossless image: use .png, .tif, .bmp or .webp, not {dst.suffix or 'no suffix'}"
        )
    import io

    buf = io.BytesIO()
    pil = img.to_pil()
    fmt = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}[dst.suffix.lower()]
    pil.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    _write_atomic(dst, buf.getvalue())
    if not args.quiet:
        print(f"{src} -> {dst}: {pil.width}x{pil.height} {pil.mode}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from codec.coder import read_header

    try:
        data = args.input.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    info = read_header(data)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "bpp":
                value = f"{value:.4f}"
            print(f"{key:15s} {value}")
    return 0


def cmd_train_domain(args: argparse.Namespace) -> int:
    from codec.domains.train import train_domain
    from codec.imageio import load_image
    from codec.models.gained import GainedMeanScaleHyperprior
    from codec.zoo import default_registry

    if not 2 <= len(args.images) <= 200:
        raise CliError("give 2-200 sample images (5-25 recommended)")
    reg = default_registry()
    base = reg.get(args.model)
    if not isinstance(base.net, GainedMeanScaleHyperprior):
        raise CliError(f"domain adapters need a variable-rate model (like 'default'), not {base.name}")
    images = [load_image(p) for p in args.images]
    trained = train_domain(
        base.net,
        images,
        steps=args.steps,
        stage2_steps=args.stage2_steps,
        crop=args.crop,
        time_budget_s=args.time_budget,
        show=not args.quiet,
    )
    rec = reg.domains.save(args.name, base.name, base.hash, trained)
    print(
        f"domain adapter {rec.id}: {trained.n_train} training / {trained.n_val} validation images, "
        f"{trained.steps[0]}+{trained.steps[1]} steps in {trained.seconds:.0f} s, "
        f"validation RD-cost saving {trained.gain_pct:.1f}% (stored in {reg.domains.root})"
    )
    if trained.gain_pct <= 0:
        print(
            "note: no trained state beat the base model on the validation images, so this adapter is the identity "
            "(more samples or steps may help); domain=auto will not pick it",
            file=sys.stderr,
        )
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from codec.zoo import default_registry

    for rec in default_registry().domains.list():
        s = rec.summary()
        print(
            f"{s['id']:32s} base {s['base_model']:10s} gain {s['gain_pct']:6.2f}%  {s['n_train']}+{s['n_val']} images"
        )
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    """``udic models add NAME PATH --arch ARCH``: check the checkpoint codes, then keep it."""
    from codec.zoo.user_models import add_model

    entry = add_model(args.name, Path(args.path), args.arch, args.lmbda)
    print(f"added {entry.name}: {entry.arch or 'gained checkpoint'}, weights hash {entry.weights_hash}")
    print(f"  for a service: UDIC_CHECKPOINTS={entry.service_entry()}")
    if entry.arch and entry.lmbda is None:
        print("  note: no --lambda, so it codes but cannot adapt (--adapt needs the training lambda)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from codec.zoo import ModelError, default_registry
    from codec.zoo.registry import ZOO_MODELS

    reg = default_registry()
    for name in reg.names():
        embedded = name == "default" or name.startswith("default@")  # the default and its kept versions
        try:
            m = reg.get(name, None if embedded else 1) if embedded or args.load_all else None
        except ModelError as exc:
            print(f"{name:24s} unavailable: {exc}")
            continue
        if m is None and name not in ZOO_MODELS:  # a checkpoint: it is local, so load it
            try:
                m = reg.get(name)
            except ModelError as exc:
                print(f"{name:24s} unavailable: {exc}")
                continue
        if m is None:
            print(f"{name:24s} (CompressAI zoo; downloads on first use)")
        else:
            lo, hi = m.quality_range
            print(f"{name:24s} hash {m.hash.hex()} qualities {lo:g}-{hi:g} {m.description}")
    return 0


def _command(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function that runs the parsed command."""
    if args.command == "models" and args.models_command == "add":
        return cmd_models_add
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "encode": cmd_encode,
        "decode": cmd_decode,
        "info": cmd_info,
        "train-domain": cmd_train_domain,
        "domains": cmd_domains,
        "models": cmd_models,
    }
    return commands[args.command]


def main(argv: Sequence[str] | None = None) -> int:
    warnings.simplefilter("ignore")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":  # the comparison tool has its own options
        from codec.evaluation.compare import main as eval_main

        try:
            return eval_main(argv[1:])
        except KeyboardInterrupt:
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    from codec.bitstream import BitstreamError
    from codec.imageio import ImageInputError
    from codec.zoo import ModelError

    try:
        _register_user_models()
        _register_checkpoints(args.checkpoint)
        return int(_command(args)(args))
    except CliError as exc:
        print(f"udic: error: {exc}", file=sys.stderr)
        return exc.code
    except (BitstreamError, ImageInputError) as exc:
        print(f"udic: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"udic: error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except ValueError as exc:  # e.g. a domain name or sample count the trainer refuses
        print(f"udic: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("udic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `udic ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except Exception as exc:  # never a traceback for the user
        print(f"udic: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
