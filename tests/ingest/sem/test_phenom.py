"""Phenom reader on synthetic files built after the published <FeiImage> layout.

No real Phenom TIFF is in ../shared/realdata; the structure (root <FeiImage>, <pixelWidth
unit=...>, <databarHeight>, <acquisition><scan><highVoltage unit="V">, <detector>,
<instrument><type>) follows public Phenom readers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.phenom import PhenomReader
from tests.helpers import assert_unreadable

tifffile = pytest.importorskip("tifffile")


def xml(pixel='<pixelWidth unit="m">2.5E-07</pixelWidth><pixelHeight unit="m">2.5E-07</pixelHeight>',
        bar="<databarHeight>9</databarHeight>") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?><FeiImage>' + bar
            + "<databarFields>5</databarFields><displayWidth>0.2</displayWidth>" + pixel
            + '<workingDistance unit="m">0.0056</workingDistance>'
            "<instrument><type>PhenomXL</type><uniqueID>MVE0123</uniqueID></instrument>"
            '<acquisition><scan><detector>BSD</detector><highVoltage unit="V">-15000</highVoltage>'
            "</scan></acquisition></FeiImage>")


def write(path: Path, text: str, *, rows=60, dtype=np.uint8) -> Path:
    data = (np.arange(rows * 50) % 250).astype(dtype).reshape(rows, 50)
    blob = text.encode("utf-8") + b"\x00"
    tifffile.imwrite(path, data, extratags=[(34683, "B", len(blob), blob, True)])
    return path


def test_synthetic_phenom(tmp_path):
    path = write(tmp_path / "p.tif", xml())
    assert PhenomReader().can_open(path.read_bytes()[:4096], path)
    da = pipeline.read(path)
    assert da.attrs["reader"] == "phenom" and da.attrs["vendor"] == "Phenom"
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.25, "y": 0.25}, rel=1e-12)
    assert da.shape == (51, 50) and da.attrs["databar_rows"] == 9
    assert da.attrs["databar_method"] == "metadata: <databarHeight>"
    assert da.attrs["kv"] == pytest.approx(15.0) and da.attrs["detector"] == "BSD"
    assert da.attrs["instrument"] == "PhenomXL MVE0123"
    assert da.attrs["header"]["working_distance_mm"] == pytest.approx(5.6)


@pytest.mark.parametrize("unit,scale", [("nm", 1e-3), ("um", 1.0), ("\u00b5m", 1.0), ("mm", 1e3)])
def test_units(tmp_path, unit, scale):
    # 0.5 of each unit: 0.5 nm to 0.5 mm, all inside the plausible pixel sizes
    da = pipeline.read(write(tmp_path / "u.tif", xml(pixel=f'<pixelWidth unit="{unit}">0.5</pixelWidth>')))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.5 * scale, rel=1e-12)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.5 * scale, rel=1e-12)


def test_no_pixel_width_is_uncalibrated(tmp_path):
    da = pipeline.read(write(tmp_path / "n.tif", xml(pixel="")))
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"


def test_pixel_width_without_unit(tmp_path):
    assert_unreadable(write(tmp_path / "nu.tif", xml(pixel="<pixelWidth>2</pixelWidth>")),
                      "is not a length with a unit")


def test_databar_too_tall(tmp_path):
    assert_unreadable(write(tmp_path / "b.tif", xml(bar="<databarHeight>60</databarHeight>")),
                      "databarHeight> = '60' does not fit")


def test_wrong_root(tmp_path):
    assert_unreadable(write(tmp_path / "r.tif", "<Other/>"), "not Phenom's <FeiImage>")


def test_not_xml(tmp_path):
    assert_unreadable(write(tmp_path / "x.tif", "<FeiImage><pixelWidth"), "not valid XML")


def test_truncated(tmp_path):
    path = write(tmp_path / "t.tif", xml(), rows=400)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 5000])
    assert_unreadable(path, "truncated")
