"""Alicona AL3D reader: the real MeasureSuite file against SOURCES.md and SurfaceTopography,
synthetic files written tag by tag here (row padding, invalid pixels), and every bad-input path."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.ingest.height.al3d import Al3dReader
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.oracles import UM, raw_stats, st_heights_um, st_topography

REAL = "surftopo_al3d-1.al3d"
# SOURCES.md, raw (no levelling), surfalize 0.19.2; micrometres.
SOURCES_RAW = {"Sa": 6.394, "Sq": 7.688, "Sz": 34.95, "Sp": 17.22, "Sv": 17.73}
SOURCES_PIXEL, HALF_DIGIT = 0.438, 0.0005
MAGIC = b"AliconaImaging\x00\r\n"
INVALID = "3.000000028082e+15"


def _record(key: str, value: str, crlf: bytes = b"\r\n") -> bytes:
    return key.encode().ljust(20, b"\0") + value.encode().ljust(30, b"\0") + crlf


def al3d_bytes(depth_m, *, dx="4.38027e-07", dy="5.0e-07", invalid=INVALID, override=None,
               drop=(), first="Version", bad_crlf_at=None, comment="focus variation") -> bytes:  # fmt: skip
    """An AL3D file: magic, Version, TagCount, tags, 256-byte comment, padded float32 rows."""
    depth = np.asarray(depth_m, dtype="<f4")
    ny, nx = depth.shape
    tags = {"Cols": str(nx), "Rows": str(ny), "PixelSizeXMeter": dx, "PixelSizeYMeter": dy,
            "DepthImageOffset": "", "InvalidPixelValue": invalid,
            "CreatingApplication": "TestSuite 1.0", "TextureImageOffset": "0"}  # fmt: skip
    for k in drop:
        tags.pop(k)
    offset = len(MAGIC) + 52 * (2 + len(tags)) + 256
    if "DepthImageOffset" in tags:
        tags["DepthImageOffset"] = str(offset)
    tags.update(override or {})
    records = [(first, "1"), ("TagCount", str(len(tags))), *tags.items()]
    out = MAGIC + b"".join(
        _record(k, v, b"\r\x00" if i == bad_crlf_at else b"\r\n") for i, (k, v) in enumerate(records)
    )
    out += comment.encode().ljust(254, b"\0") + b"\r\n"
    stride = -(-nx * 4 // 8) * 8 // 4
    padded = np.full((ny, stride), 123.0, dtype="<f4")  # padding must be dropped
    padded[:, :nx] = depth
    return out + padded.tobytes()


def _depth(ny=6, nx=7, seed=5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = 0.0761 + 2e-6 * xx - 1e-6 * yy + rng.normal(0, 1e-7, (ny, nx))
    z[0, :] += 3e-5  # a ridge on the first stored row
    return z.astype(np.float32)


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real():
    path = realfile("heightmaps", REAL)
    return path, pipeline.read(path), st_topography(path)


@pytest.mark.slow
def test_real_shape_pixel_size_and_attrs(real):
    _path, da, t = real
    assert da.attrs["reader"] == "al3d" and da.shape == (296, 200)
    for axis, i in (("x", 0), ("y", 1)):
        px = da.attrs["pixel_size_um"][axis]
        assert abs(px - SOURCES_PIXEL) <= HALF_DIGIT
        assert px == pytest.approx(t.physical_sizes[i] / t.nb_grid_pts[i] * UM[t.unit], rel=1e-9)
    assert "PixelSizeXMeter" in da.attrs["pixel_size_source"] and da.attrs["vendor"] == "Alicona"
    h = da.attrs["header"]
    assert h["CreatingApplication"] == "MeasureSuite 5.3.6" and h["InvalidPixelValue"] == INVALID
    assert "PlaceHolder" not in h and "DirSpacer" not in h  # binary tag values are left out
    assert np.nanmean(da.values) == pytest.approx(76_341, rel=1e-4)  # absolute, ~76 mm


def test_real_invalid_fraction_and_raw_parameters(real):
    _, da, _ = real
    assert da.attrs["invalid_fraction"] == 0.0
    got = raw_stats(da.values)
    for k, ref in SOURCES_RAW.items():
        assert got[k] == pytest.approx(ref, rel=1e-3), k


def test_real_heights_match_surfacetopography(real):
    """Ours (y, x), row 0 = first stored row, equals ST's [x, y] array transposed."""
    _, da, t = real
    np.testing.assert_allclose(da.values, st_heights_um(t), rtol=1e-12, equal_nan=True)


