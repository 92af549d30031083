"""The ``udic`` console script as a user runs it: round trips, and one-line errors for bad files."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.cli import main
from tests.conftest import ROOT


def udic(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (same code as the console script, without 5 s of imports)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_console_script_runs_as_a_program(tmp_path: Path) -> None:
    """The real entry point, in its own process: a bad file gives one line and exit 2."""
    bad = tmp_path / "bad.udic"
    bad.write_bytes(b"UDIC\x01garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "codec.cli", "decode", str(bad)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    _assert_one_line_error(proc)


def test_round_trip_on_kodak_at_every_rate_point(tmp_path: Path, kodak_path: Path) -> None:
    """Every embedded rate point: encode prints bpp and PSNR that match the file and the pixels."""
    original = np.asarray(Image.open(kodak_path).convert("RGB")).astype(float)
    h, w = original.shape[:2]
    last_bytes = 0
    for q in (1, 2, 3, 4, 5, 6):
        out = tmp_path / f"q{q}.udic"
        enc = udic("encode", kodak_path, "-o", out, "-q", str(q))
        assert enc.returncode == 0, enc.stderr
        m = re.search(r"(\d+) bytes, ([\d.]+) bpp, PSNR ([\d.]+) dB", enc.stdout)
        assert m, enc.stdout
        nbytes, bpp, psnr = int(m[1]), float(m[2]), float(m[3])
        assert nbytes == out.stat().st_size  # bpp counts every byte of the file
        assert bpp == pytest.approx(out.stat().st_size * 8 / (w * h), abs=1e-4)
        assert nbytes > last_bytes
        last_bytes = nbytes
        png = tmp_path / f"q{q}.png"
        dec = udic("decode", out, "-o", png)
        assert dec.returncode == 0, dec.stderr
        decoded = np.asarray(Image.open(png).convert("RGB")).astype(float)
        real_psnr = 10 * np.log10(255**2 / np.mean((decoded - original) ** 2))
        assert psnr == pytest.approx(real_psnr, abs=0.01)
        print(f"quality {q}: {bpp:.4f} bpp, {psnr:.2f} dB")


def test_info_prints_header(tmp_path: Path, kodak_path: Path) -> None:
    out = tmp_path / "k.udic"
    assert udic("encode", kodak_path, "-o", out, "-q", "2.5", "--quiet").returncode == 0
    info = udic("info", out)
    assert info.returncode == 0
    for key in ("model", "model_hash", "width", "height", "quality", "bpp"):
        assert re.search(rf"^{key}\s", info.stdout, re.M), info.stdout
    assert "768" in info.stdout and "2.5" in info.stdout


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> None:
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("udic: error: "), proc.stderr


def test_damaged_files_give_one_line_errors(tmp_path: Path, kodak_path: Path) -> None:
    good = tmp_path / "good.udic"
    assert udic("encode", kodak_path, "-o", good, "-q", "3", "--quiet").returncode == 0
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    cases = {
        "truncated.udic": data[: len(data) // 3],
        "flipped.udic": bytes(flipped),
        "foreign.udic": kodak_path.read_bytes(),
        "empty.udic": b"",
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        _assert_one_line_error(udic("decode", p, "-o", tmp_path / "x.png"))
        _assert_one_line_error(udic("info", p))
        assert not (tmp_path / "x.png").exists()  # nothing half-written


def test_bad_inputs_to_encode(tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    _assert_one_line_error(udic("encode", txt))
    _assert_one_line_error(udic("encode", tmp_path / "missing.png"))
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    _assert_one_line_error(udic("encode", img, "-q", "9"), code=3)
    _assert_one_line_error(udic("encode", img, "-m", "acme-9000"), code=3)


def test_eval_with_a_missing_checkpoint_is_one_line_and_exit_3(tmp_path: Path) -> None:
    proc = udic("eval", "--checkpoint", f"gone={tmp_path / 'gone.pt'}", "--model", "gone", "--out", tmp_path / "ev")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("udic eval: error: ") and "gone.pt is missing" in lines[0]
    assert not (tmp_path / "ev").exists()  # refused before any work


def test_eval_with_one_quality_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """One quality makes no curve to integrate a BD-rate over (it was a traceback from bd.py)."""
    proc = udic("eval", "--domains", "kodak", "--images", "1", "--qualities", "3", "--out", tmp_path / "ev")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("udic eval: error: ") and "two --qualities" in lines[0]
    assert not (tmp_path / "ev").exists()
