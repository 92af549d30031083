"""Write a model card from a weights file and the measured Kodak results, so its figures are never typed by hand.

    python -m codec.evaluation.kodak_compare --checkpoint cand=W.pt --model default cand   # measures
    python -m codec.training.model_card --weights W.pt --model cand --out CARD.md          # writes the card

The card says what the issue asks a model card to say: the architecture, the data, the steps and
the wall time per machine kind (from the training history the trainer stores in every checkpoint
and export), the Kodak table with BD-rate against JPEG and the published VVC results, and the
command that continues training from these weights.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from codec.datasets import DEFAULT_TRAINING_FOLDERS, datasets_root
from codec.zoo.loaders import load_gained_file
from codec.zoo.registry import WEIGHTS_DIR


def history_rows(history: list[dict[str, Any]]) -> list[str]:
    """One table row per session (steps, hours, device, data), then the total per device kind."""
    rows = ["| session | device | data | precision, optimiser | steps | hours |", "|---|---|---|---|---:|---:|"]
    per_device: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    prev_step, prev_wall = 0, 0.0
    for i, h in enumerate(history, 1):
        start_step, start_wall = h.get("start_step", prev_step), h.get("start_wall", prev_wall)
        steps, hours = h["end_step"] - start_step, (h["end_wall"] - start_wall) / 3600
        prev_step, prev_wall = h["end_step"], h["end_wall"]
        if "event" in h:
            rows.append(f"| {i} | - | {h['event']} | - | - | - |")
            continue
        data = h.get("data", "natural-train")
        data = ", ".join(data) if isinstance(data, list) else data
        recipe = h.get("precision", "fp32") + (f", {h['optimiser']}" if "optimiser" in h else "")
        recipe += f" lr {h['lr']:g}" if "lr" in h else ""
        rows.append(f"| {i} {h.get('date', '')} | {h['device']} | {data} | {recipe} | {steps:,} | {hours:.2f} |")
        per_device[h["device"]][0] += steps
        per_device[h["device"]][1] += hours
    rows += ["", "| device | steps | hours |", "|---|---:|---:|"]
    rows += [f"| {d} | {int(s):,} | {h:.2f} |" for d, (s, h) in per_device.items()]
    return rows


def continue_data(history: list[dict[str, Any]], root: Path | None = None) -> str:
    """``--data`` for the continue command: the folders the last session trained on, so that
    continuing keeps the recipe (a universal base must not go on with the photos only).

    Histories name folders relative to the shared datasets (``graphics-train/screen``); older ones
    only by their last part (``screen``), which is also the name of an evaluation folder, so such a
    name is looked up under ``graphics-train`` first: the command must never train on evaluation
    files. Empty when the last session used the trainer's default folders."""
    trained = [h for h in history if "event" not in h]
    names = trained[-1].get("data") if trained else None
    if not isinstance(names, list) or tuple(names) == DEFAULT_TRAINING_FOLDERS:
        return ""
    root = root or datasets_root()
    shown = []
    for name in names:
        nested = "/" not in name and root is not None and (root / "graphics-train" / name).is_dir()
        shown.append(f"../shared/datasets/{'graphics-train/' if nested else ''}{name}")
    return " --data " + " ".join(shown)


def continue_recipe(history: list[dict[str, Any]]) -> str:
    """``--lr``, ``--warmup`` and ``--optimizer`` for the continue command: the last session's, so
    continuing a trained model does not restart at the trainer's from-scratch rate (5e-4). Older
    histories do not record them; 1e-4 is what continuing measured best at (session 10: Kodak
    +102.1 % after lr 1e-4 against +103.0 % after 3e-5, from the same weights)."""
    trained = [h for h in history if "event" not in h]
    last = trained[-1] if trained else {}
    flags = f" --lr {float(last.get('lr') or 1e-4):g} --warmup 100"
    if last.get("optimiser", "adam") != "adam":
        flags += f" --optimizer {last['optimiser']}"
    return flags


