"""Keyence ZON reader: the real VR-6100 file against SOURCES.md and SurfaceTopography,
synthetic KPK0/KPK1 containers written member by member here (validity-mask bits, row padding,
zstd), and every bad-input path."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest

import pipeline
from pipeline.errors import MissingCalibration
from pipeline.ingest.height.zon import MEMBERS, ZonReader
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.oracles import UM, raw_stats, st_heights_um, st_topography

REAL = "surfalize_test_1.zon"
# SOURCES.md, raw (no levelling), "valid points only" row; micrometres.
SOURCES_RAW = {"Sa": 317.4, "Sq": 569.7, "Sz": 4356, "Sp": 1396, "Sv": 2959}
SOURCES_PIXEL, HALF_DIGIT = 23.63, 0.005
SOURCES_NAN, HALF_NAN = 0.0026, 0.00005  # "0.26 %"
DATAMAP_GUID = "b28a927e-8895-4f6a-a2f0-9db220a9cc87"


def array_member(values: np.ndarray, item: int, pad: int = 0, header=None) -> bytes:
    """16-byte header (cols, rows, bytes per element, bytes per row), then padded rows."""
    ny, nx = values.shape
    row = nx * item + pad
    body = np.zeros((ny, row), dtype=np.uint8)
    body[:, : nx * item] = values.view(np.uint8).reshape(ny, nx * item)
    return struct.pack("<4i", *(header or (nx, ny, item, row))) + body.tobytes()


def _xml(root: str, inner: str) -> bytes:
    return ('\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n' f"<{root}>{inner}</{root}>").encode()


def zon_bytes(counts, mask=None, *, magic=b"KPK1", mpp="2.5E-05", mpu="1E-08", pad=0,
              drop=(), height=None, bmp_size=None, corrupt_zstd=False) -> bytes:  # fmt: skip
    """A ZON container: magic, BMP size, BMP preview, then a stored zip of GUID members
    (zstd frames inside when the magic is KPK1)."""
    import imagecodecs

    counts = np.asarray(counts, dtype="<i4")
    members = {
        MEMBERS["height"]: height if height is not None else array_member(counts, 4, pad * 4),
        MEMBERS["calibration"]: _xml("Calibration", f"<XYCalibration><MeterPerPixel>{mpp}</MeterPerPixel>"
                                     f"</XYCalibration><ZCalibration><MeterPerUnit>{mpu}</MeterPerUnit>"
                                     "</ZCalibration>"),
        MEMBERS["device"]: _xml("DeviceIndivisuals", "<DeviceModelName>VR-3200</DeviceModelName>"
                                "<DeviceSerialId>#TEST01</DeviceSerialId>"),
        MEMBERS["scan"]: _xml("ScanInformations", "<ScanDateTime>01/02/2024 03:04:05 +01:00</ScanDateTime>"),
        DATAMAP_GUID: _xml("DataMap", f'<TypeId Key="{MEMBERS["height"]}">x</TypeId>'),
    }  # fmt: skip
    if mask is not None:
        members[MEMBERS["mask"]] = array_member(np.asarray(mask, dtype=np.uint8), 1, pad)
    for k in drop:
        members.pop(k)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            if magic == b"KPK1":
                data = imagecodecs.zstd_encode(data)
                if corrupt_zstd and name == MEMBERS["height"]:
                    data = data[:8] + b"\xff" * 24 + data[32:]
            zf.writestr(name, data)
    bmp = b"BM" + struct.pack("<I", 70) + b"\0" * 64
    return magic + struct.pack("<I", len(bmp) if bmp_size is None else bmp_size) + bmp + buf.getvalue()


def _counts(ny=5, nx=9, seed=6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    c = 40_000 * xx - 15_000 * yy + rng.integers(-500, 500, (ny, nx))
    c[0, :] += 300_000  # a ridge on the first stored row
    return c.astype(np.int32)


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real():
    path = realfile("heightmaps", REAL)
    return path, pipeline.read(path), st_topography(path)


def test_real_shape_pixel_size_and_attrs(real):
    _path, da, t = real
    assert da.attrs["reader"] == "keyence_zon" and da.shape == (769, 1024)
    for axis, i in (("x", 0), ("y", 1)):
        px = da.attrs["pixel_size_um"][axis]
        assert abs(px - SOURCES_PIXEL) <= HALF_DIGIT
        assert px == pytest.approx(t.physical_sizes[i] / t.nb_grid_pts[i] * UM[t.unit], rel=1e-9)
    assert "MeterPerPixel" in da.attrs["pixel_size_source"] and da.attrs["vendor"] == "Keyence"
    assert da.attrs["instrument"] == "VR-6100 (serial #8C0P000131)"
    h = da.attrs["header"]
    assert h["container"] == "KPK1" and h["z_um_per_count"] == pytest.approx(0.01)
    assert h["date"] == "12/18/2025 12:47:39 -06:00"


def test_real_invalid_fraction_and_raw_parameters(real):
    _, da, t = real
    frac = da.attrs["invalid_fraction"]
    assert abs(frac - SOURCES_NAN) <= HALF_NAN
    assert np.isnan(da.values).sum() == np.ma.count_masked(t.heights())  # same points as ST
    got = raw_stats(da.values)
    for k, ref in SOURCES_RAW.items():
        assert got[k] == pytest.approx(ref, rel=1e-3), k


def test_real_heights_match_surfacetopography(real):
    """Ours (y, x), row 0 = first stored row, equals ST's [x, y] array transposed."""
    _, da, t = real
    np.testing.assert_allclose(da.values, st_heights_um(t), rtol=1e-12, equal_nan=True)


