"""Adaptive quantisation steps (seed 003: codec.adaptation.qstep and zstep), on a real Kodak crop.

What must hold: the steps lower (or do not raise) the real RD cost against ``fast``, and lower it
clearly beyond the trained levels; files with steps decode bit-exactly in a fresh process with the
ordinary decoder; files without steps are as before; a step field that is corrupt, off its grid,
or altered is refused with the usual bitstream error (CLI: one line, exit 2)."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from codec.adaptation.encoder import AdaptiveEncoder, AdaptiveResult, adaptive_encode, resolve_config
from codec.adaptation.qstep import MAX_CODE, QSteps, require_steppable
from codec.adaptation.zstep import Z_GRID, Z_IDENTITY, stepped_tables
from codec.bitstream import BitstreamError, Container, Field, UnsupportedBitstreamError
from codec.coder import EncodeResult, decode_image, encode_report
from codec.determinism import best_device
from codec.imageio import load_image
from codec.progress import no_progress
from codec.zoo import default_registry
from codec.zoo.base import BaseModel
from codec.zoo.errors import InvalidQualityError

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"latent_iters": 60, "decoder": "none"}  # the refinement only, short: the steps are what is tested


def _encode(rgb: np.ndarray, preset: str, quality: float, lmbda_factor: float = 1.0, seed: int = 0) -> AdaptiveResult:
    base = default_registry().get("default")
    lmbda = base.lmbda_at(base.level_for(quality)) * lmbda_factor
    cfg = resolve_config(preset, lmbda=lmbda, seed=seed, **QUICK)
    return adaptive_encode(Image.fromarray(rgb), quality=quality, config=cfg)


def _cost(r: AdaptiveResult) -> float:
    return r.costs[r.choice]


@pytest.fixture(scope="module")
def below_range(kodak_crop: np.ndarray) -> tuple[AdaptiveResult, AdaptiveResult]:
    """fast and fast+qstep at the lowest level, asked for a quarter of its lambda."""
    return _encode(kodak_crop, "fast", 1.0, 0.25), _encode(kodak_crop, "fast+qstep", 1.0, 0.25)


@pytest.fixture(scope="module")
def forced(kodak_crop: np.ndarray) -> EncodeResult:
    """A file with both steps off their identity (a coarser y step, a finer z step), coded from the analysis."""
    reg = default_registry()
    base = reg.get("default")
    level = base.level_for(3.0)
    enc = AdaptiveEncoder(base, load_image(Image.fromarray(kodak_crop)), level, resolve_config("fast"),
                          best_device(), no_progress, reg)  # fmt: skip
    with torch.no_grad():
        y0, z0 = enc.model.analysis(enc.x)
        yg = enc.model.coded(y0)
    steps = QSteps(5, 1)
    enc.use_steps(steps)
    return enc._code(yg / steps.dy, z0, None)


def _rewrite(data: bytes, **fields: bytes | None) -> bytes:
    """The file with header fields replaced (None: removed), CRC recomputed: only the decoder's checks can refuse it."""
    c = Container.from_bytes(data)
    for name, value in fields.items():
        if value is None:
            c.fields.pop(Field[name], None)
        else:
            c.fields[Field[name]] = value
    return c.to_bytes()


def test_steps_lower_the_real_rd_cost_at_a_trained_level(kodak_crop: np.ndarray) -> None:
    """Mean over three seeds: one run of 60 SGA steps varies by about 1.5 % from seed to seed (fp32 on an
    AVX2 CPU, session 14: fast 0.3951-0.4010), more than the margin, and one seed failed there."""
    seeds = (0, 1, 2)
    fast = np.mean([_cost(_encode(kodak_crop, "fast", 3.0, seed=s)) for s in seeds])
    qstep = np.mean([_cost(_encode(kodak_crop, "fast+qstep", 3.0, seed=s)) for s in seeds])
    assert qstep <= fast * 1.005  # lower or equal, up to what is left of the noise


def test_steps_reach_below_the_lowest_level(below_range: tuple[AdaptiveResult, AdaptiveResult]) -> None:
    fast, qstep = below_range
    assert _cost(qstep) < 0.95 * _cost(fast)
    assert qstep.result.bpp < 0.9 * fast.result.bpp
    assert QSteps.from_container(Container.from_bytes(qstep.result.data)).y_code > 0  # a coarser step


