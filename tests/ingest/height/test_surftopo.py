"""The optional SurfaceTopography fallback reader: SDF files made here read through
`pipeline.read`; units, mask and orientation match the native readers on real files; without
SurfaceTopography the reader declines and says why."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

import pipeline
from pipeline.errors import UnreadableInput
from pipeline.ingest.height.surftopo import (
    SUFFIX_FORMATS,
    SurfaceTopographyReader,
    _import_surftopo,
)
from tests.helpers import assert_unreadable, cli_json, realfile

DX_M, DY_M, DZ_M = 2.5e-7, 4.0e-7, 1.0e-9  # SDF scales are in metres
BAD = [(1, 2), (3, 0)]


def _heights_nm() -> np.ndarray:
    yy, xx = np.mgrid[0:4, 0:6]
    return (100.0 * xx + 10.0 * yy + 1000.0 * (yy == 0)).astype(np.float64)  # top row high


def _sdf_ascii(z_counts: np.ndarray, *, bad=BAD) -> bytes:
    rows, cols = z_counts.shape
    head = [
        "aISO-1.0", "ManufacID   = electrode-qc", "CreateDate  = 010120241200",
        "ModDate     = 010120241200", f"NumPoints   = {cols}", f"NumProfiles = {rows}",
        f"Xscale      = {DX_M:e}", f"Yscale      = {DY_M:e}", f"Zscale      = {DZ_M:e}",
        "Zresolution = -1", "Compression = 0", "DataType    = 7", "CheckType   = 0", "*",
    ]  # fmt: skip
    body = [
        " ".join("BAD" if (i, j) in bad else f"{v:.4f}" for j, v in enumerate(row))
        for i, row in enumerate(z_counts)
    ]
    return ("\n".join(head + body + ["*"]) + "\n").encode("ascii")


def _sdf_binary_int16(z_counts: np.ndarray, invalid: list[tuple[int, int]]) -> bytes:
    rows, cols = z_counts.shape
    data = z_counts.astype("<i2")
    for r, c in invalid:
        data[r, c] = -(2**15)  # the reserved invalid marker of signed 16-bit data
    head = struct.pack(
        "<8s10s12s12sHHddddBBB", b"bISO-1.0", b"eqc", b"010120241200", b"010120241200",
        cols, rows, DX_M, DY_M, DZ_M, -1.0, 0, 5, 0,
    )  # fmt: skip
    return head + data.tobytes()


def _expected_um(counts: np.ndarray, invalid) -> np.ndarray:
    z = counts * DZ_M * 1e6
    for r, c in invalid:
        z[r, c] = np.nan
    return z


def test_ascii_sdf_reads_through_pipeline(tmp_path):
    p = tmp_path / "map.sdf"
    p.write_bytes(_sdf_ascii(_heights_nm()))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "surftopo" and da.attrs["format"] == "sdf"
    assert da.attrs["pixel_size_source"] == "SurfaceTopography ISO 25178-71 SDF"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.25, rel=1e-12)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.40, rel=1e-12)
    assert da.shape == (4, 6)  # NumProfiles rows of NumPoints
    np.testing.assert_allclose(
        da.values, _expected_um(_heights_nm(), BAD), rtol=1e-9, equal_nan=True
    )
    assert da.attrs["invalid_fraction"] == pytest.approx(2 / 24)
    # the first profile is row 0 (top): the high row stays on top, nothing transposed
    assert np.nanmean(da.values[0]) > np.nanmean(da.values[1]) + 0.5
    assert da.attrs["header"]["surftopo_reader"] == "ISO 25178-71 SDF"


def test_binary_sdf_invalid_marker_becomes_nan(tmp_path):
    counts = _heights_nm()
    invalid = [(0, 0), (2, 5)]
    p = tmp_path / "map_bin.sdf"
    p.write_bytes(_sdf_binary_int16(counts, invalid))
    da = pipeline.read(p)
    np.testing.assert_allclose(da.values, _expected_um(counts, invalid), rtol=1e-9, equal_nan=True)


def test_only_listed_suffixes_with_their_signature(tmp_path):
    r = SurfaceTopographyReader()
    sdf = _sdf_ascii(_heights_nm())
    assert r.priority == 90 and r.available
    assert r.can_open(sdf[:4096], tmp_path / "a.sdf")
    assert not r.can_open(b"not an sdf file at all", tmp_path / "a.sdf")  # suffix alone: no
    for suffix in (".x3p", ".sur", ".plu", ".dat", ".al3d", ".zon", ".vk4", ".vk6", ".gwy",
                   ".csv", ".tif", ".txt"):  # fmt: skip
        assert suffix not in SUFFIX_FORMATS
        assert not r.can_open(sdf[:4096], tmp_path / f"a{suffix}")


def test_corrupt_sdf(tmp_path):
    p = tmp_path / "cut.sdf"
    p.write_bytes(_sdf_ascii(_heights_nm())[:-60])
    assert_unreadable(p, r"SurfaceTopography \(sdf\) cannot read it")


def test_without_surfacetopography_the_reader_declines(tmp_path, monkeypatch):
    p = tmp_path / "map.sdf"
    p.write_bytes(_sdf_ascii(_heights_nm()))
    monkeypatch.setitem(sys.modules, "SurfaceTopography", None)  # import now fails
    r = SurfaceTopographyReader()
    assert r.available is False
    assert not r.can_open(p.read_bytes()[:4096], p)
    assert "not installed" in r.expects
    with pytest.raises(
        UnreadableInput, match=r"the surftopo reader of \.sdf files needs SurfaceTopography, "
                               r"which is not installed .*pip install"
    ):
        pipeline.read(p)
    with pytest.raises(UnreadableInput, match="not installed"):
        r.open(p)
    rows = {row["name"]: row for row in cli_json(["formats", "--json"])}
    assert rows["surftopo"]["available"] is False


def _via_surftopo(path, fmt: str):
    """Our conversion applied to SurfaceTopography's own reading of a natively read format."""
    st = _import_surftopo()
    reader = st.open_topography(str(path), format=fmt)
    channel = reader.default_channel
    return SurfaceTopographyReader._dataarray(path, reader, channel, reader.topography())


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, fmt, module, cls",
    [
        ("surftopo_x3p-2.x3p", "x3p", "x3p", "X3PReader"),
        ("opengps_KautschukInfiniteFocus.x3p", "x3p", "x3p", "X3PReader"),
        ("surfalize_test_uncompressed.sur", "sur", "sur", "SurReader"),
    ],
)
def test_units_mask_and_orientation_match_native_readers(name, fmt, module, cls):
    path = realfile("heightmaps", name)
    native_mod = pytest.importorskip(f"pipeline.ingest.height.{module}")
    native = getattr(native_mod, cls)().open(path)
    ours = _via_surftopo(path, fmt)
    assert ours.shape == native.shape
    for axis in ("x", "y"):
        assert ours.attrs["pixel_size_um"][axis] == pytest.approx(
            native.attrs["pixel_size_um"][axis], rel=1e-9
        )
    np.testing.assert_array_equal(np.isnan(ours.values), np.isnan(native.values))
    diff = ours.values - native.values
    # same orientation and scale; a constant z offset is allowed (SUR stores one)
    offset = np.nanmedian(diff)
    assert np.nanmax(np.abs(diff - offset)) < 1e-6 * np.nanmax(np.abs(native.values))
    flipped = np.flipud(ours.values) - native.values
    assert np.nanmax(np.abs(flipped - np.nanmedian(flipped))) > 1e-3  # the check can fail


def test_native_formats_stay_with_native_readers():
    path = realfile("heightmaps", "surfalize_test_uncompressed.sur")
    assert _import_surftopo().open_topography(str(path)).format() == "sur"  # ST could read it
    assert pipeline.read(path).attrs["reader"] != "surftopo"
