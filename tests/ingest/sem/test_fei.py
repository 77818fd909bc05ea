"""FEI / Thermo Fisher reader: real Helios and Teneo files, synthetic variants, refusals."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.errors import MissingCalibration
from pipeline.ingest.dataarray import require_pixel_size
from pipeline.ingest.sem.fei import FeiReader
from tests.helpers import assert_unreadable, cli_json, realfile

tifffile = pytest.importorskip("tifffile")

# name, vendor pixel size (um, SOURCES.md), stored rows, cropped shape, bar rows, dtype, kV
REAL = [
    ("fei_helios660_ebeam_8bit.tif", 3.3724, (442, 512), 29, np.uint8, 5.0),
    ("fei_helios660_ebeam_16bit.tif", 3.3724, (442, 512), 29, np.uint16, 5.0),
    ("fei_teneo_rbc.tif", 7.70833e-3, (1024, 1536), 70, np.uint8, 2.0),
]


@pytest.mark.parametrize("name,px_um,shape,bar,dtype,kv", REAL)
def test_real_pixel_size_and_bar(name, px_um, shape, bar, dtype, kv):
    path = realfile("sem", name)
    da = pipeline.read(path)
    assert da.attrs["reader"] == "fei" and da.attrs["vendor"] == "FEI"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(px_um, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(px_um, rel=1e-6)
    assert da.attrs["pixel_size_source"] == "FEI [Scan] PixelWidth/PixelHeight"
    assert da.shape == shape and da.dtype == dtype
    assert da.attrs["databar_rows"] == bar
    assert da.attrs["databar_method"] == "metadata: page height - [Image] ResolutionY"
    assert da.attrs["kv"] == pytest.approx(kv) and da.attrs["detector"] == "ETD"
    assert da.attrs["calibration"] == "ok"
    full = tifffile.imread(path)
    np.testing.assert_array_equal(da.values, full[: shape[0]])


def test_teneo_ignores_zero_databarheight():
    da = pipeline.read(realfile("sem", "fei_teneo_rbc.tif"))
    assert da.attrs["header"]["PrivateFei.DatabarHeight"] == "0"
    assert da.attrs["databar_rows"] == 70
    assert da.attrs["instrument"] == "Teneo"


@pytest.mark.parametrize("name", ["fei_helios660_navcam.tif", "fei_helios660_navcam_no_irbeam.tif"])
def test_navcam_is_uncalibrated(name):
    path = realfile("sem", name)
    da = pipeline.read(path)
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"
    assert da.attrs["vendor"] == "FEI" and da.attrs["detector"] == "Nav-Cam"
    assert "Nav-Cam" in da.attrs["header"]["note"]
    assert da.attrs["databar_rows"] == 39 and da.shape == (512, 768)
    with pytest.raises(MissingCalibration):
        require_pixel_size(da)
    rec = cli_json(["inspect", str(path), "--json"])
    assert rec["pixel_size_um"] is None and rec["calibration"] == "missing"


# --------------------------------------------------------------------------- synthetic

INI = """[System]
SystemType=Quanta 250
[Beam]
HV=15000
Beam=EBeam
[EBeam]
HV=15000
HFW=0.0001
WD=0.01
{scan}[Image]
ResolutionX=40
ResolutionY={ry}
[Detectors]
Name=ETD
[PrivateFei]
DatabarHeight=0
"""
SCAN = "[Scan]\nPixelWidth=2.5e-006\nPixelHeight=2.5e-006\n"


def write(path: Path, text, *, code=34682, rows=50, dtype=np.uint8) -> Path:
    data = (np.arange(rows * 40) % 200).astype(dtype).reshape(rows, 40)
    tifffile.imwrite(path, data, extratags=[(code, "s", 0, text, True)])
    return path


def read(path: Path):
    assert FeiReader().can_open(path.read_bytes()[:4096], path)
    return pipeline.read(path)


def test_synthetic_ini_crop_and_units(tmp_path):
    da = read(write(tmp_path / "q.tif", INI.format(scan=SCAN, ry=42)))
    assert da.shape == (42, 40) and da.attrs["databar_rows"] == 8
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 2.5, "y": 2.5}, rel=1e-9)
    assert da.attrs["kv"] == pytest.approx(15.0)
    assert da.attrs["header"]["working_distance_mm"] == pytest.approx(10.0)
    assert da.attrs["header"]["hfw_um"] == pytest.approx(100.0)


def test_sfeg_tag_ini(tmp_path):
    da = read(write(tmp_path / "s.tif", INI.format(scan=SCAN, ry=50), code=34680))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(2.5, rel=1e-9)
    assert da.attrs["databar_rows"] == 0 and da.attrs["header"]["metadata_tag"] == 34680


def memento(name, unit, value=None, children=None):
    if children is not None:
        inner = "".join(children)
        return (f"<MementoItem><Name>{name}</Name><MementoItemUnit>MementoSection"
                f"</MementoItemUnit><MementoItemSection>{inner}</MementoItemSection>"
                "</MementoItem>")
    return (f"<MementoItem><Name>{name}</Name><MementoItemUnit>{unit}</MementoItemUnit>"
            f"<anyType>{value}</anyType></MementoItem>")


def test_sfeg_tag_base64_memento_xml(tmp_path):
    xml = ('<?xml version="1.0" encoding="utf-8"?><MementoItemCollection><item><value>'
           + memento("Scan", None, children=[memento("PixelSize", None, children=[
               memento("Width", "MementoItemUnitMeter", "1.6001878212732306E-08"),
               memento("Height", "MementoItemUnitMeter", "1.6001878212732306E-08")])])
           + "</value></item></MementoItemCollection>")
    text = base64.b64encode(b"\xef\xbb\xbf" + xml.encode()).decode()
    da = read(write(tmp_path / "m.tif", text, code=34680))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(1.6001878212732306e-2, rel=1e-12)
    assert da.attrs["pixel_size_source"] == "FEI 34680 XML Scan.PixelSize.Width/Height"


def test_no_scan_ebeam_falls_back_to_hfw(tmp_path):
    da = read(write(tmp_path / "h.tif", INI.format(scan="", ry=50)))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(100.0 / 40, rel=1e-9)
    assert da.attrs["pixel_size_source"] == "FEI [EBeam] HFW / [Image] ResolutionX"


def test_no_scan_irbeam_is_not_used(tmp_path):
    text = INI.format(scan="", ry=50).replace("Beam=EBeam", "Beam=IRBeam")
    da = read(write(tmp_path / "ir.tif", text))
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"


# --------------------------------------------------------------------------- refusals


def test_zero_resolution_y_without_scan(tmp_path):
    path = write(tmp_path / "zero.tif", INI.format(scan="", ry=0))
    assert_unreadable(path, r"ResolutionY = '0' does not fit")


def test_resolution_y_larger_than_page(tmp_path):
    assert_unreadable(write(tmp_path / "big.tif", INI.format(scan=SCAN, ry=51)),
                      "does not fit the 50-row page")


def test_bad_pixel_width(tmp_path):
    text = INI.format(scan="[Scan]\nPixelWidth=abc\n", ry=50)
    assert_unreadable(write(tmp_path / "pw.tif", text), "PixelWidth = 'abc' is not a number")


def test_neither_ini_nor_base64(tmp_path):
    assert_unreadable(write(tmp_path / "x.tif", "%%% not metadata %%%", code=34680),
                      "neither INI text")


def test_truncated_tiff(tmp_path):
    path = write(tmp_path / "t.tif", INI.format(scan=SCAN, ry=42), rows=200)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 3000])
    assert_unreadable(path, "truncated")


def test_truncated_real_file(tmp_path):
    blob = realfile("sem", "fei_teneo_rbc.tif").read_bytes()
    path = tmp_path / "teneo_cut.tif"
    path.write_bytes(blob[: len(blob) // 2])  # the IFD (at the end) is lost
    assert_unreadable(path, "no reader recognises this file")
