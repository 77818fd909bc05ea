"""Keyence VK4/VK6/VK7 readers, on bytes written field by field from the published layout and
read back both by our reader and by SurfaceTopography's (the oracle)."""

from __future__ import annotations

import struct
import warnings
import zipfile

import numpy as np
import pytest

import pipeline
from pipeline.errors import UnreadableInput
from pipeline.ingest.height.keyence_vk import INVALID_RULE, VK4Reader, VK6Reader
from tests.helpers import assert_unreadable, cli_json
from tests.ingest.height.vk4_writer import (
    OFFSET_NAMES,
    height_offset,
    vk4_bytes,
    vk6_bytes,
    zip_bytes,
)

X_PM, Y_PM, Z_PM = 138_900, 139_100, 100  # 0.1389 / 0.1391 um per pixel, 0.1 nm per digit
ROWS, COLS = 12, 17
INVALID = [(0, 0), (5, 7), (11, 16)]


def _counts(seed: int = 3) -> np.ndarray:
    """Raw counts: a tilted plane plus noise, row 0 clearly higher, some unmeasured (0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    c = 500_000 + 1_000 * xx - 2_000 * yy + rng.integers(0, 300, size=(ROWS, COLS))
    c[0, :] += 40_000  # a ridge along the top row to pin the orientation
    for r, k in INVALID:
        c[r, k] = 0
    return c.astype(np.uint32)


def _expected_um(counts: np.ndarray, z_pm: int = Z_PM) -> np.ndarray:
    z = counts.astype(np.float64) * z_pm * 1e-6
    z[counts == 0] = np.nan
    return z


@pytest.fixture
def vk4_file(tmp_path):
    p = tmp_path / "scan.vk4"
    p.write_bytes(vk4_bytes(_counts(), x_pm=X_PM, y_pm=Y_PM, z_pm=Z_PM))
    return p


def _topography_st(path):
    """SurfaceTopography's reading: heights (nx, ny) in pm, pixel convention."""
    with warnings.catch_warnings():  # NuMPI warns that mpi4py is absent
        warnings.simplefilter("ignore", ImportWarning)
        from SurfaceTopography import open_topography

    reader = open_topography(str(path))
    assert reader.format() == "vk"
    return reader.topography()


def test_vk4_heights_pixel_size_orientation_and_invalid(vk4_file):
    da = pipeline.read(vk4_file)
    counts = _counts()
    assert da.dims == ("y", "x") and da.shape == (ROWS, COLS)
    assert da.attrs["reader"] == "keyence_vk4" and da.attrs["format"] == "vk4"
    assert da.attrs["units"] == "um" and da.attrs["vendor"] == "Keyence"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.1389, rel=1e-12)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.1391, rel=1e-12)
    assert "x/y_length_per_pixel" in da.attrs["pixel_size_source"]
    np.testing.assert_allclose(da.values, _expected_um(counts), rtol=1e-12, equal_nan=True)
    assert [tuple(ij) for ij in np.argwhere(np.isnan(da.values))] == INVALID
    assert da.attrs["invalid_fraction"] == pytest.approx(len(INVALID) / (ROWS * COLS))
    # row 0 is the first row stored: the ridge is at the top
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1]) + 3.0
    # coordinates at pixel centres
    assert float(da.x[1] - da.x[0]) == pytest.approx(0.1389)
    assert float(da.y[0]) == pytest.approx(0.1391 / 2)


def test_vk4_header_fields_for_inspect(vk4_file):
    h = pipeline.read(vk4_file).attrs["header"]
    assert (h["image_width_px"], h["image_height_px"]) == (COLS, ROWS)
    assert h["pixel_size_x_um"] == pytest.approx(0.1389)
    assert h["pixel_size_y_um"] == pytest.approx(0.1391)
    assert h["z_length_per_digit_pm"] == Z_PM and h["z_per_digit_nm"] == pytest.approx(0.1)
    assert h["objective_magnification"] == pytest.approx(50.0)
    assert h["optical_zoom"] == pytest.approx(1.0)
    assert h["numerical_aperture"] == pytest.approx(0.95)
    assert h["date"] == "2024-03-14 15:09:26" and h["utc_offset_min"] == 540
    assert h["invalid_rule"] == INVALID_RULE and "0" in INVALID_RULE
    assert h["title"] == "electrode A1" and h["lens_name"] == "CF IC EPI Plan 50X"
    assert h["bit_depth"] == 32 and h["height_layers"] == 1
    rec = cli_json(["inspect", "--json", str(vk4_file)])
    assert rec["header"]["objective_magnification"] == pytest.approx(50.0)
    assert rec["header"]["date"] == "2024-03-14 15:09:26"
    assert rec["pixel_size_um"]["x"] == pytest.approx(0.1389)


