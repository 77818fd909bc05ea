"""Zeiss SmartSEM reader: real Merlin / ULTRA 55 / Crossbeam files, synthetic tags, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.zeiss import (
    _HEADER_KEYS,
    ZeissReader,
    parse_cz_sem,
    parse_cz_sem_fields,
    zeiss_quantity,
)
from tests.helpers import assert_unreadable, realfile

tifffile = pytest.importorskip("tifffile")

# name, reference pixel size um (SOURCES.md, rsciio's 7 digits), the vendor's printed
# value (4 digits), source, SOURCES overlay rows, stored shape
REAL = [
    ("zeiss_merlin_1k.tif", 2.614514, 2.615, "Zeiss AP_IMAGE_PIXEL_SIZE", 77, (768, 1024)),
    ("zeiss_ultra55_512px.tif", 0.011649976, 5.965 / 512, "Zeiss AP_WIDTH / image width (512)",
     34, (384, 512)),
    ("zeiss_crossbeam550_inlens.tif", 0.5932882, 0.5933, "Zeiss AP_IMAGE_PIXEL_SIZE", 60,
     (768, 1024)),
]


@pytest.mark.parametrize("name,px_um,printed,source,bar,stored", REAL)
def test_real_pixel_size_and_zone(name, px_um, printed, source, bar, stored):
    da = pipeline.read(realfile("sem", name))
    assert da.attrs["reader"] == "zeiss" and da.attrs["vendor"] == "Zeiss"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(px_um, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(px_um, rel=1e-6)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(printed, rel=5e-4)  # the named key
    assert da.attrs["pixel_size_source"].startswith(source)
    assert abs(da.attrs["databar_rows"] - bar) <= 3
    assert da.attrs["databar_method"] == "detected: uniform rows"
    assert da.shape == (stored[0] - da.attrs["databar_rows"], stored[1])


def test_ultra55_never_uses_ap_pixel_size():
    da = pipeline.read(realfile("sem", "zeiss_ultra55_512px.tif"))
    # AP_PIXEL_SIZE = 5.825 nm refers to a 1024 raster: half the true 11.65 nm pixel
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.011649976, rel=1e-4)  # rsciio
    assert "0.5 x" in da.attrs["header"]["note_ap_pixel_size"]
    assert da.attrs["magnification"] == pytest.approx(50000.0)
    assert da.attrs["kv"] == pytest.approx(5.0) and da.attrs["detector"] == "InLens"
    assert "18" in da.attrs["header"]["palette_colour_entries"].split(", ")


def test_merlin_attrs():
    da = pipeline.read(realfile("sem", "zeiss_merlin_1k.tif"))
    assert da.attrs["magnification"] == pytest.approx(105.0)
    assert da.attrs["kv"] == pytest.approx(25.0) and da.attrs["detector"] == "HE-SE2"
    assert da.attrs["instrument"] == "Merlin-61-08"


@pytest.mark.parametrize("text,expected", [
    ("2.615 \u00b5m", (2.615, "\u00b5m")), ("50.00 K X", (50000.0, "X")),
    ("105 X", (105.0, "X")), ("25.00 kV", (25.0, "kV")), ("Beam Present", None)])
def test_quantity(text, expected):
    assert zeiss_quantity(text) == expected


def write(path: Path, params: dict, *, width=64, rows=48, zone=12, encoding="latin-1") -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(20, 230, size=(rows, width), dtype=np.uint8)
    data[rows - zone - 1: rows - 1] = 255  # painted zone, last row left unpainted
    lines = ["0", "0", "0", "5.0e-009", str(len(params))]
    for k, v in params.items():
        lines += [k, v]
    blob = ("\r\n".join(lines) + "\r\n").encode(encoding) + b"\x00\x00"
    tifffile.imwrite(path, data, extratags=[(34118, "B", len(blob), blob, True)])
    return path


@pytest.mark.parametrize("unit,width,scale", [("pm", 12800, 1e-6), ("nm", 6.4, 1e-3),
                                              ("\u00b5m", 6.4, 1.0), ("um", 6.4, 1.0),
                                              ("mm", 6.4, 1e3)])
def test_units_and_width_fallback(tmp_path, unit, width, scale):
    # 64 px wide: 200 pm, 0.1 nm, 0.1 um, 0.1 mm per pixel, all plausible pixel sizes
    path = write(tmp_path / "w.tif", {"AP_WIDTH": f"Width = {width:g} {unit}",
                                      "AP_PIXEL_SIZE": "Pixel Size = 1 nm"})
    assert ZeissReader().can_open(path.read_bytes()[:4096], path)
    da = pipeline.read(path)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(width * scale / 64, rel=1e-12)
    assert da.attrs["databar_rows"] == 13 and da.shape == (35, 64)


def test_image_pixel_size_wins_and_utf8(tmp_path):
    path = write(tmp_path / "u.tif", {"AP_IMAGE_PIXEL_SIZE": "Image Pixel Size = 20 nm",
                                      "AP_WIDTH": "Width = 99 mm"}, encoding="utf-8")
    assert pipeline.read(path).attrs["pixel_size_um"]["x"] == pytest.approx(0.02, rel=1e-12)


def test_ap_pixel_size_alone_is_uncalibrated(tmp_path):
    da = pipeline.read(write(tmp_path / "a.tif", {"AP_PIXEL_SIZE": "Pixel Size = 5 nm"}))
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"


def test_no_zone_no_crop(tmp_path):
    da = pipeline.read(write(tmp_path / "n.tif", {"AP_WIDTH": "Width = 1 um"}, zone=0))
    assert da.attrs["databar_rows"] == 0 and da.attrs["databar_method"] == "none"


def test_bad_unit(tmp_path):
    assert_unreadable(write(tmp_path / "b.tif", {"AP_WIDTH": "Width = 3 furlongs"}),
                      "AP_WIDTH = '3 furlongs' is not a length")


def test_no_parameters(tmp_path):
    path = tmp_path / "e.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), extratags=[(34118, "s", 0, "1\r\n2", True)])
    assert_unreadable(path, "holds no AP_/DP_/SV_ parameter")


def test_truncated(tmp_path):
    path = write(tmp_path / "t.tif", {"AP_WIDTH": "Width = 1 um"}, rows=400)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 5000])
    assert_unreadable(path, "truncated")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_the_reader_s_fields_are_what_the_full_parse_gives(newline):
    """The reader takes only the parameters it uses from tag 34118 (a regular expression
    over the text, not a walk of its thousands of lines): the same values as the full parse,
    the last of a repeated parameter, NULs and blanks stripped, the unnamed block kept."""
    lines = ["0", "1024", "768", "0.000002615", "AP_WIDTH", " Width = 2.677 mm\x00",
             "AP_NOT_USED", "Label = x", "AP_MAG", "Mag = 50.00 K X", "DP_DETECTOR_TYPE",
             "Detector = InLens", "AP_WIDTH", "Width = 2.5 mm", "SV_SERIAL_NUMBER",
             "Serial : 4711", "AP_ACTUALKV", "no separator here"]
    text = newline.join(lines) + newline
    full, unnamed = parse_cz_sem(text)
    fields, unnamed_fast, any_key = parse_cz_sem_fields(text)
    assert fields == {k: v for k, v in full.items() if k in _HEADER_KEYS}
    assert fields["ap_width"] == ("Width", "2.5 mm") and "ap_actualkv" not in fields
    assert unnamed_fast == unnamed == ["0", "1024", "768", "0.000002615"] and any_key
    assert parse_cz_sem_fields("1\n2\n3\n") == ({}, ["1", "2", "3"], False)
