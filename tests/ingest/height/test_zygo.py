"""Zygo MetroPro DAT reader: the real NewView file against SOURCES.md and SurfaceTopography,
synthetic files written field by field here, and every bad-input path.

About SOURCES.md: its values for surfalize_test_1.dat come from surfalize 0.19.2, which maps
phase_res = 1 to R = 4096 counts per fringe. Zygo's reference guide, Gwyddion, itom and
SurfaceTopography map 0 -> 4096, 1 -> 32768, 2 -> 131072, and so do we; the file has
phase_res = 1, so surfalize's heights (and its Sa ... Sv) are exactly 32768 / 4096 = 8 times
ours. The tests check that relation to SOURCES.md and the exact agreement with
SurfaceTopography."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import pipeline
from pipeline.errors import MissingCalibration
from pipeline.ingest.height.zygo import ZygoDatReader
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.oracles import UM, raw_stats, st_heights_um, st_topography

REAL = "surfalize_test_1.dat"
# SOURCES.md, raw (no levelling), surfalize 0.19.2 (phase_res 1 read as R = 4096); micrometres.
SOURCES_RAW = {"Sa": 0.5145, "Sq": 0.6023, "Sz": 10.90, "Sp": 5.847, "Sv": 5.057}
SURFALIZE_FACTOR = 32768 / 4096
SOURCES_PIXEL, HALF_DIGIT = 1.098, 0.0005
MAGIC = {1: b"\x88\x1b\x03\x6f", 2: b"\x88\x1b\x03\x70", 3: b"\x88\x1b\x03\x71"}
BAD_PHASE = 2147483640


def dat_bytes(phase, *, fmt=1, buckets=1, intf=0.5, wl=632.8e-9, obliq=1.0, lateral=2e-6,
              phase_res=1, sign=0, header_size=None, header_format=None, cn_n_bytes=None,
              objective=b"50X Mirau") -> bytes:  # fmt: skip
    """A MetroPro file: big-endian header, uint16 intensity block(s), int32 phase block."""
    phase = np.asarray(phase, dtype=">i4")
    ny, nx = phase.shape
    hs = {1: 834, 2: 834, 3: 4096}[fmt] if header_size is None else header_size
    h = bytearray({1: 834, 2: 834, 3: 4096}[fmt])
    struct.pack_into(">4sHI", h, 0, MAGIC[fmt], fmt if header_format is None else header_format, hs)
    struct.pack_into(">h30shhh", h, 10, 1, b"Mon Jan  1 00:00:00 2024", 8, 1, 5)
    struct.pack_into(">hhHHHhI", h, 48, 0, 0, nx, ny, buckets, 255, 2 * nx * ny * buckets)
    struct.pack_into(">hhHHI", h, 64, 0, 0, nx, ny, 4 * nx * ny if cn_n_bytes is None else cn_n_bytes)
    struct.pack_into(">i82s", h, 76, 1_700_000_000, b"synthetic")
    struct.pack_into(">6f", h, 164, intf, wl, 0.4, obliq, 50.0, lateral)
    struct.pack_into(">h", h, 218, phase_res)
    struct.pack_into(">5hH", h, 232, sign, nx, ny, 5, 0, 4242)
    struct.pack_into("12s", h, 246, objective)
    intensity = (np.arange(nx * ny * buckets) % 200).astype(">u2").tobytes()
    return bytes(h) + intensity + phase.tobytes()


def _phase(ny=5, nx=8, seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    p = 500 * xx - 200 * yy + rng.integers(-30, 30, (ny, nx))
    p[0, :] += 20_000  # ridge on the first stored row
    return p.astype(np.int32)


def _expected_um(phase, intf=0.5, wl=632.8e-9, obliq=1.0, r=32768, sign=0):
    z = phase.astype(float) * (intf * obliq * float(np.float32(wl)) / r) * 1e6 * (-1 if sign else 1)
    z[phase >= BAD_PHASE] = np.nan
    return z


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real():
    path = realfile("heightmaps", REAL)
    return path, pipeline.read(path), st_topography(path)


def test_real_shape_pixel_size_and_attrs(real):
    _path, da, t = real
    assert da.attrs["reader"] == "zygo_dat" and da.shape == (480, 640)
    for axis, i in (("x", 0), ("y", 1)):
        px = da.attrs["pixel_size_um"][axis]
        assert abs(px - SOURCES_PIXEL) <= HALF_DIGIT
        assert px == pytest.approx(t.physical_sizes[i] / t.nb_grid_pts[i] * UM[t.unit], rel=1e-9)
    assert "lateral_res" in da.attrs["pixel_size_source"] and da.attrs["vendor"] == "Zygo"
    assert "59407" in da.attrs["instrument"]
    h = da.attrs["header"]
    assert h["objective"] == "20X  Mirau" and h["wavelength_nm"] == pytest.approx(570.0, rel=1e-6)
    assert h["phase_res"] == 1 and h["phase_counts_per_fringe"] == 32768
    assert h["software_version"] == "8.1.5"


def test_real_invalid_fraction_and_raw_parameters(real):
    _, da, _ = real
    assert da.attrs["invalid_fraction"] == 0.0
    got = raw_stats(da.values)
    for k, ref in SOURCES_RAW.items():
        # surfalize's heights are 8x ours (see the module docstring)
        assert got[k] * SURFALIZE_FACTOR == pytest.approx(ref, rel=1e-3), k
    assert got["Sq"] == pytest.approx(0.07528822204734589, rel=1e-6)  # ST's own test value


def test_real_heights_match_surfacetopography(real):
    """Ours (y, x), row 0 = first stored row, equals ST's [x, y] array transposed."""
    _, da, t = real
    np.testing.assert_allclose(da.values, st_heights_um(t), rtol=1e-9, equal_nan=True)


