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