def test_vk4_agrees_with_surfacetopography(vk4_file):
    da = pipeline.read(vk4_file)
    t = _topography_st(vk4_file)
    assert t.unit == "pm"
    assert tuple(t.nb_grid_pts) == (COLS, ROWS)  # ST indexes (x, y)
    # pixel size and physical size (ST: number of pixels x pixel size), pm -> um
    assert t.pixel_size[0] * 1e-6 == pytest.approx(da.attrs["pixel_size_um"]["x"], rel=1e-12)
    assert t.pixel_size[1] * 1e-6 == pytest.approx(da.attrs["pixel_size_um"]["y"], rel=1e-12)
    assert t.physical_sizes[0] * 1e-6 == pytest.approx(COLS * da.attrs["pixel_size_um"]["x"])
    assert t.physical_sizes[1] * 1e-6 == pytest.approx(ROWS * da.attrs["pixel_size_um"]["y"])
    st_um = np.asarray(t.heights()).T * 1e-6  # (x, y) -> (row, col); no flip in either
    valid = np.isfinite(da.values)
    np.testing.assert_allclose(da.values[valid], st_um[valid], rtol=1e-12)
    # the documented difference: ST keeps the unmeasured count 0 as a height of 0
    assert np.all(st_um[~valid] == 0.0) and (~valid).sum() == len(INVALID)


@pytest.mark.parametrize("magic", [b"VK6", b"VK7"])
def test_vk6_vk7_zip_wrapper(tmp_path, vk4_file, magic):
    p = tmp_path / f"scan.{magic.decode().lower()}"
    p.write_bytes(vk6_bytes(vk4_file.read_bytes(), magic=magic))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "keyence_vk6"
    assert da.attrs["format"] == magic.decode().lower()
    assert da.attrs["header"]["format_variant"] == magic.decode()
    assert da.attrs["header"]["container"].endswith("Vk4File")
    assert da.attrs["header"]["bmp_preview_bytes"] == 70
    np.testing.assert_allclose(da.values, _expected_um(_counts()), rtol=1e-12, equal_nan=True)
    t = _topography_st(p)  # the oracle reads the same wrapper
    valid = np.isfinite(da.values)
    np.testing.assert_allclose(da.values[valid], (np.asarray(t.heights()).T * 1e-6)[valid])


def test_bare_zip_with_vk4file_member(tmp_path, vk4_file):
    p = tmp_path / "scan.vk6"
    p.write_bytes(zip_bytes({"Vk4File": vk4_file.read_bytes()}))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "keyence_vk6" and da.shape == (ROWS, COLS)