# ---------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_header_formats_invalid_phase_and_orientation(tmp_path, fmt):
    phase = _phase()
    phase[1, 2] = BAD_PHASE
    phase[4, 7] = 2147483647
    p = tmp_path / f"f{fmt}.dat"
    p.write_bytes(dat_bytes(phase, fmt=fmt, buckets=2))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "zygo_dat" and da.attrs["header"]["header_format"] == fmt
    np.testing.assert_allclose(da.values, _expected_um(phase), rtol=1e-12, equal_nan=True)
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / phase.size)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(2.0)
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1])
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize("phase_res, r", [(0, 4096), (1, 32768), (2, 131072)])
def test_phase_resolution_and_sign(tmp_path, phase_res, r):
    phase = _phase()
    p = tmp_path / "r.dat"
    p.write_bytes(dat_bytes(phase, phase_res=phase_res, sign=1, intf=0.5, obliq=1.02))
    da = pipeline.read(p)
    want = _expected_um(phase, obliq=float(np.float32(1.02)), r=r, sign=1)
    np.testing.assert_allclose(da.values, want, rtol=1e-12)
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-9)


def test_unknown_lateral_resolution_is_missing_calibration(tmp_path):
    p = tmp_path / "nolat.dat"
    p.write_bytes(dat_bytes(_phase(), lateral=0.0))
    with pytest.raises(MissingCalibration, match="lateral_res is 0") as info:
        pipeline.read(p)
    assert info.value.exit_code == 3 and str(p) in str(info.value)


# ---------------------------------------------------------------- bad input


def test_wrong_magic_is_declined(tmp_path):
    p = tmp_path / "bad.dat"
    p.write_bytes(b"\x88\x1b\x03\x72" + dat_bytes(_phase())[4:])
    assert not ZygoDatReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_truncated_header(tmp_path):
    p = tmp_path / "short.dat"
    p.write_bytes(dat_bytes(_phase())[:600])
    assert_unreadable(p, r"truncated: MetroPro header format 1 needs bytes 0\.\.834")


def test_truncated_data(tmp_path):
    p = tmp_path / "cut.dat"
    p.write_bytes(dat_bytes(_phase())[:-3])
    assert_unreadable(p, r"truncated: MetroPro phase data")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lateral": float("nan")}, r"lateral_res is nan m; a pixel size must be finite and positive"),
        ({"lateral": -0.5}, r"lateral_res is -0\.5 m"),
        ({"header_size": 4096}, r"format 1 has 834 bytes but the header says 4096"),
        ({"header_format": 3}, r"magic says header format 1 but the header says 3"),
        ({"phase_res": 7}, r"phase_res is 7; 0, 1 or 2"),
        ({"cn_n_bytes": 12}, r"phase block declares 12 bytes but 8 x 5 int32"),
        ({"wl": 0.0}, r"wavelength_in is 0\.0"),
        ({"phase": np.zeros((0, 8), np.int32)}, r"phase block is 8 x 0: the file holds no height"),
    ],
)
def test_corrupt_header_fields(tmp_path, kwargs, match):
    phase = kwargs.pop("phase", _phase())
    p = tmp_path / "corrupt.dat"
    p.write_bytes(dat_bytes(phase, **kwargs))
    assert_unreadable(p, match)
