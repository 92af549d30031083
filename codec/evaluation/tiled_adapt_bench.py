"""Peak memory, seconds and RD saving of the tiled adaptive encode (issue 12, codec.adaptation.tiled).

Each case is one ``adaptive_encode`` in its own process (``--child``), so its peak RSS
(``ru_maxrss``) is the whole process: Python, torch, the model, the plain encode every adaptive
encode starts with, the refinement, the adapters, and the coding and verification of every
candidate. Cases:

- ``rd2mp-tiled`` / ``rd2mp-whole``: the same 1920x1080 photograph coded tiled (threshold 0,
  512-pixel tiles) and whole-image, for the RD saving of each against its own plain encode. The
  picture is a mosaic of the training photos in ``natural-train-extra/`` at their own resolution
  (768 px on the long side; no evaluation file), so it has real photo texture at 2 Mpixel.
- ``adapt12mp`` / ``adapt48mp``: 4032x3024 and 8000x6000 encodes at the default tiling settings,
  on the mosaic of ``codec.evaluation.large_image_bench`` (Kodak upscaled 2x).

``--latent-iters`` / ``--decoder-iters`` scale the ``fast`` schedule down (same learning rates,
lr drop, annealing and checks, fewer steps) where a full schedule does not fit the time there is:
the JSON records what ran. Peak memory does not depend on the iteration count (every iteration
holds the same tiles), the seconds per iteration are given so that the full schedule's time can
be worked out, and the RD comparison runs both modes on the same schedule.

    python -m codec.evaluation.tiled_adapt_bench --cases rd2mp-tiled,rd2mp-whole --out docs/bench/tiled_adapt.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from codec.adaptation.config import PRESETS
from codec.datasets import datasets_root
from codec.evaluation.large_image_bench import mosaic

WORK = Path("var/bench/tiled_adapt")
FAST = PRESETS["fast"]
WHOLE = 1 << 62  # a threshold no image reaches: the whole-image encode
#: case -> (width, height, picture, tiling threshold: None for the default)
CASES: dict[str, tuple[int, int, str, int | None]] = {
    "rd2mp-tiled": (1920, 1080, "photos", 0),
    "rd2mp-whole": (1920, 1080, "photos", WHOLE),
    "adapt12mp": (4032, 3024, "kodak2x", None),
    "adapt48mp": (8000, 6000, "kodak2x", None),
}


def photo_mosaic(width: int, height: int, folder: Path) -> Image.Image:
    """The photos of ``folder`` (sorted by name) at their own size, row by row, cropped to the frame."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no photos in {folder}")
    canvas, i, y = Image.new("RGB", (width, height)), 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            with Image.open(files[i % len(files)]) as im:
                canvas.paste(im.convert("RGB"), (x, y))
                x, row_h, i = x + im.width, max(row_h, im.height), i + 1
        y += row_h
    return canvas


def picture(case: str, root: Path) -> Path:
    """The PNG a case codes (made once under var/)."""
    w, h, kind, _ = CASES[case]
    png = WORK / f"{kind}_{w}x{h}.png"
    if not png.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        img = photo_mosaic(w, h, root / "natural-train-extra") if kind == "photos" else mosaic(w, h, root / "kodak")
        img.save(png, compress_level=1)
    return png


