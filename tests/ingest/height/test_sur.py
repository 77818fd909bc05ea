"""Digital Surf SUR reader: the real MountainsMap file against SOURCES.md and SurfaceTopography,
synthetic files (16/32 bit, non-measured points, inversion, compression, multi-object) written
field by field here, and every bad-input path."""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest

import pipeline
from pipeline.ingest.height.sur import SurReader
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.oracles import UM, raw_stats, st_heights_um, st_topography

REAL = "surfalize_test_uncompressed.sur"
# SOURCES.md, raw (no levelling), surfalize 0.19.2; micrometres.
SOURCES_RAW = {"Sa": 0.09733, "Sq": 0.1191, "Sz": 0.6265, "Sp": 0.3292, "Sv": 0.2973}
SOURCES_PIXEL = {"x": (0.01957, 0.000005), "y": (0.01958, 0.000005)}  # value, half last digit

_HEADER = (
    "<12sHHHH30s30sHHHHHf4xHiiiiIfff" + "16s" * 9 + "fffHHH12xHHHHHHHfI6xHH128sfffff13s13s"
)


def sur_object(raw, *, magic=b"DIGITAL SURF", bits=32, dx=1e-3, dy=2e-3, dz=1e-5, unit=b"mm",
               offset_z=0.0, special=0, zmin=None, zmax=None, inversion=0, comment=b"",
               private=b"", studiable=2, n_objects=1, n_points=None, data=None,
               compressed_size=0, fmt=0) -> bytes:  # fmt: skip
    """One SUR object: 512-byte header, comment, private zone, then `data` or the raw ints."""
    raw = np.asarray(raw)
    ny, nx = raw.shape
    zmin = int(raw.min()) if zmin is None else zmin
    zmax = int(raw.max()) if zmax is None else zmax
    header = struct.pack(
        _HEADER, magic, fmt, n_objects, 1, studiable, b"test object", b"", 0, 6, 0, special, 1,
        0.0, bits, zmin, zmax, nx, ny, nx * ny if n_points is None else n_points, dx, dy, dz,
        b"X", b"Y", b"Z", unit, unit, unit, unit, unit, unit, 1.0, 1.0, 1.0, 0, inversion, 0,
        5, 4, 3, 2, 1, 2024, 0, 0.0, compressed_size, len(comment), len(private), b"",
        0.0, 0.0, offset_z, 0.0, 0.0, b"", b"",
    )  # fmt: skip
    assert len(header) == 512
    if data is None:
        data = raw.astype("<i2" if bits == 16 else "<i4").tobytes()
    return header + comment + private + data


def compressed_block(payload: bytes, n_streams: int = 2) -> bytes:
    cuts = np.linspace(0, len(payload), n_streams + 1).astype(int)
    parts = [payload[a:b] for a, b in itertools.pairwise(cuts)]
    zipped = [zlib.compress(p) for p in parts]
    table = b"".join(struct.pack("<2I", len(p), len(z)) for p, z in zip(parts, zipped))
    return struct.pack("<I", n_streams) + table + b"".join(zipped)


