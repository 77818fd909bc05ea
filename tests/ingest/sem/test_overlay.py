"""Painted data bars and burned-in annotation regions (pipeline.ingest.sem.overlay)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.ingest.sem.overlay import (
    burned_in_region,
    painted_bar_rows,
    row_mode_fraction,
)
from tests.helpers import realfile


def _noise(shape, seed=0, dtype=np.uint8, lo=30, hi=220):
    return np.random.default_rng(seed).integers(lo, hi, size=shape).astype(dtype)


def test_row_mode_fraction_by_hand():
    assert row_mode_fraction(np.array([5, 5, 5, 1], np.uint8)) == pytest.approx(0.75)
    assert row_mode_fraction(np.array([7, 1000, 7, 7], np.uint16)) == pytest.approx(0.75)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("bar", [1, 17, 40])
def test_painted_bar_with_text_is_found(dtype, bar):
    img = _noise((200, 160), seed=bar, dtype=dtype)
    img[-bar:] = 0
    img[-bar:, 10:60] = 255  # text covering 31 % of each bar row: still >= 50 % black
    assert painted_bar_rows(img) == bar


def test_no_bar_gives_zero():
    assert painted_bar_rows(_noise((120, 100))) == 0


def test_bottom_border_row_is_skipped_when_a_bar_follows():
    img = _noise((300, 200), seed=3)
    img[-40:] = 255
    img[-1] = _noise((1, 200), seed=4)  # a one-row mixed frame under the bar (Zeiss)
    assert painted_bar_rows(img) == 40


def test_single_uniform_row_over_noise_after_border_is_not_a_bar():
    img = _noise((300, 200), seed=5)
    img[-3] = 9  # one flat row above a two-row border: too short to be a bar
    assert painted_bar_rows(img) == 0


def test_flat_image_is_not_a_bar(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.sem.overlay"):
        assert painted_bar_rows(np.zeros((100, 80), np.uint8)) == 0
    assert "flat image" in caplog.text


def test_painted_bar_rejects_3d():
    with pytest.raises(ValueError, match="2-D"):
        painted_bar_rows(np.zeros((4, 4, 3), np.uint8))


def test_burned_in_text_region_synthetic():
    img = _noise((400, 500), seed=7)
    # a white scale bar with a black outline, and a white block of "text" below it
    img[340:348, 100:300] = 0
    img[341:347, 101:299] = 255
    img[355:375, 80:160] = 0
    img[357:373, 82:158] = 255
    r = burned_in_region(img, pad=0)
    assert r is not None
    assert (r["row0"], r["row1"]) == (340, 375)
    assert (r["col0"], r["col1"]) == (80, 300)
    assert r["reason"]


def test_burned_in_region_none_without_outlined_saturation():
    img = _noise((300, 300), seed=8)  # values 30..219: no 0, no 255
    assert burned_in_region(img) is None
    img[250:260, 10:100] = 255  # saturated but no black outline: live signal, not text
    assert burned_in_region(img) is None


def test_burned_in_region_only_searches_the_bottom():
    img = _noise((400, 400), seed=9)
    img[20:30, 20:200] = 0
    img[22:28, 22:198] = 255  # top of the image: not where JEOL draws
    assert burned_in_region(img) is None


def test_real_hitachi_painted_bar_within_3_rows():
    import tifffile

    img = tifffile.imread(realfile("sem", "hitachi_tm4000_bse_x200.tif"))
    assert abs(painted_bar_rows(img) - 59) <= 3


@pytest.mark.parametrize("name,rows", [("zeiss_merlin_1k.tif", 77),
                                       ("zeiss_ultra55_512px.tif", 34),
                                       ("zeiss_crossbeam550_inlens.tif", 60)])
def test_real_zeiss_painted_bars_within_3_rows(name, rows):
    import tifffile

    img = tifffile.imread(realfile("sem", name))
    assert abs(painted_bar_rows(img) - rows) <= 3


def test_real_jeol_burned_in_region():
    import tifffile

    img = tifffile.imread(realfile("sem", "jeol_4700f_led_x50.tif"))
    assert painted_bar_rows(img) == 0  # nothing flat to crop
    r = burned_in_region(img)
    # Measured on the image: scale bar rows 896-900 (white, black underline), labels
    # "5.0kV  x50  500µm" rows ~908-941, columns ~60-580.
    assert 890 <= r["row0"] <= 897 and 940 <= r["row1"] <= 948
    assert r["col0"] <= 62 and 575 <= r["col1"] <= 600