def test_step_files_decode_bit_exactly_in_a_fresh_process(
    below_range: tuple[AdaptiveResult, AdaptiveResult], forced: EncodeResult, tmp_path: Path
) -> None:
    files = {"optimised": below_range[1].result, "forced": forced}
    assert Field.QSTEP_Y in Container.from_bytes(files["optimised"].data).fields
    assert {Field.QSTEP_Y, Field.QSTEP_Z} <= set(Container.from_bytes(forced.data).fields)
    script = (
        "import hashlib, sys\nfrom codec.coder import decode_image\n"
        "for p in sys.argv[1:]:\n"
        "    print(hashlib.sha256(decode_image(open(p, 'rb').read(), bit_exact=True).rgb.tobytes()).hexdigest())\n"
    )
    paths = []
    for name, res in files.items():
        (tmp_path / f"{name}.udic").write_bytes(res.data)
        paths.append(str(tmp_path / f"{name}.udic"))
    proc = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    want = [hashlib.sha256(res.decoded.rgb.tobytes()).hexdigest() for res in files.values()]
    assert proc.stdout.split() == want


def test_files_without_steps_are_unchanged(kodak_crop: np.ndarray) -> None:
    assert QSteps().to_fields() == {}
    plain = encode_report(Image.fromarray(kodak_crop), quality=3)
    fields = Container.from_bytes(plain.data).fields
    assert Field.QSTEP_Y not in fields and Field.QSTEP_Z not in fields
    assert np.array_equal(decode_image(plain.data, bit_exact=True).rgb, plain.decoded.rgb)
    # the identity z step reproduces the stored tables exactly (the derivation adds nothing)
    eb = default_registry().get("default").net.entropy_bottleneck
    cdf, lengths, offsets = stepped_tables(eb, 1.0)
    assert torch.equal(cdf[:, : eb._quantized_cdf.shape[1]], eb._quantized_cdf)
    assert torch.equal(lengths, eb._cdf_length) and torch.equal(offsets, eb._offset)


def test_step_fields_are_critical() -> None:
    """Decoders that do not know a tag of 0x80 or above refuse the file (codec.bitstream's PNG rule)."""
    assert Field.QSTEP_Y >= 0x80 and Field.QSTEP_Z >= 0x80
    c = Container()
    c.fields[0x8F] = b"\x00"
    with pytest.raises(UnsupportedBitstreamError):
        Container.from_bytes(c.to_bytes())


@pytest.mark.parametrize(
    "fields",
    [
        {"QSTEP_Y": struct.pack("<b", MAX_CODE + 1)},  # off the range
        {"QSTEP_Y": struct.pack("<b", -MAX_CODE - 1)},
        {"QSTEP_Y": b"\x05\x00"},  # wrong length
        {"QSTEP_Z": bytes([Z_GRID])},  # off the 7-value grid
        {"QSTEP_Z": b""},
        {"QSTEP_Y": struct.pack("<b", 6)},  # in range but not what was coded: the symbols do not match
        {"QSTEP_Z": bytes([2])},
        {"QSTEP_Y": None},  # removed
        {"QSTEP_Z": None},
    ],
)
def test_corrupt_or_altered_step_fields_are_refused(forced: EncodeResult, fields: dict[str, bytes | None]) -> None:
    with pytest.raises(BitstreamError):
        decode_image(_rewrite(forced.data, **fields))


def test_cli_refuses_a_corrupt_step_field_with_one_line(forced: EncodeResult, tmp_path: Path) -> None:
    from tests.test_cli import udic

    bad = tmp_path / "bad.udic"
    bad.write_bytes(_rewrite(forced.data, QSTEP_Z=bytes([9])))
    out = udic("decode", bad, "-o", tmp_path / "x.png")
    assert out.returncode == 2 and "quantisation step" in out.stderr and "Traceback" not in out.stderr


def test_steps_off_their_grids_are_refused_by_the_encoder() -> None:
    for steps in (QSteps(MAX_CODE + 1), QSteps(0, Z_GRID), QSteps(0, -1)):
        with pytest.raises(ValueError):
            steps.to_fields()
    assert QSteps(MAX_CODE, 0).to_fields() == {Field.QSTEP_Y: struct.pack("<b", MAX_CODE), Field.QSTEP_Z: b"\x00"}
    assert QSteps(0, Z_IDENTITY).is_identity


def test_models_without_gains_are_refused() -> None:
    zoo_like = BaseModel("bmshj2018-hyperprior", nn.Conv2d(3, 3, 1), b"\x00" * 8, False, (1, 8), (0.01,))
    with pytest.raises(InvalidQualityError, match="variable-rate"):
        require_steppable(zoo_like)
