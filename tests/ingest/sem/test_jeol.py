"""JEOL reader: $KEY sidecar, bar/marker then field of view then magnification rule; the
burned-in annotations are found and masked, not cropped."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

import pipeline
from pipeline.errors import UnreadableInput
from pipeline.ingest.sem.jeol import (
    JeolReader,
    jeol_pixel_size,
    parse_jeol_sidecar,
    parse_length_um,
)
from pipeline.ingest.sem.sidecar import read_sidecar
from tests.helpers import assert_unreadable, realfile

STEM = "jeol_4700f_led_x50"


def _copy_real(tmp_path, *, sidecar=True):
    tif = realfile("sem", STEM + ".tif")
    dst = tmp_path / (STEM + ".tif")
    shutil.copyfile(tif, dst)
    if sidecar:
        shutil.copyfile(tif.with_suffix(".txt"), tmp_path / (STEM + ".txt"))
    return dst


def _synthetic(tmp_path, lines, name="j.tif"):
    import tifffile

    p = tmp_path / name
    tifffile.imwrite(p, np.random.default_rng(0).integers(20, 230, (96, 128)).astype(np.uint8))
    (tmp_path / (p.stem + ".txt")).write_text(
        "$CM_FORMAT JEOL-SEM\r\n" + "".join(ln + "\r\n" for ln in lines), encoding="ascii")
    return p


def test_real_file_magnification_rule_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.sem.jeol"):
        da = pipeline.read(realfile("sem", STEM + ".tif"))
    assert da.attrs["reader"] == "jeol"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(2.0, rel=1e-6)  # SOURCES.md
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(2.0, rel=1e-6)
    assert "magnification rule" in caplog.text and "6 %" in caplog.text
    assert "JEOL magnification rule (+/-6 %)" in da.attrs["pixel_size_source"]
    assert da.attrs["header"]["pixel_size_uncertainty_rel"] == pytest.approx(0.06)
    assert (da.attrs["vendor"], da.attrs["instrument"]) == ("JEOL", "4700F")
    assert da.attrs["magnification"] == pytest.approx(50)
    assert da.attrs["kv"] == pytest.approx(5.0)


def test_real_file_burned_in_region_masked_not_cropped():
    da = pipeline.read(realfile("sem", STEM + ".tif"))
    assert da.shape == (960, 1280)  # nothing cropped
    assert da.attrs["databar_method"] == "detected: burned-in region (masked)"
    (r,) = da.attrs["masked_regions"]
    assert da.attrs["databar_rows"] == r["row1"] - r["row0"]
    # The burned-in "5.0kV x50 500µm" and its bar, measured on the image: rows ~896-941
    # (SOURCES.md says "~870-910"; the sidecar's $AN_TEXT boxes at 874-910 are empty
    # measurement labels, not the drawn annotations), columns ~60-580.
    assert 890 <= r["row0"] <= 899 and 938 <= r["row1"] <= 948
    assert r["col0"] <= 65 and r["col1"] >= 575
    # the 500 µm scale bar is 250 px at 2 µm/px: its white row spans ~250 columns
    bar_row = da.values[898, r["col0"]:r["col1"]]
    assert abs(int((bar_row == 255).sum()) - 250) <= 3


def test_7800f_sidecar_bar_over_marker():
    sc = read_sidecar("jeol_7800f", realfile("sem", "jeol_7800f_sidecar_only.txt"))
    meta = parse_jeol_sidecar(sc.text)
    assert meta["CM_INSTRUMENT"] == "7800F"
    um, source, unc = jeol_pixel_size(meta, 1280)
    assert um * 1000 == pytest.approx(10_000 / 106, rel=1e-9)  # 94.34 nm
    assert um * 1000 == pytest.approx(94.34, abs=0.005)
    assert "SM_MICRON_BAR" in source and unc is None


def test_7800f_magnification_rule_would_be_6_percent_off(caplog):
    sc = read_sidecar("x", realfile("sem", "jeol_7800f_sidecar_only.txt"))
    meta = parse_jeol_sidecar(sc.text)
    del meta["SM_MICRON_BAR"]
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.sem.jeol"):
        um, _, unc = jeol_pixel_size(meta, 1280)
    assert um == pytest.approx(0.1, rel=1e-9)
    assert unc == pytest.approx(0.06) and "magnification rule" in caplog.text


@pytest.mark.parametrize("raw,um", [("500um", 500.0), ("10 um", 10.0), ("200nm", 0.2),
                                    ("1mm", 1000.0), ("5\u00b5m", 5.0), ("2.5\uff75m", 2.5)])
def test_parse_length(raw, um):
    assert parse_length_um(raw) == pytest.approx(um)


@pytest.mark.parametrize("raw", ["", "um", "500", "5 parsecs", "abc"])
def test_parse_length_rejects(raw):
    assert parse_length_um(raw) is None


def test_field_of_view_fallback(tmp_path, caplog):
    p = _synthetic(tmp_path, ["$CM_MAG 1000", "$CM_FIELD_OF_VIEW 25.6 19.2", "$$SM_MICRON_MARKER 5um"])
    with caplog.at_level(logging.WARNING):
        da = pipeline.read(p)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.2, rel=1e-9)
    assert "FIELD_OF_VIEW" in da.attrs["pixel_size_source"]
    assert "magnification rule" not in caplog.text


def test_bar_and_marker_preferred_over_mag(tmp_path):
    p = _synthetic(tmp_path, ["$CM_MAG 1000", "$$SM_MICRON_BAR 100", "$$SM_MICRON_MARKER 5um"])
    da = pipeline.read(p)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.05, rel=1e-9)
    assert "pixel_size_uncertainty_rel" not in da.attrs["header"]


def test_no_scale_at_all_is_uncalibrated(tmp_path):
    p = _synthetic(tmp_path, ["$CM_INSTRUMENT 6010"])
    da = pipeline.read(p)
    assert da.attrs["reader"] == "jeol" and da.attrs["calibration"] == "missing"


def test_missing_sidecar_declines_to_generic(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    assert not JeolReader().can_open(p.read_bytes()[:4096], p)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "generic_tiff"
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"


def test_open_without_sidecar_raises(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    with pytest.raises(UnreadableInput, match="sidecar"):
        JeolReader().open(p)


def test_sidecar_utf32_is_unreadable_naming_sidecar(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    text = realfile("sem", STEM + ".txt").read_text(encoding="latin-1")
    (tmp_path / (STEM + ".txt")).write_bytes(text.encode("utf-32"))
    err = assert_unreadable(p, "UTF-32")
    assert STEM + ".txt" in str(err)


def test_sidecar_with_binary_garbage_is_unreadable(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    garbage = bytes(np.random.default_rng(3).integers(1, 32, 500, dtype=np.uint8))
    (tmp_path / (STEM + ".txt")).write_bytes(b"$CM_FORMAT JEOL-SEM\r\n$CM_MAG 50\r\n" + garbage)
    err = assert_unreadable(p, "not text")
    assert STEM + ".txt" in str(err)


def test_truncated_tiff_with_sidecar(tmp_path):
    p = _copy_real(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[:100_000])  # one LZW strip, cut short
    assert_unreadable(p, "no readable first page|truncated or corrupt")


def test_sidecar_alone_is_not_an_image(tmp_path):
    p = tmp_path / "jeol_7800f_sidecar_only.txt"
    shutil.copyfile(realfile("sem", "jeol_7800f_sidecar_only.txt"), p)
    assert_unreadable(p, "no reader recognises")
