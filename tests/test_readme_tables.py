"""The README's measured tables say what their results files say, measured with the shipped weights."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_tables"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_readme_table_matches_its_file_and_the_shipped_weights(tables: ModuleType) -> None:
    text = (ROOT / "README.md").read_text()
    _, errors = tables.problems(text, tables.BENCH, tables.shipped_hash())
    assert errors == []
    names = [m.group(2) for m in tables.BLOCK.finditer(text)]
    assert sorted(names) == sorted(tables.TABLES)  # every table is in the README, once


def _copy_bench(tables: ModuleType, tmp_path: Path) -> Path:
    bench = tmp_path / "bench"
    shutil.copytree(tables.BENCH, bench)
    return bench


def test_a_table_measured_with_other_weights_fails_the_check(tables: ModuleType, tmp_path: Path) -> None:
    bench = _copy_bench(tables, tmp_path)
    path = bench / "domain_summary.json"
    data = json.loads(path.read_text())
    data["weights"]["default"] = "0123456789abcdef"
    path.write_text(json.dumps(data))
    _, errors = tables.problems((ROOT / "README.md").read_text(), bench, tables.shipped_hash())
    assert any("'domains'" in e and "default@0123456789abcdef" in e for e in errors)


def test_a_hand_edited_number_fails_the_check_and_write_restores_it(tables: ModuleType, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- table: kodak-default -->")
    row = text.index("| PSNR (dB) |", start)
    edited = text[:row] + "| PSNR (dB) | 99.00" + text[row + len("| PSNR (dB) | 00.00") :]
    fixed, errors = tables.problems(edited, tables.BENCH, tables.shipped_hash())
    assert any("'kodak-default' differs" in e for e in errors)
    assert fixed == text


@pytest.fixture()
def benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/readme_benchmarks.py with its repository root moved to a scratch folder."""
    spec = importlib.util.spec_from_file_location("readme_benchmarks", ROOT / "scripts" / "readme_benchmarks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_benchmarks"] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "BENCH", tmp_path / "docs" / "bench")
    return module


def test_steps_staged_for_a_candidate_are_adopted_only_once_it_ships(benchmarks: ModuleType, tmp_path: Path) -> None:
    """A step measured ahead on a branch (``--stage``) moves into docs/bench when main ships its
    weights, and not before: a pending set of other weights stays where it is."""
    step = next(s for s in benchmarks.STEPS if s.name == "kodak")
    measured = tmp_path / "docs" / "bench" / step.target
    measured.parent.mkdir(parents=True)
    measured.write_text(json.dumps({"weights": {"default": "aaaa"}, "bd": 1.0}))
    pending = tmp_path / "main-pending"
    benchmarks.stage([step], "aaaa", pending)
    staged = pending / "aaaa" / "docs" / "bench" / step.target
    assert json.loads(staged.read_text())["bd"] == 1.0
    benchmarks.stage([step], "bbbb", pending)  # not measured with bbbb: nothing staged
    assert not (pending / "bbbb").exists()

    measured.write_text(json.dumps({"weights": {"default": "old"}, "bd": 9.0}))  # main, before the switch
    shutil.move(pending / "aaaa", tmp_path / "docs" / "bench" / "pending" / "aaaa")
    benchmarks.adopt_pending("old", dry_run=False)
    assert json.loads(measured.read_text())["bd"] == 9.0  # other weights shipped: left pending
    benchmarks.adopt_pending("aaaa", dry_run=True)
    assert json.loads(measured.read_text())["bd"] == 9.0
    benchmarks.adopt_pending("aaaa", dry_run=False)  # the switch: adopted, and the pending set is gone
    assert json.loads(measured.read_text())["bd"] == 1.0
    assert benchmarks.is_current(step, "aaaa") and not (tmp_path / "docs" / "bench" / "pending" / "aaaa").exists()


def test_a_table_beside_a_reference_file_checks_the_references_weights(tables: ModuleType, tmp_path: Path) -> None:
    """The zoo-adaptation table shows a trained family beside the default model's figures on the same
    schedule (the 250-step adaptation summary): that file must exist and have measured the shipped default."""
    bench = tmp_path / "bench"
    bench.mkdir()
    cell = {"bd_rate_vs_plain_pct": "-9.9", "rd_cost_saving_pct": 4.0}
    zoo = {d: {"sga": cell} for d in tables.DOMAINS} | {"weights": {"mbt-a": "11", "mbt-b": "22"}}
    (bench / "zoo_adaptation_summary.json").write_text(json.dumps(zoo))
    text = "<!-- table: zoo-adaptation -->\n<!-- /table -->\n"
    _, errors = tables.problems(text, bench, tables.shipped_hash())
    assert any("reference file docs/bench/adaptation_summary_fast250.json is missing" in e for e in errors)
    ref = {d: {"sga": {"bd_rate_vs_plain_pct": "-1.5", "rd_cost_saving_pct": 2.0}} for d in tables.DOMAINS}
    ref |= {"weights": {"default": "0123"}}
    (bench / "adaptation_summary_fast250.json").write_text(json.dumps(ref))
    _, errors = tables.problems(text, bench, tables.shipped_hash())
    assert any("'zoo-adaptation'" in e and "default@0123" in e for e in errors)
    ref["weights"]["default"] = tables.shipped_hash()
    (bench / "adaptation_summary_fast250.json").write_text(json.dumps(ref))
    fixed, _ = tables.problems(text, bench, tables.shipped_hash())
    assert (
        "| `default`: sga, BD-rate % | -1.5 | -1.5 |" in fixed
        and "| `mbt-a`, `mbt-b`: sga, BD-rate % | -9.9 |" in fixed
    )
    assert "| `default`: sga, RD cost % | -2.0 |" in fixed and "| `mbt-a`, `mbt-b`: sga, RD cost % | -4.0 |" in fixed


def test_every_file_a_stamped_table_checks_is_remeasured_by_a_step(tables: ModuleType, benchmarks: ModuleType) -> None:
    """A switch of the default weights reruns readme_benchmarks' steps; a table whose file no step
    writes would stay stale, and ``readme_tables --check`` would then fail with no command to mend it."""
    written = {Path(dst).name for s in benchmarks.STEPS for dst in benchmarks.step_files(s)}  # targets included
    checked = {t.reference or t.source for t in tables.TABLES.values() if t.stamped}
    assert checked and checked <= written, sorted(checked - written)


def test_a_lane_measured_with_the_shipped_weights_is_not_run_again(benchmarks: ModuleType, tmp_path: Path) -> None:
    """Lanes run one at a time by hand are kept: a step then only runs the lanes not yet measured."""
    lane = ["python", "-m", "codec.evaluation.adaptation_bench", "--out", "results/lane"]
    assert not benchmarks.lane_done(lane, "aaaa") and not benchmarks.lane_done(["python", "x"], "aaaa")
    (tmp_path / "results" / "lane").mkdir(parents=True)
    (tmp_path / "results" / "lane" / "summary.json").write_text(json.dumps({"weights": {"default": "old"}}))
    assert not benchmarks.lane_done(lane, "aaaa")  # measured with other weights: run again
    (tmp_path / "results" / "lane" / "summary.json").write_text(json.dumps({"weights": {"default": "aaaa"}}))
    assert benchmarks.lane_done(lane, "aaaa")
