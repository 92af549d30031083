"""Re-measure every README table with the shipped weights, in one resumable command.

When ``codec/zoo/weights/default.pt`` changes, every table in the README must be measured again
(``scripts/readme_tables.py --check`` fails until then). This runs the benchmarks behind them with
the commands the README gives, copies each summary (and the plots) into ``docs/bench/`` and
``docs/eval/``, then regenerates the tables:

    python scripts/readme_benchmarks.py --dry-run       # the commands, in order, and what is current
    python scripts/readme_benchmarks.py                 # every step whose file is not current
    python scripts/readme_benchmarks.py --only eval kodak

A step is skipped when its file in ``docs/bench/`` already names the shipped weights, so a run cut
off by the end of a session continues where it stopped.

A switch of the default weights takes longer than one session. So the steps can be measured ahead,
on a branch (a worktree) whose ``default.pt`` is already the candidate, and their files kept on main
under ``docs/bench/pending/<candidate hash16>/`` (the same paths as in the repository):

    python scripts/readme_benchmarks.py --stage docs/bench/pending   # on the branch: copy the current steps' files

When main ships those weights, the next run first moves the pending files of the shipped hash into
place (``--dry-run`` says which), so only the missing steps run. Files of any other hash are left
alone: a pending set never stands next to other weights. In session 13 (N=96 weights), one lane at a
time on one core beside a training run (``OMP_NUM_THREADS=1``), it took about two hours: eval 7 min,
adaptive eval 10, domain adapters 37, Kodak 6, adaptation 2 x 13, schedule 20, zoo reference 8 + 9
(``lane_done`` keeps a finished lane); decode timing (2 min) wants an idle machine. On the AVX2 CPU of
sessions 14-15 (no native bf16, so the adaptive steps optimise in fp32), one or two at a time: eval 14 min,
adaptive eval 27, domain adapters 69, adaptation 2 x 41, schedule 70, zoo reference 25 + 23. The prose around the tables
quotes some of their numbers: read it again after a run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BENCH = ROOT / "docs" / "bench"
EVAL_PLOTS = ROOT / "docs" / "eval"
FAST = ["--latent-iters", "100", "--decoder-iters", "100", "--latent-lr", "2e-2", "--decoder-lr", "5e-3"]
FAST250 = [
    *("--latent-iters", "250", "--decoder-iters", "100", "--latent-lr", "5e-3", "--decoder-lr", "5e-3"),
    *("--methods", "sga", "sga+adapters"),
]
FULL = ["--latent-iters", "2000", "--decoder-iters", "500", "--latent-lr", "1e-3", "--decoder-lr", "1e-3"]
AB = [PY, "-m", "codec.evaluation.adaptation_bench"]
DOMAINS = ("kodak", "line", "comic", "vector", "screen", "pixel")


@dataclass
class Step:
    name: str
    target: str  # file in docs/bench whose stamp says whether the step is current
    parallel: list[list[str]]  # commands run side by side (one per core), then...
    then: list[list[str]] = field(default_factory=list)  # ...these, one after the other
    copies: list[tuple[str, str]] = field(default_factory=list)  # (from, to) relative to the repo root


def adaptation_lanes(schedule: list[str], out: str) -> tuple[list[list[str]], list[list[str]]]:
    """adaptation_bench on the six sets in two lanes of three (one per core), then their merge into ``out``."""
    lanes = {f"{out}_a": ("line", "screen", "pixel"), f"{out}_b": ("kodak", "comic", "vector")}
    parallel = [
        [*AB, "--domains", *domains, "--images", "3", *schedule, "--out", lane] for lane, domains in lanes.items()
    ]
    return parallel, [[*AB, "--merge", *lanes, "--out", out]]


STEPS = [
    Step(
        "adaptation",
        "adaptation_summary.json",
        *adaptation_lanes(FAST, "results/ab_fast"),
        [
            ("results/ab_fast/summary.json", "docs/bench/adaptation_summary.json"),
            ("results/ab_fast/points.csv", "docs/bench/adaptation_points.csv"),
        ],
    ),
    Step(
        "schedule",
        "schedule_compare_fast.json",
        [
            [
                *AB,
                "--images",
                "1",
                "--qualities",
                "2.5",
                "4.0",
                *FULL,
                "--methods",
                "sga+adapters",
                "--out",
                "results/ab_full",
            ]
        ],
        [
            [
                PY,
                "-m",
                "codec.evaluation.schedule_compare",
                "--short",
                "results/ab_fast_a",
                "results/ab_fast_b",
                "--full",
                "results/ab_full",
                "--out",
                "docs/bench/schedule_compare_fast.json",
            ]
        ],
        [("results/ab_full/points.csv", "docs/bench/adaptation_full_schedule_points.csv")],
    ),
    Step(
        "eval",
        "eval_summary.json",
        [[PY, "-m", "codec.cli", "eval", "--kodak-full", "--out", "results/eval"]],
        copies=[
            ("results/eval/summary.json", "docs/bench/eval_summary.json"),
            ("results/eval/points.csv", "docs/bench/eval_points.csv"),
            ("results/eval/plots", "docs/eval"),
        ],
    ),
    Step(
        "eval-adapt",
        "eval_adapt_summary.json",
        [
            [
                PY,
                "-m",
                "codec.cli",
                "eval",
                "--adapt",
                "fast",
                "--images",
                "3",
                "--qualities",
                "1",
                "2.5",
                "4",
                "5.5",
                "--out",
                "results/eval_adapt",
            ]
        ],
        copies=[
            ("results/eval_adapt/summary.json", "docs/bench/eval_adapt_summary.json"),
            ("results/eval_adapt/points.csv", "docs/bench/eval_adapt_points.csv"),
        ]
        + [(f"results/eval_adapt/plots/{d}.png", f"docs/eval/adapt_{d}.png") for d in DOMAINS],
    ),
    Step(
        "domains",
        "domain_summary.json",
        [[PY, "-m", "codec.evaluation.domain_bench", "--out", "results/domain_bench"]],
        copies=[
            ("results/domain_bench/summary.json", "docs/bench/domain_summary.json"),
            ("results/domain_bench/points.csv", "docs/bench/domain_points.csv"),
        ],
    ),
    Step(
        "kodak",
        "kodak_compare.json",
        [[PY, "-m", "codec.evaluation.kodak_compare", "--out", "docs/bench/kodak_compare.json"]],
    ),
    Step(
        # default's figures beside the trained mbt2018-mean family in the zoo-adaptation table: the
        # iterations and learning rates that family was measured with (250 + 100 steps at lr 5e-3)
        "zoo-reference",
        "adaptation_summary_fast250.json",
        *adaptation_lanes(FAST250, "results/ab_fast250"),
        [("results/ab_fast250/summary.json", "docs/bench/adaptation_summary_fast250.json")],
    ),
    Step(
        "decode-timing",
        "decode_timing.json",
        [[PY, "-m", "codec.evaluation.decode_timing", "--repeats", "15", "--out", "docs/bench/decode_timing.json"]],
    ),
]


def shipped_hash() -> str:
    sys.path.insert(0, str(ROOT))
    from codec.evaluation.provenance import default_hash

    return default_hash()


def is_current(step: Step, current: str) -> bool:
    """Whether the step's file in docs/bench already names the shipped default weights."""
    path = BENCH / step.target
    if not path.is_file():
        return False
    data = json.loads(path.read_text())
    return isinstance(data, dict) and data.get("weights", {}).get("default") == current


