"""Markdown tables for the README from the benchmarks' JSON outputs (so the README stays true).

python scripts/readme_tables.py adaptation results/adaptation_bench/summary.json
python scripts/readme_tables.py schedule results/schedule_compare.json
python scripts/readme_tables.py domains results/domain_bench/summary.json
python scripts/readme_tables.py eval results/eval_adapt/summary.json [vs_udic|vs_vtm]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DOMAINS = ("kodak", "line", "comic", "vector", "screen", "pixel")


def adaptation(summary: dict) -> None:
    methods = ("blr", "sga", "dr", "sga+adapters", "dr+adapters", "sga+omp")
    doms = [d for d in DOMAINS if d in summary]
    for key, title in (
        ("bd_rate_vs_plain_pct", "BD-rate % vs plain"),
        ("bd_psnr_vs_plain_db", "BD-PSNR dB vs plain"),
        ("rd_cost_saving_pct", "real RD-cost change % vs plain (same lambda)"),
        ("encode_s", "encode seconds per 256x256 crop"),
    ):
        print(f"\n{title}:\n")
        print("| method | " + " | ".join(doms) + " |")
        print("|---|" + "---:|" * len(doms))
        for m in methods:
            cells = []
            for d in doms:
                v = summary[d][m][key]
                if key == "rd_cost_saving_pct":
                    cells.append(f"{-v:+.1f}" if v is not None else "-")
                elif key == "encode_s":
                    cells.append(f"{v:.1f}" if v is not None else "-")
                else:
                    cells.append(str(v))
            print(f"| {m} | " + " | ".join(cells) + " |")
    speed = summary.get("gain_vs_iterations", {})
    if speed:
        print("\nshare of the final latent gain reached at each tenth of the iterations:\n")
        head = [f"{int(f * 100)}%" for f, _, _ in next(iter(speed.values()))]
        print("| variant | " + " | ".join(head) + " |")
        print("|---|" + "---:|" * len(head))
        for v, pts in speed.items():
            print(f"| {v} | " + " | ".join(f"{s:.2f}" for _, s, _ in pts) + " |")


def schedule(table: dict) -> None:
    print("| domain | points | full 2000+500 saving % | short saving % | share | short s | full s | time ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for d, v in table.items():
        share = f"{v['share_of_full_saving']:.2f}" if v["share_of_full_saving"] is not None else "n/a"
        print(
            f"| {d} | {v['points']} | {v['full_saving_pct']:.1f} | {v['short_saving_pct']:.1f} | {share} | "
            f"{v['short_encode_s']:.1f} | {v['full_encode_s']:.1f} | {v['time_ratio']:.3f} |"
        )


def domains(summary: dict) -> None:
    doms = [d for d in DOMAINS if d in summary]
    methods = list(summary[doms[0]]["methods"])
    print("| method | " + " | ".join(doms) + " |")
    print("|---|" + "---:|" * len(doms))
    for m in methods:
        print(f"| {m} BD-rate % | " + " | ".join(summary[d]["methods"][m]["bd_rate_vs_plain_pct"] for d in doms) + " |")
    for m in methods:
        cells = [f"{summary[d]['methods'][m]['decode_s'] * 1e3:.0f}" for d in doms]
        print(f"| {m} decode ms | " + " | ".join(cells) + " |")
    for n in summary[doms[0]]["trained"]:
        cells = [
            f"{summary[d]['trained'][n]['files']} files, {summary[d]['trained'][n]['train_s']:.0f} s, "
            f"{summary[d]['trained'][n]['validation_gain_pct']:+.1f}%"
            for d in doms
        ]
        print(f"| {n}-sample adapter: files, training, validation gain | " + " | ".join(cells) + " |")
        cells = [f"{summary[d]['auto'][n]['own']}/{summary[d]['auto'][n]['images']}" for d in doms]
        print(f"| auto picks own {n}-sample adapter | " + " | ".join(cells) + " |")
        cells = [f"{summary[d]['auto'][n]['images'] - summary[d]['auto'][n]['none']}" for d in doms]
        print(f"| auto picks some {n}-sample adapter (not none) | " + " | ".join(cells) + " |")


def evaluation(summary: dict, key: str) -> None:
    doms = [d for d in DOMAINS if d in summary]
    codecs = list(summary[doms[0]][key])
    print("| codec | " + " | ".join(doms) + " |")
    print("|---|" + "---:|" * len(doms))
    for c in codecs:
        print(f"| {c} | " + " | ".join(summary[d][key].get(c, {}).get("bd_rate_pct", "-") for d in doms) + " |")


def main() -> int:
    kind, path = sys.argv[1], Path(sys.argv[2])
    data = json.loads(path.read_text())
    if kind == "adaptation":
        adaptation(data)
    elif kind == "schedule":
        schedule(data)
    elif kind == "domains":
        domains(data)
    elif kind == "eval":
        evaluation(data, sys.argv[3] if len(sys.argv) > 3 else "vs_udic")
    else:
        raise SystemExit(f"unknown table kind {kind!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