def child(case: str, png: Path, quality: float, latent_iters: int, decoder_iters: int) -> dict[str, object]:
    """One adaptive encode in this process: seconds per stage, peak RSS, the RD saving."""
    import torch

    from codec.adaptation.encoder import adaptive_encode
    from codec.bitstream import Container, Field
    from codec.tiling import TilingPolicy, tiling_policy
    from codec.zoo import default_registry

    default_registry().get("default")
    threshold = CASES[case][3]
    policy = TilingPolicy() if threshold is None else TilingPolicy(threshold_pixels=threshold)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    with tiling_policy(policy):
        res = adaptive_encode(
            png, quality=quality, config="fast", latent_iters=latent_iters, decoder_iters=decoder_iters
        )
    seconds = time.perf_counter() - t0
    latent_steps = sum(1 for stage, *_ in res.curve if stage == "latent-refinement")
    adapter_steps = sum(1 for stage, *_ in res.curve if stage == "adapters")
    stages = res.stage_seconds
    return {
        "case": case,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE: no spinning on a loaded machine
        "tiled": Field.TILING in Container.from_bytes(res.result.data).fields,
        "latent_iters": latent_iters,
        "latent_lr": FAST.latent_lr,
        "decoder_iters": decoder_iters,
        "latent_steps_run": latent_steps,
        "adapter_steps_run": adapter_steps,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "seconds_per_latent_step": round(stages.get("latent-refinement", 0.0) / max(1, latent_steps), 2),
        "choice": res.choice,
        "rd_saving_pct": round(res.rd_saving_pct, 3),
        "costs": {k: round(v, 5) for k, v in res.costs.items()},
        "points_bpp_psnr": {k: [round(b, 5), round(p, 3)] for k, (b, p) in res.points.items()},
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def run_case(case: str, png: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, "-m", "codec.evaluation.tiled_adapt_bench", "--child", case, str(png)]
    cmd += ["--quality", str(args.quality), "--latent-iters", str(args.latent_iters)]
    cmd += ["--decoder-iters", str(args.decoder_iters)]
    load, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed:\n{proc.stderr[-3000:]}")
    out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    out.update(
        size="{}x{}".format(*CASES[case][:2]),
        picture=str(png.name),
        process_seconds=round(time.perf_counter() - t0, 1),
        load_average_at_start=round(load, 1),
        load_average_at_end=round(os.getloadavg()[0], 1),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=2, metavar=("CASE", "PNG"), help=argparse.SUPPRESS)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--quality", type=float, default=3.0)
    p.add_argument("--latent-iters", type=int, default=FAST.latent_iters, help=f"fast: {FAST.latent_iters}")
    p.add_argument("--decoder-iters", type=int, default=FAST.decoder_iters, help=f"fast: {FAST.decoder_iters}")
    p.add_argument("--out", type=Path, help="JSON file; cases already in it are kept unless re-run")
    args = p.parse_args(argv)
    if args.child:
        case, png = args.child
        print(json.dumps(child(case, Path(png), args.quality, args.latent_iters, args.decoder_iters)))
        return 0
    root = datasets_root()
    if root is None:
        raise SystemExit("the shared datasets are not here (see codec.datasets)")
    for case in args.cases.split(","):
        res = run_case(case, picture(case, root), args)
        env = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} " if "OMP_WAIT_POLICY" in os.environ else ""
        res["command"] = (
            env
            + "python -m codec.evaluation.tiled_adapt_bench "
            + " ".join(
                [f"--cases {case}", f"--latent-iters {args.latent_iters}", f"--decoder-iters {args.decoder_iters}"]
            )
        )
        print(json.dumps(res), flush=True)
        if args.out:
            record(args.out, result_key(case, args.latent_iters, args.decoder_iters), res)
    return 0


def result_key(case: str, latent_iters: int, decoder_iters: int) -> str:
    """The case's key in the JSON file: its name for the full ``fast`` schedule, else with the
    iterations it ran (``rd2mp-tiled@50+20``), so a scaled-down run never replaces a full one."""
    full = (latent_iters, decoder_iters) == (FAST.latent_iters, FAST.decoder_iters)
    return case if full else f"{case}@{latent_iters}+{decoder_iters}"


def record(out: Path, case: str, res: dict[str, object]) -> None:
    """Put one case into the JSON file, read again just before (runs of other cases may be writing
    it too: each keeps the others' cases)."""
    report: dict[str, object] = json.loads(out.read_text()) if out.exists() else {}
    cases = report.setdefault("cases", {})
    assert isinstance(cases, dict)
    cases[case] = res
    report["cpus"] = os.cpu_count()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
