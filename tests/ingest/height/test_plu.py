"""Sensofar PLU reader: the real DCM 3D file against SOURCES.md and SurfaceTopography, synthetic
files written field by field here, and every bad-input path."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import pipeline
from pipeline.ingest.height.plu import PluReader
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.oracles import UM, raw_stats, st_heights_um, st_topography

REAL = "surfalize_test_1.plu"
# SOURCES.md, raw (no levelling), surfalize 0.19.2; micrometres.
SOURCES_RAW = {"Sa": 4.496, "Sq": 5.201, "Sz": 24.42, "Sp": 12.32, "Sv": 12.09}
SOURCES_PIXEL, HALF_DIGIT = 0.332, 0.0005
UNDEFINED = 1000001.0


def plu_bytes(layers, *, date=b"Tue Mar  5 09:07:02 2024", mppx=0.5, mppy=0.25, mtype=3,
              n_layers=None, version=0xFB, hardware=9, objective=5, area=3, cal_dims=None,
              n_images=1, comment=b"synthetic") -> bytes:  # fmt: skip
    """A PLU file: 500-byte header, then per layer (rows, cols, float32 data, min, max, RGB)."""
    layers = [np.asarray(z, dtype="<f4") for z in (layers if isinstance(layers, list) else [layers])]
    ny, nx = layers[0].shape
    cal_ny, cal_nx = (ny, nx) if cal_dims is None else cal_dims
    out = date.ljust(128, b"\0") + struct.pack("<I", 1709629622) + comment.ljust(256, b"\0")
    out += struct.pack("<3I7f", cal_ny, cal_nx, nx, 1.0, mppx, mppy, -5.0, 3.0, 0.1, -2.0)
    out += struct.pack("<5I", mtype, 1, 0, objective, area)
    out += struct.pack("<5IdfII", nx, ny, nx, ny, 1, 0.2, 40.0, 201, 0)
    out += struct.pack("<5B3xI", 0, len(layers) if n_layers is None else n_layers, version, hardware, n_images, 1)
    assert len(out) == 500
    for z in layers:
        out += struct.pack("<2I", *z.shape) + z.tobytes() + struct.pack("<2f", 0.0, 1.0)
        out += bytes(range(256)) * (3 * z.size * n_images // 256) + b"\x07" * (3 * z.size * n_images % 256)
    return out


def _surface(ny=7, nx=11, seed=4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = (0.3 * xx - 0.2 * yy + rng.normal(0, 0.05, (ny, nx))).astype(np.float32)
    z[0, :] += 5.0  # a ridge on the first stored row pins the orientation
    return z


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real():
    path = realfile("heightmaps", REAL)
    return path, pipeline.read(path), st_topography(path)


def test_real_shape_pixel_size_and_attrs(real):
    _path, da, t = real
    assert da.attrs["reader"] == "plu" and da.shape == (576, 768)
    for axis, i in (("x", 0), ("y", 1)):
        px = da.attrs["pixel_size_um"][axis]
        assert abs(px - SOURCES_PIXEL) <= HALF_DIGIT
        assert px == pytest.approx(t.physical_sizes[i] / t.nb_grid_pts[i] * UM[t.unit], rel=1e-9)
    assert "mppx" in da.attrs["pixel_size_source"]
    assert da.attrs["vendor"] == "Sensofar" and da.attrs["instrument"] == "DCM 3D rev. 2"
    h = da.attrs["header"]
    assert h["date"] == "2021-04-19 11:40:13" and h["objective_id"] == 36
    assert h["objective"] == "Leica HC PL Fluotar EPI 50X" and h["measurement_type"] == "topography"


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


def test_invalid_marker_non_square_pixels_and_orientation(tmp_path):
    z = _surface()
    z[3, 4] = z[6, 10] = UNDEFINED
    p = tmp_path / "s.plu"
    p.write_bytes(plu_bytes(z))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "plu"
    expected = z.astype(float)
    expected[3, 4] = expected[6, 10] = np.nan
    np.testing.assert_array_equal(da.values, expected)
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / z.size)
    assert da.attrs["pixel_size_um"] == {"x": 0.5, "y": 0.25}
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1]) + 4
    assert da.attrs["instrument"] == "S neox" and da.attrs["header"]["comment"] == "synthetic"
    np.testing.assert_array_equal(da.values, st_heights_um(st_topography(p)))


def test_two_layers_reads_the_first(tmp_path):
    first, second = _surface(seed=1), _surface(seed=2) + 100
    p = tmp_path / "two.plu"
    p.write_bytes(plu_bytes([first, second]))
    da = pipeline.read(p)
    assert da.attrs["header"]["layers"] == 2
    np.testing.assert_array_equal(da.values, first.astype(float))


def test_instrument_unnamed_before_the_2012_format(tmp_path):
    p = tmp_path / "old.plu"
    p.write_bytes(plu_bytes(_surface(), version=0xFF))
    da = pipeline.read(p)
    assert da.attrs["instrument"] == "" and da.attrs["header"]["format_version"] == "2006"


# ---------------------------------------------------------------- bad input


def test_wrong_magic_is_declined(tmp_path):
    """PLU has no magic: its first 128 bytes are a date. Binary there is not a PLU."""
    p = tmp_path / "bad.plu"
    p.write_bytes(plu_bytes(_surface(), date=b"\x01\x02\x03 not a date \xff"))
    assert not PluReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_truncated_header(tmp_path):
    p = tmp_path / "short.plu"
    p.write_bytes(plu_bytes(_surface())[:450])
    assert_unreadable(p, r"truncated: PLU header")


def test_truncated_data(tmp_path):
    z = _surface()
    p = tmp_path / "cut.plu"
    p.write_bytes(plu_bytes(z, n_images=0)[: 508 + 4 * z.size - 6])
    assert_unreadable(p, r"truncated: PLU height data")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mppx": 0.0}, r"gives 0\.0 um per pixel in x; a pixel size must be finite and positive"),
        ({"mppy": float("nan")}, r"gives nan um per pixel in y"),
        ({"mppx": -0.3}, r"-0\.3\d* um per pixel in x"),
        ({"cal_dims": (7, 12)}, r"layer is 11 x 7 points but the calibration block says 12 x 7"),
        ({"mtype": 1}, r"measurement type 1 \(profile\) is not a topography"),
        ({"n_layers": 0}, r"declares 0 data layers"),
    ],
)
def test_corrupt_header_fields(tmp_path, kwargs, match):
    p = tmp_path / "corrupt.plu"
    p.write_bytes(plu_bytes(_surface(), **kwargs))
    assert_unreadable(p, match)


@pytest.mark.parametrize("rows, cols", [(0, 11), (7, 0)])
def test_zero_dimensions(tmp_path, rows, cols):
    buf = bytearray(plu_bytes(_surface()))
    struct.pack_into("<2I", buf, 388, rows, cols)  # calibration block
    struct.pack_into("<2I", buf, 500, rows, cols)  # layer
    p = tmp_path / "dims.plu"
    p.write_bytes(bytes(buf))
    assert_unreadable(p, rf"PLU height layer dimensions {rows} x {cols} are not positive")
