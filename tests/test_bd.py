"""Bjontegaard maths against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from codec.evaluation.bd import NoOverlapError, bd_psnr, bd_rate, format_bd

ANCHOR_R = [0.1, 0.2, 0.4, 0.8]
ANCHOR_P = [28.0, 31.0, 34.0, 37.0]  # +3 dB per doubling: PSNR linear in log-rate


def test_constant_rate_ratio_gives_exact_bd_rate() -> None:
    # same PSNR at 80% of the rate everywhere -> -20.0 %
    assert bd_rate(ANCHOR_R, ANCHOR_P, [r * 0.8 for r in ANCHOR_R], ANCHOR_P) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(ANCHOR_R, ANCHOR_P, [r * 1.5 for r in ANCHOR_R], ANCHOR_P) == pytest.approx(50.0, abs=1e-9)


def test_constant_psnr_shift_gives_exact_bd_psnr() -> None:
    assert bd_psnr(ANCHOR_R, ANCHOR_P, ANCHOR_R, [p + 1.0 for p in ANCHOR_P]) == pytest.approx(1.0, abs=1e-9)


def test_shift_converts_between_the_two() -> None:
    # +1 dB on a curve with 3 dB per doubling = rate x 2^(-1/3) at equal PSNR, over the overlap
    test_p = [p + 1.0 for p in ANCHOR_P]
    expected = (2 ** (-1 / 3) - 1) * 100
    assert bd_rate(ANCHOR_R, ANCHOR_P, ANCHOR_R, test_p) == pytest.approx(expected, abs=1e-6)


def test_partial_overlap_integrates_only_the_shared_range() -> None:
    # test curve: rate halved, but defined only on the upper half of the anchor's PSNR range
    test_r, test_p = [0.1, 0.2], [31.0, 34.0]  # equals anchor's rates (0.2, 0.4) halved
    assert bd_rate(ANCHOR_R, ANCHOR_P, test_r, test_p) == pytest.approx(-50.0, abs=1e-9)


def test_hand_computed_nonlinear_case() -> None:
    # two points each -> PCHIP is the straight line; log-rate vs PSNR lines:
    # anchor: ln r = ln 0.1 + (p - 30) * ln 4 / 10 on [30, 40]; test: ln r = ln 0.05 + (p - 30) * ln 8 / 10 on [30, 40]
    # mean difference of ln r = ln 0.5 + (ln 8 - ln 4) / 2 = ln 0.5 + ln 2 / 2
    d = math.log(0.5) + math.log(2) / 2
    got = bd_rate([0.1, 0.4], [30, 40], [0.05, 0.4], [30, 40])
    assert got == pytest.approx((math.exp(d) - 1) * 100, abs=1e-9)


def test_no_overlap_is_reported_not_computed() -> None:
    with pytest.raises(NoOverlapError, match="no overlap"):
        bd_rate(ANCHOR_R, ANCHOR_P, [1.0, 2.0], [40.0, 45.0])
    with pytest.raises(NoOverlapError):
        bd_psnr(ANCHOR_R, ANCHOR_P, [1.0, 2.0], [40.0, 45.0])
    assert format_bd(bd_rate, ANCHOR_R, ANCHOR_P, [1.0, 2.0], [40.0, 45.0]) == "no overlap"


def test_bad_curves_are_rejected() -> None:
    with pytest.raises(ValueError):
        bd_rate([0.1], [30.0], [0.1, 0.2], [30.0, 31.0])
    with pytest.raises(ValueError):
        bd_rate([0.1, 0.2], [30.0, math.inf], [0.1, 0.2], [30.0, 31.0])


def test_format_bd_says_n_a_for_a_curve_of_one_distinct_point() -> None:
    """An untrained model's files can all come out the same (only headers): a cell, not a crash."""
    assert format_bd(bd_rate, ANCHOR_R, ANCHOR_P, [0.5, 0.6], [30.0, 30.0]) == "n/a"
