"""The README's measured tables, generated from the benchmarks' results files in ``docs/bench/``.

Every table in README.md between ``<!-- table: NAME -->`` and ``<!-- /table -->`` is made here from
its results file, so the README says what the files say:

    python scripts/readme_tables.py --write    # regenerate every table in README.md
    python scripts/readme_tables.py --check    # exit 1 if a table differs from its file, or was
                                               # measured with other default weights than shipped
    python scripts/readme_tables.py --list     # the tables and their files

The check is part of the test suite (tests/test_readme_tables.py). Each results file carries the hash
of the weights it measured (``"weights"``, written by ``codec.evaluation.provenance``); a table whose
file names other ``default`` weights than ``codec/zoo/weights/default.pt`` fails the check, so an old
number cannot stand next to new weights. When the weights change: re-run the benchmarks (the README
gives each command), copy their summaries to ``docs/bench/``, then ``--write``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "docs" / "bench"
README = ROOT / "README.md"
DOMAINS = ("kodak", "line", "comic", "vector", "screen", "pixel")
ADAPT_METHODS = ("blr", "sga", "dr", "sga+adapters", "dr+adapters", "sga+omp")
BLOCK = re.compile(r"(<!-- table: ([a-z0-9-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _head(cols: list[str], first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]


def _doms(summary: dict[str, Any]) -> list[str]:
    return [d for d in DOMAINS if d in summary]


def adaptation(key: str) -> Callable[[dict[str, Any]], list[str]]:
    def render(summary: dict[str, Any]) -> list[str]:
        doms = _doms(summary)
        lines = _head(doms, "method")
        for m in ADAPT_METHODS:
            cells = []
            for d in doms:
                v = summary[d][m][key]
                if key == "rd_cost_saving_pct":
                    cells.append(f"{-v:+.1f}" if v is not None else "-")
                elif key == "encode_s":
                    cells.append(f"{v:.1f}" if v is not None else "-")
                else:
                    cells.append(str(v))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        return lines

    return render


def gain_speed(summary: dict[str, Any]) -> list[str]:
    speed = summary["gain_vs_iterations"]
    head = [f"{int(f * 100)}%" for f, _, _ in next(iter(speed.values()))]
    lines = _head(head, "variant")
    for v, pts in speed.items():
        lines.append(f"| {v} | " + " | ".join(f"{s:.2f}" for _, s, _ in pts) + " |")
    return lines


def schedule(table: dict[str, Any]) -> list[str]:
    lines = [
        "| domain | points | full 2000+500 saving % | short saving % | share | short s | full s | time ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d, v in table.items():
        if d == "weights":
            continue
        share = f"{v['share_of_full_saving']:.2f}" if v["share_of_full_saving"] is not None else "n/a"
        lines.append(
            f"| {d} | {v['points']} | {v['full_saving_pct']:.1f} | {v['short_saving_pct']:.1f} | {share} | "
            f"{v['short_encode_s']:.1f} | {v['full_encode_s']:.1f} | {v['time_ratio']:.3f} |"
        )
    return lines


def domains(summary: dict[str, Any]) -> list[str]:
    doms = _doms(summary)
    methods = list(summary[doms[0]]["methods"])
    lines = _head(doms, "method")
    for m in methods:
        lines.append(
            f"| {m} BD-rate % | " + " | ".join(summary[d]["methods"][m]["bd_rate_vs_plain_pct"] for d in doms) + " |"
        )
    for m in methods:
        cells = [f"{summary[d]['methods'][m]['decode_s'] * 1e3:.0f}" for d in doms]
        lines.append(f"| {m} decode ms | " + " | ".join(cells) + " |")
    for n in summary[doms[0]]["trained"]:
        cells = []
        for d in doms:
            t = summary[d]["trained"][n]
            cells.append(f"{t['files']} files, {t['train_s']:.0f} s, {t['validation_gain_pct']:+.1f}%")
        lines.append(f"| {n}-sample adapter: files, training, validation gain | " + " | ".join(cells) + " |")
        cells = [f"{summary[d]['auto'][n]['own']}/{summary[d]['auto'][n]['images']}" for d in doms]
        lines.append(f"| auto picks own {n}-sample adapter | " + " | ".join(cells) + " |")
        cells = [f"{summary[d]['auto'][n]['images'] - summary[d]['auto'][n]['none']}" for d in doms]
        lines.append(f"| auto picks some {n}-sample adapter (not none) | " + " | ".join(cells) + " |")
    return lines


def evaluation(key: str) -> Callable[[dict[str, Any]], list[str]]:
    def render(summary: dict[str, Any]) -> list[str]:
        doms = _doms(summary)
        codecs = list(summary[doms[0]][key])
        lines = _head(doms, "codec")
        for c in codecs:
            cells = [summary[d][key].get(c, {}).get("bd_rate_pct", "-") for d in doms]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        return lines

    return render


def kodak_curve(model: str) -> Callable[[dict[str, Any]], list[str]]:
    def render(summary: dict[str, Any]) -> list[str]:
        curve = summary["models"][model]["curve"]
        lines = _head([f"{p['quality']:g}" for p in curve], "quality")
        lines.append("| bpp | " + " | ".join(f"{p['bpp']:.3f}" for p in curve) + " |")
        lines.append("| PSNR (dB) | " + " | ".join(f"{p['psnr']:.2f}" for p in curve) + " |")
        return lines

    return render


def kodak_models(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| model | BD-rate vs VVC (published) | BD-rate vs JPEG 4:2:0 | top quality |",
        "|---|---:|---:|---:|",
    ]
    for model, entry in summary["models"].items():
        top = entry["curve"][-1]
        lines.append(
            f"| `{model}` | {entry['bd_rate_vs_vvc_pct']} % | {entry['bd_rate_vs_jpeg420_pct']} % | "
            f"{top['bpp']:.3f} bpp, {top['psnr']:.2f} dB |"
        )
    return lines


def train_speed(data: dict[str, Any]) -> list[str]:
    lines = [
        "| N | fp32 s/step | bf16 + channels_last s/step | speed-up | bf16 with fp32 GDN and last layers | speed-up |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    by_n: dict[int, dict[str, dict[str, Any]]] = {}
    for row in data["rows"]:
        by_n.setdefault(row["N"], {})[row["variant"]] = row
    for n, v in by_n.items():
        fp, bf, isl = v["fp32"], v["bf16+channels_last"], v["bf16+channels_last+fp32-islands"]
        lines.append(
            f"| {n} | {fp['median_s_per_step']:.3f} | {bf['median_s_per_step']:.3f} | {bf['speedup_vs_fp32']:.2f}x | "
            f"{isl['median_s_per_step']:.3f} | {isl['speedup_vs_fp32']:.2f}x |"
        )
    return lines


def optimiser_ab(data: dict[str, Any]) -> list[str]:
    """Training runs from the same weights: crops BD-rate against the start at equal training minutes."""
    marks = [str(m) for m in data["marks_minutes"]]
    lines = [
        "| run | optimiser, lr | s/step | "
        + " | ".join(f"after {m} min" for m in marks)
        + " | end: steps, minutes, crops | Kodak 24: BD vs VVC, quality 6 |",
        "|---|---|---:|" + "---:|" * len(marks) + "---:|---:|",
    ]
    for label, r in data["runs"].items():
        cells = [f"{r['at_minutes'][m]:+.2f} %" if r["at_minutes"][m] is not None else "-" for m in marks]
        end = r["points"][-1]["bd_vs_start_pct"] if r["points"] else None
        end_cell = f"{r['end_step'] - r['start_step']:,}, {r['train_minutes']:.0f}, " + (
            f"{end:+.2f} %" if end is not None else "-"
        )
        k = r.get("kodak")
        kodak = f"{k['bd_rate_vs_vvc_pct']} %, {k['top']['psnr']:.2f} dB" if k else "-"
        lines.append(
            f"| {label} | {r['optimiser']}, {r['lr']:g} | {r['s_per_step']:.2f} | "
            + " | ".join(cells)
            + f" | {end_cell} | {kodak} |"
        )
    return lines


def zoo_vs_default(both: dict[str, Any]) -> list[str]:
    """BD-rate of each method per domain for a trained zoo family (``--rate-models``), under the
    ``default`` model's figures for the same methods from the adaptation table's file."""
    zoo, ref = both["source"], both["reference"]
    doms = _doms(zoo)
    family = ", ".join(f"`{n}`" for n in zoo["weights"])
    lines = _head(doms, "base model: method, figure")
    for m in ADAPT_METHODS:
        if m not in zoo[doms[0]] or zoo[doms[0]][m]["rd_cost_saving_pct"] is None:
            continue
        for label, s in (("`default`", ref), (family, zoo)):
            cells = [str(s[d][m]["bd_rate_vs_plain_pct"]) if d in s else "-" for d in doms]
            lines.append(f"| {label}: {m}, BD-rate % | " + " | ".join(cells) + " |")
        for label, s in (("`default`", ref), (family, zoo)):
            cells = [f"{-s[d][m]['rd_cost_saving_pct']:+.1f}" if d in s else "-" for d in doms]
            lines.append(f"| {label}: {m}, RD cost % | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Table:
    source: str  # file name in docs/bench
    render: Callable[[dict[str, Any]], list[str]]
    stamped: bool = True  # False: the figures do not depend on the weights (training speed)
    # a second results file the table shows beside its own (render then gets {"source", "reference"});
    # the weights check applies to it (the source's own models are not the shipped default)
    reference: str | None = None


TABLES: dict[str, Table] = {
    "adaptation-bd-rate": Table("adaptation_summary.json", adaptation("bd_rate_vs_plain_pct")),
    "adaptation-bd-psnr": Table("adaptation_summary.json", adaptation("bd_psnr_vs_plain_db")),
    "adaptation-rd-cost": Table("adaptation_summary.json", adaptation("rd_cost_saving_pct")),
    "adaptation-encode-s": Table("adaptation_summary.json", adaptation("encode_s")),
    "adaptation-gain-speed": Table("adaptation_summary.json", gain_speed),
    "schedule-fast": Table("schedule_compare_fast.json", schedule),
    "eval-vs-vtm": Table("eval_summary.json", evaluation("vs_vtm444")),
    "eval-vs-udic": Table("eval_summary.json", evaluation("vs_udic")),
    "eval-adapt-vs-vtm": Table("eval_adapt_summary.json", evaluation("vs_vtm444")),
    "eval-adapt-vs-udic": Table("eval_adapt_summary.json", evaluation("vs_udic")),
    "domains": Table("domain_summary.json", domains),
    "kodak-default": Table("kodak_compare.json", kodak_curve("default")),
    "kodak-models": Table("kodak_compare.json", kodak_models),
    "train-speed": Table("train_speed.json", train_speed, stamped=False),
    # runs from the candidate weights, not from the shipped default
    "optimiser-ab": Table("optimiser_ab.json", optimiser_ab, stamped=False),
    "optimiser-ab-s12": Table("optimiser_ab_s12.json", optimiser_ab, stamped=False),
    "optimiser-ab-s13": Table("optimiser_ab_s13.json", optimiser_ab, stamped=False),
    "optimiser-ab-s15": Table("optimiser_ab_s15.json", optimiser_ab, stamped=False),
    # the zoo family ran the fast schedule of the time (250 + 100 steps at lr 5e-3): compared with default on that one
    "zoo-adaptation": Table("zoo_adaptation_summary.json", zoo_vs_default, reference="adaptation_summary_fast250.json"),
}


def shipped_hash() -> str:
    """The hex hash of the shipped default weights, as bitstreams name it."""
    sys.path.insert(0, str(ROOT))
    from codec.evaluation.provenance import default_hash

    return default_hash()


def problems(text: str, bench: Path, current: str | None) -> tuple[str, list[str]]:
    """README text with every table regenerated, and what is wrong with the tables as they stand."""
    found: list[str] = []
    errors: list[str] = []

    def regenerate(m: re.Match[str]) -> str:
        name = m.group(2)
        found.append(name)
        table = TABLES.get(name)
        if table is None:
            errors.append(f"README table {name!r}: no such table in scripts/readme_tables.py")
            return m.group(0)
        source = bench / table.source
        if not source.is_file():
            errors.append(f"table {name!r}: its results file docs/bench/{table.source} is missing")
            return m.group(0)
        data = json.loads(source.read_text())
        if table.reference is not None:
            ref = bench / table.reference
            if not ref.is_file():
                errors.append(f"table {name!r}: its reference file docs/bench/{table.reference} is missing")
                return m.group(0)
            data = {"source": data, "reference": json.loads(ref.read_text())}
        stamped = data["reference"] if table.reference is not None else data
        stamp = stamped.get("weights", {}).get("default") if isinstance(stamped, dict) else None
        if table.stamped and current is not None and stamp != current:
            errors.append(f"table {name!r}: {table.source} measured default@{stamp}, shipped default@{current}")
        body = "\n".join(table.render(data)) + "\n"
        if body != m.group(3):
            errors.append(f"table {name!r} differs from {table.source} (run scripts/readme_tables.py --write)")
        return m.group(1) + body + m.group(4)

    new = BLOCK.sub(regenerate, text)
    errors += [f"table {n!r} appears {found.count(n)} times" for n in set(found) if found.count(n) > 1]
    return new, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for name, t in TABLES.items():
            print(f"{name:24s} docs/bench/{t.source}")
        return 0
    text = README.read_text()
    new, errors = problems(text, BENCH, shipped_hash())
    if args.write:
        README.write_text(new)
        errors = [e for e in errors if "differs from" not in e]
    for e in errors:
        print(f"readme_tables: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
