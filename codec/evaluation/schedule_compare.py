"""Does a short adaptation schedule keep the gain of the full one? (issue: adaptive encode)

Reads two runs of :mod:`codec.evaluation.adaptation_bench` (a short schedule, e.g. the default
preset, and the full 2000+500 schedule of seed 001) and compares, on the images and rates both
measured, the real RD-cost saving of one method against the plain encode::

    cost = bpp + lambda * 255^2 * MSE          (adaptation_bench.rd_saving_pct: lambda of the rate point)
    share = saving(short) / saving(full)       time ratio = encode s(short) / encode s(full)

    python -m codec.evaluation.schedule_compare --short results/ab_fast_a results/ab_fast_b \\
        --full results/ab_full --method sga+adapters
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from codec.evaluation.adaptation_bench import rd_saving_pct
from codec.evaluation.provenance import STAMP_KEY, weights_stamp
from codec.zoo import default_registry


def _points(dirs: list[Path]) -> dict[tuple[str, str, float, str], dict]:
    out = {}
    for d in dirs:
        with open(d / "points.csv", newline="") as f:
            for r in csv.DictReader(f):
                out[(r["domain"], r["image"], float(r["quality"]), r["method"])] = r
    return out


def compare(short_dirs: list[Path], full_dirs: list[Path], method: str, model: str = "default") -> dict:
    base = default_registry().get(model)
    short, full = _points(short_dirs), _points(full_dirs)
    per_domain: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    for (domain, image, q, m), row in sorted(full.items()):
        if m != method or (domain, image, q, method) not in short or (domain, image, q, "plain") not in full:
            continue
        lmbda = base.lmbda_at(base.level_for(q))
        plain = full[(domain, image, q, "plain")]
        s_row = short[(domain, image, q, method)]
        full_gain = rd_saving_pct(plain, row, lmbda)
        short_gain = rd_saving_pct(plain, s_row, lmbda)
        per_domain[domain].append((full_gain, short_gain, float(s_row["encode_s"]), float(row["encode_s"])))
    table = {domain: _stats(rows) for domain, rows in per_domain.items()}
    if per_domain:
        table["all"] = _stats([r for rows in per_domain.values() for r in rows])
    return table


def _stats(rows: list[tuple[float, float, float, float]]) -> dict:
    """Means of (full saving, short saving, short s, full s); share and time ratio of the sums."""
    a = np.array(rows)
    return {
        "points": len(rows),
        "full_saving_pct": float(a[:, 0].mean()),
        "short_saving_pct": float(a[:, 1].mean()),
        "share_of_full_saving": float(a[:, 1].sum() / a[:, 0].sum()) if a[:, 0].sum() > 0 else None,
        "short_encode_s": float(a[:, 2].mean()),
        "full_encode_s": float(a[:, 3].mean()),
        "time_ratio": float(a[:, 2].sum() / a[:, 3].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=Path, nargs="+", required=True, help="adaptation_bench output folder(s)")
    ap.add_argument("--full", type=Path, nargs="+", required=True)
    ap.add_argument("--method", default="sga+adapters")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    args = ap.parse_args(argv)
    table = compare(args.short, args.full, args.method, args.model)
    print(f"{args.method}: real RD-cost saving vs plain, short schedule against full schedule")
    head = ("domain", "pts", "full %", "short %", "share", "short s", "full s", "time")
    print(f"{head[0]:8s} " + " ".join(f"{h:>8s}" for h in head[1:]))
    for domain, v in table.items():
        share = f"{v['share_of_full_saving']:.2f}" if v["share_of_full_saving"] is not None else "n/a"
        print(
            f"{domain:8s} {v['points']:8d} {v['full_saving_pct']:8.1f} {v['short_saving_pct']:8.1f} {share:>8s} "
            f"{v['short_encode_s']:8.1f} {v['full_encode_s']:8.1f} {v['time_ratio']:8.3f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**table, STAMP_KEY: weights_stamp([args.model])}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