def test_16bit_height_image(tmp_path):
    counts = (_counts() // 64).astype(np.uint16)
    counts[2, 3] = 0
    p = tmp_path / "s16.vk4"
    p.write_bytes(vk4_bytes(counts, x_pm=X_PM, y_pm=Y_PM, z_pm=10_000, bits=16))
    da = pipeline.read(p)
    assert da.attrs["header"]["bit_depth"] == 16
    np.testing.assert_allclose(da.values, _expected_um(counts, 10_000), rtol=1e-12, equal_nan=True)
    assert np.isnan(da.values[2, 3])


def test_sniffing_is_by_content(tmp_path, vk4_file):
    vk4 = vk4_file.read_bytes()
    head6 = vk6_bytes(vk4)[:4096]
    assert VK4Reader().can_open(vk4[:4096], tmp_path / "x.bin")
    assert not VK4Reader().can_open(head6, tmp_path / "x.vk4")
    assert VK6Reader().can_open(head6, tmp_path / "x.bin")
    assert not VK6Reader().can_open(vk4[:4096], tmp_path / "x.vk6")
    assert not VK6Reader().can_open(zip_bytes({"other.txt": b"x"})[:4096], tmp_path / "x.vk6")


# ---------------------------------------------------------------- bad input


def _patch_u32(buf: bytes, pos: int, value: int) -> bytes:
    b = bytearray(buf)
    struct.pack_into("<I", b, pos, value)
    return bytes(b)


def _table_pos(name: str) -> int:
    return 12 + 4 * OFFSET_NAMES.index(name)


def _good() -> bytes:
    return vk4_bytes(_counts(), x_pm=X_PM, y_pm=Y_PM, z_pm=Z_PM)


def _write(tmp_path, data: bytes, name: str = "bad.vk4"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_wrong_magic(tmp_path):
    p = _write(tmp_path, b"VK5_" + _good()[4:])
    assert_unreadable(p, "no reader recognises")
    with pytest.raises(UnreadableInput, match="magic is b'VK5_'"):
        VK4Reader().open(p)


def test_nonzero_file_type_is_refused(tmp_path):
    p = _write(tmp_path, _good()[:8] + b"\x01\x00\x00\x00" + _good()[12:])
    assert_unreadable(p, "unsupported VK4 variant")


def test_truncated_header(tmp_path):
    assert_unreadable(_write(tmp_path, _good()[:40]), "truncated: VK4 offset table")


def test_truncated_measurement_conditions(tmp_path):
    # the table points nowhere beyond byte 120 except to the blocks we cut away
    data = _good()
    for name in ("light1", "height1", "string_data"):
        data = _patch_u32(data, _table_pos(name), 0)
    assert_unreadable(_write(tmp_path, data[:200]), "truncated: VK4 measurement conditions")


def test_measurement_conditions_size_too_small(tmp_path):
    p = _write(tmp_path, _patch_u32(_good(), 84, 100))
    assert_unreadable(p, "measurement conditions block declares 100 bytes")


def test_offset_beyond_end(tmp_path):
    data = _good()
    p = _write(tmp_path, _patch_u32(data, _table_pos("height1"), len(data) + 1000))
    assert_unreadable(p, "'height1' points to byte .* beyond the end")


def test_truncated_height_data(tmp_path):
    data = _patch_u32(_good(), _table_pos("string_data"), 0)
    cut = height_offset(data) + 796 + 100
    assert_unreadable(_write(tmp_path, data[:cut]), "truncated: VK4 height image data")


def test_declared_image_larger_than_file(tmp_path):
    data = _good()
    off = height_offset(data)
    big_w, big_h = 4000, 3000
    data = _patch_u32(data, off, big_w)
    data = _patch_u32(data, off + 4, big_h)
    data = _patch_u32(data, off + 16, big_w * big_h * 4)
    assert_unreadable(_write(tmp_path, data), "truncated: VK4 height image data")


def test_byte_size_inconsistent_with_dimensions(tmp_path):
    data = vk4_bytes(_counts(), x_pm=X_PM, y_pm=Y_PM, z_pm=Z_PM, byte_size=123)
    assert_unreadable(_write(tmp_path, data), "declares 123 data bytes")


def test_absurd_dimensions(tmp_path):
    data = _good()
    data = _patch_u32(data, height_offset(data), 100_000)
    assert_unreadable(_write(tmp_path, data), "exceed the limit")


def test_bad_bit_depth(tmp_path):
    data = _good()
    assert_unreadable(
        _write(tmp_path, _patch_u32(data, height_offset(data) + 8, 12)), "bit depth 12"
    )


@pytest.mark.parametrize(
    "field, kw", [("x_length_per_pixel", {"x_pm": 0}), ("z_length_per_digit", {"z_pm": 0})]
)
def test_zero_scale(tmp_path, field, kw):
    args = {"x_pm": X_PM, "y_pm": Y_PM, "z_pm": Z_PM, **kw}
    p = _write(tmp_path, vk4_bytes(_counts(), **args))
    assert_unreadable(p, f"{field} = 0 pm")


def test_no_height_image(tmp_path):
    p = _write(tmp_path, _patch_u32(_good(), _table_pos("height1"), 0))
    assert_unreadable(p, "no height image")


def test_all_points_unmeasured(tmp_path):
    p = _write(tmp_path, vk4_bytes(np.zeros((4, 5), np.uint32), x_pm=X_PM, y_pm=Y_PM, z_pm=Z_PM))
    assert_unreadable(p, "no valid")


def test_vk6_zip_bomb_member(tmp_path):
    bomb = zip_bytes({"Vk4File": b"VK4_" + bytes(20_000_000)}, compression=zipfile.ZIP_BZIP2)
    p = _write(tmp_path, b"VK6" + struct.pack("<I", 0) + bomb, "bomb.vk6")
    assert_unreadable(p, "zip bomb")


def test_vk6_without_vk4_member(tmp_path):
    p = _write(tmp_path, b"VK6" + struct.pack("<I", 0) + zip_bytes({"Other": b"x"}), "x.vk6")
    assert_unreadable(p, "no member 'Vk4File'")


def test_vk6_truncated_zip(tmp_path, vk4_file):
    data = vk6_bytes(vk4_file.read_bytes())
    assert_unreadable(_write(tmp_path, data[: len(data) // 2], "cut.vk6"), "not a readable zip")


def test_vk6_with_corrupt_inner_stream(tmp_path):
    inner = _good()[:40]
    p = _write(tmp_path, vk6_bytes(inner, magic=b"VK7"), "inner.vk7")
    assert_unreadable(p, "in zip member 'Vk4File': file is truncated")
