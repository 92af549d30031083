"""The ``udic`` command line's arguments: one parser per command, so each stays readable.

``codec.cli`` runs the commands; this module only says what each accepts. Each sub-parser names
its command in ``command`` (and ``models_command``), and ``codec.cli`` dispatches on those.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codec.adaptation.config import PRESET_NAMES

SubParsers = Any  # argparse's _SubParsersAction is private


def build_parser() -> argparse.ArgumentParser:
    from codec import __version__

    p = argparse.ArgumentParser(prog="udic", description="Universal deep image compression (codec CLI).")
    p.add_argument("--version", action="version", version=f"udic {__version__}")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=PATH[@ARCH[@LAMBDA]]",
        help="register a local checkpoint as a model",
    )
    sub = p.add_subparsers(dest="command", required=True)
    _encode_parser(sub)
    _decode_parser(sub)
    i = sub.add_parser("info", help="print the header of a .udic bitstream")
    i.add_argument("input", type=Path)
    i.add_argument("--json", action="store_true")
    sub.add_parser("eval", help="compare with conventional codecs per domain (udic eval --help)", add_help=False)
    _domain_parsers(sub)
    _models_parser(sub)
    return p


def _encode_parser(sub: SubParsers) -> None:
    from codec.imageio import DEFAULT_MAX_PIXELS

    e = sub.add_parser("encode", help="compress images into .udic bitstreams")
    e.add_argument("inputs", nargs="+", type=Path)
    e.add_argument(
        "-o", "--output", type=Path, help="output file, or folder for several inputs (default: beside the input)"
    )
    e.add_argument("-m", "--model", default="default", help="model name (see `udic models`)")
    g = e.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quality", type=float, help="quality: 1-6 (fractions allowed) for default, 1-8 for zoo models"
    )
    g.add_argument(
        "--lambda", dest="lmbda", type=float, help="rate-distortion lambda instead of a quality (variable-rate models)"
    )
    g.add_argument("--target-bytes", type=int, metavar="N", help="file size to reach (at most N bytes), not a quality")
    g.add_argument("--target-bpp", type=float, metavar="BPP", help="bits per pixel to reach (at most), not a quality")
    g.add_argument("--target-psnr", type=float, metavar="DB", help="PSNR to reach (at least), not a quality")
    e.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    e.add_argument(
        "--adapt",
        default="none",
        choices=PRESET_NAMES,
        help="content adaptation preset (slower encode, smaller files); default none",
    )
    e.add_argument("--time-budget", type=float, help="seconds the adaptation may take")
    e.add_argument("--domain", help="a trained domain adapter id (udic domains), or 'auto'")
    e.add_argument("--latent-iters", type=int, help="override the preset's latent refinement steps")
    e.add_argument("--decoder-iters", type=int, help="override the preset's adapter steps")
    r = e.add_mutually_exclusive_group()
    r.add_argument("--roi", choices=["auto"], help="favour text-like and detailed regions (needs --adapt)")
    r.add_argument("--roi-mask", type=Path, metavar="PNG", help="weight map, the image's size: grey = weight")
    r.add_argument("--roi-rects", metavar="JSON", help='rectangles: [{"x", "y", "w", "h", "weight"}, ...]')
    e.add_argument("--quiet", action="store_true")
    _add_tiling_options(e, "code")


def _decode_parser(sub: SubParsers) -> None:
    from codec.imageio import DEFAULT_MAX_PIXELS

    d = sub.add_parser("decode", help="decode a .udic bitstream to a lossless image")
    d.add_argument("input", type=Path)
    d.add_argument("-o", "--output", type=Path, help="output image (.png default)")
    d.add_argument(
        "--bit-exact",
        action="store_true",
        help="run the synthesis on one canonical thread: the same pixels on every machine (slower); "
        "by default it uses all cores, and a few pixels may differ by one level between thread counts",
    )
    d.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger (padded) images")
    d.add_argument("--quiet", action="store_true")
    _add_tiling_options(d, "decode single-tile files of")


def _domain_parsers(sub: SubParsers) -> None:
    t = sub.add_parser("train-domain", help="train a domain adapter from 5-25 sample images")
    t.add_argument("name", help="a name for the domain (letters, digits, _ and -)")
    t.add_argument("images", nargs="+", type=Path)
    t.add_argument("-m", "--model", default="default")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--stage2-steps", type=int, default=500)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--time-budget", type=float, default=None)
    t.add_argument("--quiet", action="store_true")

    sub.add_parser("domains", help="list the trained domain adapters")


def _models_parser(sub: SubParsers) -> None:
    m = sub.add_parser("models", help="list the models this installation knows")
    m.add_argument("--load-all", action="store_true", help="also try to load zoo models (needs their weights)")
    ma = m.add_subparsers(dest="models_command").add_parser(
        "add", help="keep a checkpoint as a model, after checking that it codes a test image"
    )
    ma.add_argument("name", help="the name bitstreams and -m will use")
    ma.add_argument("path", help="the checkpoint file (a state dict of --arch, or a gained training checkpoint)")
    ma.add_argument("--arch", help="its architecture: CompressAI's (e.g. mbt2018-mean, bmshj2018-hyperprior) or wacnn")
    ma.add_argument("--lambda", dest="lmbda", type=float, help="the lambda it was trained for (needed by --adapt)")


def _add_tiling_options(parser: argparse.ArgumentParser, what: str) -> None:
    from codec.tiling import DEFAULT_THRESHOLD_PIXELS, DEFAULT_TILE, LATENT_STRIDE

    parser.add_argument(
        "--tile-threshold",
        type=int,
        default=DEFAULT_THRESHOLD_PIXELS,
        metavar="PIXELS",
        help=f"{what} images whose padded area exceeds this in tiles, with memory set by the tile size",
    )
    parser.add_argument(
        "--tile-size", type=int, default=DEFAULT_TILE * LATENT_STRIDE, metavar="PX", help="tile side, a multiple of 64"
    )