def _copy(src: str, dst: str) -> None:
    s, d = ROOT / src, ROOT / dst
    if s.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        for f in s.iterdir():
            shutil.copy2(f, d / f.name)
    else:
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, d)


def step_files(step: Step) -> list[str]:
    """The repository paths a step writes (its stamped file first, and a CSV written beside it)."""
    csv = f"docs/bench/{Path(step.target).stem}.csv"
    files = [f"docs/bench/{step.target}"] + [dst for _, dst in step.copies] + ([csv] if (ROOT / csv).is_file() else [])
    return list(dict.fromkeys(files))


def stage(steps: list[Step], current: str, into: Path) -> None:
    """Copy the files of every step that is current into ``into/<current hash>/`` (same paths)."""
    root = into / current
    for step in steps:
        if not is_current(step, current):
            print(f"readme_benchmarks: {step.name} is not measured with default@{current}; not staged")
            continue
        for rel in step_files(step):
            _copy(rel, str(root / rel))  # an absolute path: ROOT / it is itself
        print(f"readme_benchmarks: {step.name} staged in {root}")


def adopt_pending(current: str, dry_run: bool) -> None:
    """Move ``docs/bench/pending/<shipped hash>/`` into place: steps measured ahead for these weights."""
    root = BENCH / "pending" / current
    if not root.is_dir():
        return
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root)
        print(f"readme_benchmarks: {'would adopt' if dry_run else 'adopting'} pending {rel}")
        if not dry_run:
            (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f, ROOT / rel)
    if not dry_run:
        shutil.rmtree(root)


def lane_done(cmd: list[str], current: str) -> bool:
    """Whether a parallel command's ``--out`` folder already holds a summary of the shipped weights.

    A step's lanes can then be run one at a time by hand (one core beside a training run), and the
    step itself only merges and copies what they wrote.
    """
    if "--out" not in cmd:
        return False
    summary = ROOT / cmd[cmd.index("--out") + 1] / "summary.json"
    if not summary.is_file():
        return False
    data = json.loads(summary.read_text())
    return isinstance(data, dict) and data.get("weights", {}).get("default") == current


def run(step: Step, current: str) -> None:
    """The step's parallel commands side by side (those not done yet), then the rest in order, then its copies."""
    procs = [subprocess.Popen(cmd, cwd=ROOT) for cmd in step.parallel if not lane_done(cmd, current)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"readme_benchmarks: step {step.name} failed (exit codes {codes})")
    for cmd in step.then:
        subprocess.run(cmd, cwd=ROOT, check=True)
    for src, dst in step.copies:
        _copy(src, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], help="these steps only")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and what is current")
    ap.add_argument("--force", action="store_true", help="run steps that are already current too")
    ap.add_argument("--stage", type=Path, help="copy the current steps' files under STAGE/<hash>/ and stop")
    args = ap.parse_args(argv)
    current = shipped_hash()
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    if args.stage:
        stage(steps, current, args.stage.resolve())
        return 0
    adopt_pending(current, args.dry_run)
    for step in steps:
        done = is_current(step, current) and not args.force
        if args.dry_run:
            print(f"# {step.name}: {'current' if done else 'to run'} (docs/bench/{step.target})")
            for cmd in step.parallel + step.then:
                print("  " + " ".join(c if c != PY else "python" for c in cmd))
            continue
        if done:
            print(f"readme_benchmarks: {step.name} is current (default@{current}), skipped", flush=True)
            continue
        print(f"readme_benchmarks: {step.name} ...", flush=True)
        run(step, current)
    if not args.dry_run:
        return subprocess.run([PY, "scripts/readme_tables.py", "--write"], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
