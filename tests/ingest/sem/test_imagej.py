"""ImageJ-calibrated TIFF: unit + XResolution (pixels per unit) is the only trusted use of
XResolution; inch/cm are display units and refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.imagej import ImageJReader, imagej_unit_to_um
from tests.helpers import assert_unreadable


def _write(tmp_path, unit, px=(0.25, 0.5), dtype=np.uint8, name="ij.tif", **kw):
    import tifffile

    p = tmp_path / name
    meta = {} if unit is None else {"unit": unit}
    tifffile.imwrite(p, np.arange(20 * 30, dtype=np.uint16).reshape(20, 30).astype(dtype),
                     imagej=True, resolution=(1 / px[0], 1 / px[1]), metadata=meta, **kw)
    return p


# ImageJ writes the micro sign as the ASCII escape \u00B5 (TIFF strings are 7-bit).
@pytest.mark.parametrize("unit,factor", [("micron", 1.0), ("um", 1.0), ("\\u00B5m", 1.0),
                                         ("nm", 1e-3), ("mm", 1e3)])
def test_units(tmp_path, unit, factor):
    p = _write(tmp_path, unit, px=(0.25, 0.5), dtype=np.uint16)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "imagej"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.25 * factor, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.5 * factor, rel=1e-6)
    assert "unit=" in da.attrs["pixel_size_source"]
    assert da.attrs["calibration"] == "ok"


@pytest.mark.parametrize("unit", ["inch", "cm"])
def test_display_units_refused(tmp_path, unit, caplog):
    p = _write(tmp_path, unit, px=(1 / 72, 1 / 72))
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.sem.imagej"):
        da = pipeline.read(p)
    assert da.attrs["reader"] == "imagej"
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"
    assert "display" in caplog.text and "display" in da.attrs["header"]["pixel_size_warning"]


def test_no_unit_is_uncalibrated(tmp_path):
    da = pipeline.read(_write(tmp_path, None))
    assert da.attrs["calibration"] == "missing"


def test_unknown_unit_is_uncalibrated(tmp_path):
    da = pipeline.read(_write(tmp_path, "furlong"))
    assert da.attrs["calibration"] == "missing"
    assert "furlong" in da.attrs["header"]["pixel_size_warning"]


def test_unit_helper():
    assert imagej_unit_to_um("Micron") == 1.0
    assert imagej_unit_to_um("\u00b5m") == 1.0 and imagej_unit_to_um("\u03bcm") == 1.0
    assert imagej_unit_to_um("inch") is None and imagej_unit_to_um("cm") is None


def test_float_imagej_is_a_height_map_not_sem(tmp_path):
    p = _write(tmp_path, "um", dtype=np.float32)
    assert not ImageJReader().can_open(p.read_bytes()[:4096], p)


def test_plain_tiff_is_not_imagej(tmp_path):
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((8, 8), np.uint8), resolution=(300, 300))
    assert not ImageJReader().can_open(p.read_bytes()[:4096], p)
    assert pipeline.read(p).attrs["reader"] == "generic_tiff"


def test_zero_resolution_is_unreadable(tmp_path):
    import tifffile

    p = _write(tmp_path, "um", px=(0.25, 0.25))
    with tifffile.TiffFile(p) as tif:
        off = tif.pages.first.tags[282].valueoffset
    raw = bytearray(p.read_bytes())
    raw[off:off + 4] = b"\0\0\0\0"  # numerator of XResolution
    p.write_bytes(bytes(raw))
    assert_unreadable(p, "XResolution")


def test_truncated_imagej(tmp_path):
    p = _write(tmp_path, "um")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 300])
    assert_unreadable(p, "truncated or corrupt")