# ---------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("magic", [b"KPK0", b"KPK1"])
def test_mask_bits_padding_and_orientation(tmp_path, magic):
    counts = _counts()
    mask = np.zeros(counts.shape, np.uint8)
    mask[1, 1], mask[2, 2], mask[3, 3] = 0x01, 0x02, 0x41  # invalid
    mask[4, 4], mask[0, 8] = 0x40, 0x80  # quality flags only: kept
    p = tmp_path / "s.zon"
    p.write_bytes(zon_bytes(counts, mask, magic=magic, pad=3))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "keyence_zon" and da.shape == counts.shape
    expected = counts * 0.01
    expected[1, 1] = expected[2, 2] = expected[3, 3] = np.nan
    np.testing.assert_allclose(da.values, expected, rtol=1e-12, equal_nan=True)
    assert da.attrs["pixel_size_um"] == {"x": pytest.approx(25.0), "y": pytest.approx(25.0)}
    h = da.attrs["header"]
    assert (h["mask_no_measurement"], h["mask_excluded"], h["mask_quality_only_kept"]) == (2, 1, 2)
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1]) + 1000
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-12, equal_nan=True)


def test_without_mask_every_point_is_valid(tmp_path):
    p = tmp_path / "nomask.zon"
    p.write_bytes(zon_bytes(_counts()))
    da = pipeline.read(p)
    assert da.attrs["invalid_fraction"] == 0.0 and "absent" in da.attrs["header"]["validity_mask"]


def test_missing_calibration_is_missing_calibration(tmp_path):
    p = tmp_path / "nocal.zon"
    p.write_bytes(zon_bytes(_counts(), drop=(MEMBERS["calibration"],)))
    with pytest.raises(MissingCalibration, match="MeterPerPixel") as info:
        pipeline.read(p)
    assert info.value.exit_code == 3


# ---------------------------------------------------------------- bad input


def test_wrong_magic_is_declined(tmp_path):
    p = tmp_path / "bad.zon"
    p.write_bytes(b"KPK9" + zon_bytes(_counts())[4:])
    assert not ZonReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_zip_without_height_member_is_declined(tmp_path):
    p = tmp_path / "noheight.zon"
    p.write_bytes(zon_bytes(_counts(), drop=(MEMBERS["height"],)))
    assert not ZonReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_truncated_header(tmp_path):
    """Cut inside the BMP preview that the header announces."""
    p = tmp_path / "short.zon"
    p.write_bytes(zon_bytes(_counts(), bmp_size=10_000)[:60])
    assert_unreadable(p, r"truncated: the BMP preview needs bytes 8\.\.10008 but the file has 60")


def test_truncated_archive(tmp_path):
    p = tmp_path / "cut.zon"
    p.write_bytes(zon_bytes(_counts())[:-40])
    assert_unreadable(p, r"zip archive after the BMP preview cannot be read; the file is truncated")


def test_truncated_height_data(tmp_path):
    counts = _counts()
    short = array_member(counts, 4)[:-7]
    p = tmp_path / "cutdata.zon"
    p.write_bytes(zon_bytes(counts, height=short))
    assert_unreadable(p, r"truncated: ZON height array data")


def test_corrupt_zstd_frame(tmp_path):
    p = tmp_path / "zstd.zon"
    p.write_bytes(zon_bytes(_counts(), corrupt_zstd=True))
    assert_unreadable(p, r"ZON height member 4cdb0c75-\S+ is a corrupt zstd frame")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mpp": "0"}, r"MeterPerPixel is 0\.0; the pixel size must be finite and positive"),
        ({"mpp": "NaN"}, r"MeterPerPixel is nan"),
        ({"mpp": "abc"}, r"MeterPerPixel is 'abc', not a number"),
        ({"mpu": "-1E-08"}, r"MeterPerUnit is -1e-08; the z scale must be finite and positive"),
        ({"height": struct.pack("<4i", 0, 5, 4, 0)}, r"ZON height array dimensions 5 x 0 are not positive"),
        ({"height": struct.pack("<4i", 9, -2, 4, 36)}, r"ZON height array dimensions -2 x 9 are not positive"),
        ({"height": struct.pack("<4i", 9, 5, 2, 18) + b"\0" * 90}, r"has 2 bytes per element; 4 is expected"),
        ({"height": struct.pack("<4i", 9, 5, 4, 20) + b"\0" * 100}, r"20 bytes per row for 9 columns"),
        ({"mask": np.zeros((4, 9), np.uint8)}, r"validity mask is 9 x 4 but the height data is 9 x 5"),
    ],
)
def test_corrupt_fields(tmp_path, kwargs, match):
    mask = kwargs.pop("mask", None)
    p = tmp_path / "corrupt.zon"
    p.write_bytes(zon_bytes(_counts(), mask, **kwargs))
    assert_unreadable(p, match)