def _ramp(ny=6, nx=9, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    return (1000 * xx - 300 * yy + rng.integers(-50, 50, size=(ny, nx))).astype(np.int32)


# ---------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real():
    path = realfile("heightmaps", REAL)
    return path, pipeline.read(path), st_topography(path)


def test_real_shape_pixel_size_and_attrs(real):
    _path, da, t = real
    assert da.attrs["reader"] == "sur" and da.attrs["format"] == "sur"
    assert da.shape == (512, 512)
    px = da.attrs["pixel_size_um"]
    for axis, i in (("x", 0), ("y", 1)):
        value, half = SOURCES_PIXEL[axis]
        assert abs(px[axis] - value) <= half
        st_px = t.physical_sizes[i] / t.nb_grid_pts[i] * UM[t.unit]
        assert px[axis] == pytest.approx(st_px, rel=1e-9)
    assert px["x"] != px["y"]  # genuinely non-square, as SOURCES.md notes
    assert "spacing_x/spacing_y" in da.attrs["pixel_size_source"]
    assert da.attrs["vendor"] == "Digital Surf"
    h = da.attrs["header"]
    assert h["comment"] == "China CD stamper bbw" and h["object_name"] == "* DVD *"
    assert h["step_unit_z"] == "mm" and h["variant"] == "uncompressed"


def test_real_invalid_fraction_and_raw_parameters(real):
    _, da, _ = real
    assert da.attrs["invalid_fraction"] == 0.0 and not np.isnan(da.values).any()
    got = raw_stats(da.values)
    for k, ref in SOURCES_RAW.items():
        assert got[k] == pytest.approx(ref, rel=1e-3), k


def test_real_heights_match_surfacetopography(real):
    """Ours (y, x), row 0 = first stored line, equals ST's [x, y] array transposed. ST leaves
    out the header's z offset (-1.47e-5 mm), which we add as Gwyddion and surfalize do."""
    _, da, t = real
    offset_um = da.attrs["header"]["offset_z"] * 1e3
    assert offset_um == pytest.approx(-0.014725, rel=1e-3)
    np.testing.assert_allclose(da.values, st_heights_um(t) + offset_um, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- synthetic files


def test_16bit_special_points_and_inversion_match_surfacetopography(tmp_path):
    raw = _ramp().astype(np.int16)
    zmin = int(raw.min())
    raw[2, 3] = raw[4, 0] = zmin - 2  # non-measured marker
    p = tmp_path / "s16.sur"
    p.write_bytes(sur_object(raw, bits=16, zmin=zmin, special=1, inversion=1, dz=2e-5))
    da = pipeline.read(p)
    expected = -(raw.astype(float) * 2e-5 * 1e3)
    expected[2, 3] = expected[4, 0] = np.nan
    np.testing.assert_allclose(da.values, expected, rtol=1e-6, equal_nan=True)
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / raw.size)
    assert da.attrs["pixel_size_um"] == {"x": pytest.approx(1.0), "y": pytest.approx(2.0)}
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("inversion, flip", [(2, (slice(None), slice(None, None, -1))),
                                             (3, (slice(None, None, -1), slice(None)))])
def test_inversion_mirrors_as_surfacetopography(tmp_path, inversion, flip):
    raw = _ramp()
    p = tmp_path / f"inv{inversion}.sur"
    p.write_bytes(sur_object(raw, inversion=inversion))
    da = pipeline.read(p)
    np.testing.assert_allclose(da.values, -(raw * 1e-5 * 1e3)[flip], rtol=1e-6)
    np.testing.assert_allclose(da.values, st_heights_um(st_topography(p)), rtol=1e-6)


def test_offset_micro_units_comment_and_private_zone(tmp_path):
    raw = _ramp()
    p = tmp_path / "um.sur"
    # the MS-DOS micro sign (0xE6) that old files write; comment and private zone skipped
    p.write_bytes(sur_object(raw, unit=b"\xe6m", dx=0.25, dy=0.5, dz=0.001, offset_z=7.0,
                             comment=b"hello", private=b"\x01" * 33))  # fmt: skip
    da = pipeline.read(p)
    np.testing.assert_allclose(da.values, raw * 0.001 + 7.0, rtol=1e-6)
    assert da.attrs["pixel_size_um"]["x"] == 0.25 and da.attrs["header"]["comment"] == "hello"


def test_compressed_equals_plain(tmp_path):
    raw = _ramp(ny=40, nx=33)
    plain, packed = tmp_path / "plain.sur", tmp_path / "packed.sur"
    plain.write_bytes(sur_object(raw))
    block = compressed_block(raw.astype("<i4").tobytes(), n_streams=3)
    packed.write_bytes(sur_object(raw, magic=b"DSCOMPRESSED", data=block, compressed_size=len(block)))
    a, b = pipeline.read(plain), pipeline.read(packed)
    assert b.attrs["reader"] == "sur" and b.attrs["header"]["variant"].startswith("compressed")
    np.testing.assert_array_equal(a.values, b.values)


def test_multi_object_file_reads_the_first(tmp_path):
    first, second = _ramp(seed=1), _ramp(seed=2) * 7
    p = tmp_path / "multi.sur"
    p.write_bytes(sur_object(first, n_objects=2, studiable=8) + sur_object(second, n_objects=2, studiable=8))
    da = pipeline.read(p)
    assert da.attrs["header"]["n_objects"] == 2
    np.testing.assert_allclose(da.values, first * 1e-5 * 1e3, rtol=1e-6)


# ---------------------------------------------------------------- bad input


def test_wrong_magic_is_declined(tmp_path):
    p = tmp_path / "bad.sur"
    p.write_bytes(sur_object(_ramp(), magic=b"DIGITAL SURD"))
    assert not SurReader().can_open(p.read_bytes()[:4096], p)
    assert_unreadable(p, "no reader recognises")


def test_truncated_header(tmp_path):
    p = tmp_path / "short.sur"
    p.write_bytes(sur_object(_ramp())[:300])
    assert_unreadable(p, r"truncated: SUR object header")


def test_truncated_data(tmp_path):
    p = tmp_path / "cut.sur"
    p.write_bytes(sur_object(_ramp())[:-10])
    assert_unreadable(p, r"truncated: SUR height data")


def test_truncated_compressed_stream(tmp_path):
    raw = _ramp(ny=20, nx=20)
    block = compressed_block(raw.astype("<i4").tobytes(), n_streams=1)
    p = tmp_path / "cutz.sur"
    p.write_bytes(sur_object(raw, magic=b"DSCOMPRESSED", data=block)[:-20])
    assert_unreadable(p, r"truncated: SUR compressed stream 0")


def test_corrupt_compressed_stream(tmp_path):
    raw = _ramp(ny=20, nx=20)
    block = bytearray(compressed_block(raw.astype("<i4").tobytes(), n_streams=1))
    block[20:30] = b"\xff" * 10
    p = tmp_path / "badz.sur"
    p.write_bytes(sur_object(raw, magic=b"DSCOMPRESSED", data=bytes(block)))
    assert_unreadable(p, r"SUR compressed stream 0 (is corrupt|inflates)")


@pytest.mark.parametrize("n_x, n_y", [(0, 6), (9, -3)])
def test_zero_or_negative_dimensions(tmp_path, n_x, n_y):
    buf = bytearray(sur_object(_ramp()))
    struct.pack_into("<ii", buf, 108, n_x, n_y)  # points per line, lines (header bytes 108..116)
    p = tmp_path / "dims.sur"
    p.write_bytes(bytes(buf))
    assert_unreadable(p, rf"dimensions {n_y} x {n_x} are not positive")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dx": 0.0}, r"spacing_x is 0\.0; a pixel size must be finite and positive"),
        ({"dy": float("nan")}, r"spacing_y is nan"),
        ({"dx": -1.0}, r"spacing_x is -1\.0"),
        ({"dz": float("inf")}, r"spacing_z is inf"),
        ({"n_points": 7}, r"declares 7 points but"),
        ({"bits": 8}, r"8 bits per point; 16 or 32"),
        ({"unit": b"furlong"}, r"'furlong', not a known length unit"),
        ({"studiable": 12}, r"studiable type 12 \(RGB image\) holds no height map"),
        ({"fmt": 257}, r"unsupported SUR variant: format 257"),
    ],
)
def test_corrupt_header_fields(tmp_path, kwargs, match):
    p = tmp_path / "corrupt.sur"
    p.write_bytes(sur_object(_ramp(), **kwargs))
    assert_unreadable(p, match)
