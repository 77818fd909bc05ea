"""Fibics Atlas reader: the real Auriga slice, synthetic XML, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.fibics import FibicsReader
from tests.helpers import assert_unreadable, realfile

tifffile = pytest.importorskip("tifffile")


def test_real_slice():
    path = realfile("sem", "zeiss_fibics_atlas_slice.tif")
    da = pipeline.read(path)
    assert da.attrs["reader"] == "fibics"
    # vendor value: <Scan><Ux> = 0.0447154077316689 um/px (FOV_X 45.7438621094973 / 1023)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.0447154077316689, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(45.7438621094973 / 1023, rel=1e-6)
    assert da.shape == (1023, 1023) and da.attrs["databar_rows"] == 0
    assert da.attrs["y_axis_flipped"] is True and "Vy < 0" in da.attrs["header"]["y_axis"]
    # the raster is kept as stored: row 0 is the top (protective cap, curtaining from it)
    np.testing.assert_array_equal(da.values, tifffile.imread(path))
    assert da.attrs["detector"] == "InLens" and da.attrs["kv"] == pytest.approx(5.0)


def write(path: Path, scan: str, *, rows=16) -> Path:
    xml = (f'<?xml version="1.0" encoding="iso-8859-1"?><Fibics version="1.0"><Image>'
           f"<Detector>SESI</Detector></Image>{scan}</Fibics>")
    tifffile.imwrite(path, np.zeros((rows, 8), np.uint8),
                     extratags=[(51023, "s", 0, xml, True)])
    return path


def test_rotated_scan_vectors(tmp_path):
    path = write(tmp_path / "r.tif", "<Scan><Ux>0.03</Ux><Uy>0.04</Uy><Vx>-0.04</Vx>"
                                     "<Vy>0.03</Vy></Scan>")
    assert FibicsReader().can_open(path.read_bytes()[:4096], path)
    da = pipeline.read(path)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.05, "y": 0.05}, rel=1e-12)
    assert da.attrs["y_axis_flipped"] is False


def test_missing_scan(tmp_path):
    assert_unreadable(write(tmp_path / "m.tif", ""), "no <Scan> element")


def test_bad_number(tmp_path):
    assert_unreadable(write(tmp_path / "b.tif", "<Scan><Ux>x</Ux><Vy>1</Vy></Scan>"),
                      "<Ux> = 'x' is not a number")


def test_zero_pixel(tmp_path):
    assert_unreadable(write(tmp_path / "z.tif", "<Scan><Ux>0</Ux><Vy>0</Vy></Scan>"),
                      "finite positive length")


def test_not_xml(tmp_path):
    path = tmp_path / "n.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=[(51023, "s", 0, "<a", True)])
    assert_unreadable(path, "not valid XML")


def test_entity_expansion_refused(tmp_path):
    path = tmp_path / "e.tif"
    xml = '<!DOCTYPE x [<!ENTITY a "aaaa">]><Fibics><Scan><Ux>&a;</Ux></Scan></Fibics>'
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), extratags=[(51023, "s", 0, xml, True)])
    assert_unreadable(path, "not valid XML")


def test_truncated(tmp_path):
    path = write(tmp_path / "t.tif", "<Scan><Ux>1</Ux><Vy>1</Vy></Scan>", rows=800)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 3000])
    assert_unreadable(path, "truncated")