def kodak_rows(res: dict[str, Any], model: str) -> list[str]:
    entry = res["models"][model]
    rows = [
        f"## Kodak ({res['images']} images, full size), `python -m codec.evaluation.kodak_compare`",
        "",
        "bpp counts every byte of the `.udic` file; PSNR on 8-bit RGB; mean over the images.",
        "",
        "| quality | bpp | PSNR (dB) |",
        "|---:|---:|---:|",
    ]
    rows += [f"| {p['quality']:g} | {p['bpp']:.4f} | {p['psnr']:.2f} |" for p in entry["curve"]]
    rows += [
        "",
        f"BD-rate against VVC (VTM, the per-image results published with WACV 2023): **{entry['bd_rate_vs_vvc_pct']} %** "
        f"(BD-PSNR {entry['bd_psnr_vs_vvc_db']} dB). Against JPEG (Pillow 4:2:0, quality 5-95): "
        f"**{entry['bd_rate_vs_jpeg420_pct']} %** (BD-PSNR {entry['bd_psnr_vs_jpeg420_db']} dB). Negative = fewer bits.",
    ]
    return rows


def card(weights: Path, res: dict[str, Any], model: str, title: str, note: str) -> str:
    shipped = torch.load(weights, map_location="cpu", weights_only=True)
    cfg = shipped["config"]
    loaded = load_gained_file(weights, model)  # as decoders load it, so the hash is the one bitstreams carry
    net = loaded.net
    n_params = sum(p.numel() for p in net.parameters())
    nh = cfg.get("Nh") or cfg["N"]
    lines = [
        f"# {title}",
        "",
        "A variable-rate mean-scale hyperprior (Minnen et al. 2018) with per-level gain vectors",
        "(Cui et al. 2021): one network for every rate, quality 1-6 and anything in between.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `codec/models/gained.py`, N={cfg['N']} (image transforms), Nh={nh} (hyper), M={cfg['M']}, {n_params:,} parameters |",
        f"| file | `{weights.name}`, {weights.stat().st_size / 1e6:.2f} MB: fp16 weights + probability tables (no `update()` at decode) |",
        f"| weights hash | `{loaded.hash.hex()}` (written into every bitstream) |",
        f"| rate levels | lambda = {', '.join(f'{v:.3g}' for v in cfg['lambdas'])} (MSE, CompressAI's qualities 1-6) |",
        f"| training | {shipped.get('step'):,} steps of batch 4 x 256x256 crops with flips, a warm-up and cosine decay per session (optimiser and learning rate in the history below), each sample at a random level, mixed quantisation (noise for the rate, straight-through rounding for the decoder); {float(shipped.get('train_seconds') or 0) / 3600:.2f} h in all |",
        f"| continue | `python -m codec.training.train_default --out runs/next --init {_shown(weights)}{continue_data(_history(shipped))}{continue_recipe(_history(shipped))} --minutes 120` (where the run that made these weights is at hand, `--init` its `last.pt` instead: it keeps the fp32 weights and optimiser state; then `python -m codec.zoo.retire` before `python -m codec.training.export runs/next/last.pt` over `default.pt`, so files made with these weights keep decoding) |",
        "",
        "## Training history",
        "",
        *history_rows(_history(shipped)),
        "",
        *kodak_rows(res, model),
        "",
    ]
    if note:
        lines += ["## Notes", "", note, ""]
    return "\n".join(lines)


def _shown(path: Path) -> Path:
    """The path as a reader of the repo would type it (relative to the current folder when inside it)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _history(shipped: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's training history; files exported before histories were kept get one entry."""
    step, wall = int(shipped.get("step") or 0), float(shipped.get("train_seconds") or 0.0)
    return list(shipped.get("history") or [{"device": "CPU (2 cores)", "end_step": step, "end_wall": wall}])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "default.pt")
    ap.add_argument("--results", type=Path, default=Path("results/kodak_compare.json"))
    ap.add_argument("--model", default="default", help="the model's name in the results file")
    ap.add_argument("--title", default="Embedded default model: `default`")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "MODEL_CARD.md")
    ap.add_argument("--note", default="", help="free text for the card (how this run went)")
    args = ap.parse_args(argv)
    res = json.loads(args.results.read_text())
    args.out.write_text(card(args.weights, res, args.model, args.title, args.note))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
