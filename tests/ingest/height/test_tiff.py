"""Float TIFF height maps: files written with tifffile in tmp_path; every refusal."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.height.tiff import FloatTiffReader, tiff_length_unit_to_um
from tests.helpers import assert_unreadable

tifffile = pytest.importorskip("tifffile")

Z = (np.arange(12.0).reshape(3, 4) - 5.0) / 4.0  # -1.25 .. 1.5 in file units


def write_imagej(path: Path, data=Z, *, px=(0.5, 0.25), **meta) -> Path:
    """ImageJ TIFF: XResolution/YResolution in pixels per `unit`."""
    tifffile.imwrite(path, np.asarray(data, np.float32), imagej=True,
                     resolution=(1 / px[0], 1 / px[1]), metadata=meta)
    return path


def write_json(path: Path, data=Z, *, dtype="f8", **meta) -> Path:
    tifffile.imwrite(path, np.asarray(data, dtype), metadata=meta)
    return path


def read(path: Path):
    assert FloatTiffReader().can_open(path.read_bytes()[:4096], path)
    return FloatTiffReader().open(path)


# --------------------------------------------------------------------------- ImageJ


@pytest.mark.parametrize(
    "unit,um_per_unit",
    [("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0), ("nm", 1e-3), ("mm", 1e3)],
)
@pytest.mark.parametrize("vunit,z_um", [("um", 1.0), ("nm", 1e-3), ("mm", 1e3)])
def test_imagej_unit_resolution_and_vunit(tmp_path, unit, um_per_unit, vunit, z_um):
    da = read(write_imagej(tmp_path / "ij.tif", unit=unit, vunit=vunit))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.5 * um_per_unit, rel=1e-9)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.25 * um_per_unit, rel=1e-9)
    np.testing.assert_allclose(da.values, Z * z_um, rtol=1e-6)  # float32 file
    assert da.dtype == np.float64 and da.attrs["format"] == "tiff"
    assert da.attrs["pixel_size_source"].startswith(f"ImageJ unit={unit}")
    assert da.attrs["header"]["imagej.vunit"] == vunit


def test_imagej_nan_is_unmeasured(tmp_path):
    z = Z.copy()
    z[0, 1] = z[2, 3] = np.nan
    da = read(write_imagej(tmp_path / "nan.tif", z, unit="um", vunit="um"))
    np.testing.assert_array_equal(np.isnan(da.values), np.isnan(z))
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / 12)


def test_imagej_without_yresolution_uses_x_like_imagej(tmp_path):
    path = write_imagej(tmp_path / "noy.tif", unit="um", vunit="um")
    blob = bytearray(path.read_bytes())
    # Retag YResolution (283) as an unknown private tag so that it is absent.
    i = blob.find(struct.pack("<HH", 283, 5))
    assert i > 0
    struct.pack_into("<H", blob, i, 65000)
    path.write_bytes(bytes(blob))
    da = read(path)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.5, "y": 0.5})
    assert "XResolution used for y" in da.attrs["header"]["y_resolution"]


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("z_unit,z_um", [("m", 1e6), ("mm", 1e3), ("um", 1.0),
                                         ("\u00b5m", 1.0), ("nm", 1e-3)])
@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_json_metadata(tmp_path, z_unit, z_um, dtype):
    path = write_json(tmp_path / "j.tif", dtype=dtype, pixel_size_um={"x": 0.2, "y": 0.3},
                      z_unit=z_unit)
    da = read(path)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.2, "y": 0.3}, rel=1e-12)
    np.testing.assert_allclose(da.values, Z * z_um, rtol=1e-6 if dtype == "f4" else 1e-12)
    assert da.attrs["pixel_size_source"] == "TIFF JSON ImageDescription pixel_size_um"


def test_bigtiff_big_endian(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, Z.astype(">f4"), bigtiff=True, byteorder=">",
                     metadata={"pixel_size_um": {"x": 1.5, "y": 1.5}, "z_unit": "nm"})
    assert path.read_bytes()[:4] == b"MM\x00+"
    da = read(path)
    np.testing.assert_allclose(da.values, Z * 1e-3, rtol=1e-6)


def _tiff_with_ifd_at_end(path: Path, z: np.ndarray, description: bytes) -> Path:
    """Hand-built classic TIFF: header, description, pixel data, and the IFD last."""
    h, w = z.shape
    pixels = z.astype("<f4").tobytes()
    desc_at, data_at = 8, 8 + len(description)
    ifd_at = data_at + len(pixels)
    entries = [  # tag, type, count, value
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1),
        (270, 2, len(description), desc_at), (273, 4, 1, data_at), (277, 3, 1, 1),
        (278, 4, 1, h), (279, 4, 1, len(pixels)), (339, 3, 1, 3),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count)
        ifd += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_at) + description + pixels + ifd)
    return path


def test_ifd_beyond_the_sniffed_head(tmp_path):
    z = np.random.default_rng(3).normal(size=(40, 40))  # 6400 bytes of pixels: IFD after 4096
    desc = b'{"pixel_size_um": {"x": 2, "y": 2}, "z_unit": "um"}\x00'
    path = _tiff_with_ifd_at_end(tmp_path / "late.tif", z, desc)
    assert struct.unpack_from("<I", path.read_bytes(), 4)[0] > 4096
    da = read(path)
    np.testing.assert_allclose(da.values, z, rtol=1e-6)


def test_several_pages_reads_the_first(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([Z, Z * 10]), photometric="minisblack",
                     metadata={"pixel_size_um": {"x": 1, "y": 1}, "z_unit": "um"})
    da = read(path)
    np.testing.assert_allclose(da.values, Z, rtol=1e-12)
    assert da.attrs["header"]["pages"] == 2


def test_registry_picks_float_tiff_reader(tmp_path):
    import pipeline

    path = write_json(tmp_path / "r.tif", pixel_size_um={"x": 1, "y": 1}, z_unit="um")
    assert pipeline.read(path).attrs["reader"] == "float_tiff"


# --------------------------------------------------------------------------- can_open


@pytest.mark.parametrize(
    "data,kw",
    [
        (np.zeros((8, 8), np.uint16), {}),  # a typical SEM image
        (np.zeros((8, 8), np.uint8), {}),
        (np.zeros((8, 8), np.int32), {}),
        (np.zeros((8, 8), np.float16), {}),
        (np.zeros((8, 8, 3), np.float32), {"photometric": "rgb"}),
        (np.zeros((8, 8, 2), np.float32), {"photometric": "minisblack", "planarconfig":
                                           "contig"}),
    ],
    ids=["uint16-sem", "uint8", "int32", "float16", "rgb-float", "two-channel-float"],
)
def test_can_open_declines_non_float_or_multichannel(tmp_path, data, kw):
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, **kw)
    assert not FloatTiffReader().can_open(path.read_bytes()[:4096], path)


def test_can_open_declines_non_tiff_and_broken_headers(tmp_path):
    r = FloatTiffReader()
    for name, blob in {"png": b"\x89PNG\r\n\x1a\n" + bytes(64), "short": b"II*\x00\x08",
                       "ifd-past-end": b"II*\x00" + struct.pack("<I", 10_000) + bytes(16),
                       "no-entries": b"II*\x00" + struct.pack("<IH", 8, 0)}.items():
        p = tmp_path / f"{name}.tif"
        p.write_bytes(blob)
        assert not r.can_open(p.read_bytes()[:4096], p), name


def test_sem_tiff_open_directly_is_refused(tmp_path):
    path = tmp_path / "sem.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    with pytest.raises(UnreadableInput, match=r"1 samples of uint16; a height map must be one "
                                              r"float32 or float64"):
        FloatTiffReader().open(path)


# --------------------------------------------------------------------------- calibration


def test_xresolution_without_imagej_unit_is_never_used(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, Z.astype("f4"), resolution=(300, 300), resolutionunit="inch",
                     metadata=None)
    with pytest.raises(MissingCalibration, match=r"no pixel size in the TIFF metadata.*"
                                                 r"XResolution alone is display DPI"):
        read(path)


@pytest.mark.parametrize(
    "meta,match",
    [
        ({"vunit": "um"}, r"ImageJ description has no unit=, so XResolution is display"),
        ({"unit": "inch", "vunit": "um"}, r"ImageJ unit 'inch' \(derived from display DPI\)"),
        ({"unit": "cm", "vunit": "um"}, r"ImageJ unit 'cm' \(derived from display DPI\)"),
        ({"unit": "pixel", "vunit": "um"}, r"ImageJ unit 'pixel' is not a microscope length"),
        ({"unit": "um"}, r"ImageJ description has no vunit=: the z unit is unknown"),
        ({"unit": "um", "vunit": "Gray Value"}, r"ImageJ vunit 'Gray Value' is not a length"),
    ],
)
def test_imagej_missing_calibration(tmp_path, meta, match):
    with pytest.raises(MissingCalibration, match=match):
        read(write_imagej(tmp_path / "m.tif", **meta))


@pytest.mark.parametrize(
    "meta,match",
    [
        ({"z_unit": "um"}, r"no pixel size in the TIFF metadata"),
        ({"pixel_size_um": {"x": 1, "y": 1}}, r"JSON description has no z_unit"),
        ({"pixel_size_um": {"x": 1, "y": 1}, "z_unit": "counts"},
         r"JSON z_unit 'counts' is not a length"),
    ],
)
def test_json_missing_calibration(tmp_path, meta, match):
    with pytest.raises(MissingCalibration, match=match):
        read(write_json(tmp_path / "m.tif", **meta))


def test_missing_calibration_exits_3_from_inspect(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = write_json(tmp_path / "noz.tif", pixel_size_um={"x": 1, "y": 1})
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 3, result.output
    assert "no z_unit" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- unreadable


def test_zero_pixel_size(tmp_path):
    path = write_json(tmp_path / "zero.tif", pixel_size_um={"x": 0.0, "y": 1.0}, z_unit="um")
    assert_unreadable(path, r"pixel size x is 0\.0 um; it must be a finite positive length")


def test_zero_imagej_resolution(tmp_path):
    path = tmp_path / "zres.tif"
    tifffile.imwrite(path, Z.astype("f4"), imagej=True, resolution=((0, 1), (1, 1)),
                     metadata={"unit": "um", "vunit": "um"})
    assert_unreadable(path, r"XResolution is \(0, 1\); it does not give a finite positive")


def test_truncated_file(tmp_path):
    path = write_json(tmp_path / "t.tif", np.ones((64, 64)), pixel_size_um={"x": 1, "y": 1},
                      z_unit="um")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 1000])
    assert_unreadable(path, r"TIFF is truncated or corrupt \(ValueError: failed to read")


@pytest.mark.parametrize(
    "description,match",
    [
        ('{"pixel_size_um": ', r"JSON ImageDescription is malformed"),
        ('{"pixel_size_um": 0.5, "z_unit": "um"}', r"JSON pixel_size_um is 0\.5; expected"),
        ('{"pixel_size_um": {"x": "a", "y": 1}, "z_unit": "um"}', r"JSON pixel_size_um is"),
    ],
)
def test_malformed_json_description(tmp_path, description, match):
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, Z.astype("f4"), description=description, metadata=None)
    assert_unreadable(path, match)


def test_imagej_calibration_function_is_refused(tmp_path):
    path = write_imagej(tmp_path / "cf.tif", unit="um", vunit="um", cf=0, c0=1.0, c1=2.0)
    assert_unreadable(path, r"ImageJ value calibration function cf=0 is not supported")


@pytest.mark.parametrize("unit,um", [("um", 1.0), ("UM", 1.0), (" nm ", 1e-3), ("m", 1e6),
                                     ("inch", None), ("cm", None), (None, None), (3, None)])
def test_unit_table(unit, um):
    got = tiff_length_unit_to_um(unit)
    assert got == (None if um is None else pytest.approx(um))