# ---------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("nx", [7, 8, 9])
def test_row_padding_invalid_pixels_and_orientation(tmp_path, nx):
    """Rows are padded to 8 bytes (odd column counts gain one value); ST agrees."""
    z = _depth(nx=nx)
    z[2, 3] = np.float32(float(INVALID))
    z[4, 1] = np.nan
    p = tmp_path / f"c{nx}.al3d"
    p.write_bytes(al3d_bytes(z))
    da = pipeline.read(p)
    assert da.shape == (6, nx)
    expected = z.astype(float) * 1e6
    expected[2, 3] = np.nan
    np.testing.assert_allclose(da.values, expected, rtol=1e-12, equal_nan=True)
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / z.size)
    assert da.attrs["pixel_size_um"] == {"x": pytest.approx(0.438027), "y": pytest.approx(0.5)}
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1]) + 20
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-12, equal_nan=True)


def test_without_invalid_value_tag_only_nan_is_invalid(tmp_path):
    z = _depth()
    z[1, 1] = np.nan
    p = tmp_path / "noinv.al3d"
    p.write_bytes(al3d_bytes(z, drop=("InvalidPixelValue",)))
    da = pipeline.read(p)
    assert np.isnan(da.values).sum() == 1 and da.attrs["header"]["comment"] == "focus variation"


# ---------------------------------------------------------------- bad input


def test_wrong_magic_is_declined(tmp_path):
    p = tmp_path / "bad.al3d"
    p.write_bytes(b"AliconaImagine" + al3d_bytes(_depth())[14:])
    assert not Al3dReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_truncated_header(tmp_path):
    p = tmp_path / "short.al3d"
    p.write_bytes(al3d_bytes(_depth())[:300])
    assert_unreadable(p, r"truncated: AL3D header \(8 tags and comment\)")


def test_truncated_data(tmp_path):
    p = tmp_path / "cut.al3d"
    p.write_bytes(al3d_bytes(_depth())[:-5])
    assert_unreadable(p, r"truncated: AL3D depth image")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"override": {"Cols": "0"}}, r"AL3D depth image dimensions 6 x 0 are not positive"),
        ({"override": {"Rows": "-3"}}, r"AL3D depth image dimensions -3 x 7 are not positive"),
        ({"dx": "0"}, r"PixelSizeXMeter is 0\.0; a pixel size must be finite and positive"),
        ({"dy": "nan"}, r"PixelSizeYMeter is nan"),
        ({"dy": "-4e-7"}, r"PixelSizeYMeter is -4e-07"),
        ({"override": {"Cols": "7x"}}, r"tag Cols is '7x', not a number"),
        ({"drop": ("Rows",)}, r"AL3D header has no Rows tag"),
        ({"override": {"DepthImageOffset": "0"}}, r"DepthImageOffset is 0: the file holds no depth"),
        ({"first": "Versions"}, r"tag 0 is 'Versions'; 'Version' is expected"),
        ({"bad_crlf_at": 4}, r"tag record 4 \(byte \d+\) does not end in CRLF"),
    ],
)
def test_corrupt_header_fields(tmp_path, kwargs, match):
    p = tmp_path / "corrupt.al3d"
    p.write_bytes(al3d_bytes(_depth(), **kwargs))
    assert_unreadable(p, match)
