"""X3P (ISO 25178-72 / ISO 5436-2) reader: real files, hand-made files, every refusal."""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.height.x3p import X3PReader
from tests.helpers import assert_unreadable, realfile

NS = "http://www.opengps.eu/2008/ISO5436_2"


# --------------------------------------------------------------------------- builders


def axis(name: str, axis_type: str = "I", dtype: str = "D", inc: str | None = "1e-6",
         off: str | None = "0") -> str:
    parts = [f"<AxisType>{axis_type}</AxisType>", f"<DataType>{dtype}</DataType>"]
    if inc is not None:
        parts.append(f"<Increment>{inc}</Increment>")
    if off is not None:
        parts.append("<Offset/>" if off == "" else f"<Offset>{off}</Offset>")
    return f"<{name}>{''.join(parts)}</{name}>"


def main_xml(*, nx: int, ny: int, nz: int = 1, feature: str = "SUR", cx: str | None = None,
             cy: str | None = None, cz: str | None = None, data: str | None = None,
             record2: str = "", doctype: str = "", record3_extra: str = "") -> bytes:
    cx = cx or axis("CX")
    cy = cy or axis("CY")
    cz = cz or axis("CZ", "A", "D", None, None)
    if data is None:
        data = "<DataLink><PointDataLink>bindata/data.bin</PointDataLink></DataLink>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}'
        f'<p:ISO5436_2 xmlns:p="{NS}"><Record1><Revision>ISO5436 - 2000</Revision>'
        f"<FeatureType>{feature}</FeatureType><Axes>{cx}{cy}{cz}</Axes></Record1>{record2}"
        f"<Record3><MatrixDimension><SizeX>{nx}</SizeX><SizeY>{ny}</SizeY><SizeZ>{nz}</SizeZ>"
        f"</MatrixDimension>{data}{record3_extra}</Record3>"
        "<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4></p:ISO5436_2>"
    ).encode()


def write_x3p(path: Path, xml: bytes, members: dict[str, bytes] | None = None, *,
              prefix: str = "", md5: bool = True, level: int = 6) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        zf.writestr(prefix + "main.xml", xml)
        if md5:
            zf.writestr(prefix + "md5checksum.hex",
                        f"{hashlib.md5(xml).hexdigest()} *main.xml\n")
        for name, blob in (members or {}).items():
            zf.writestr(prefix + name, blob)
    return path


def surface(tmp_path: Path, z_m: np.ndarray, *, dtype: str = "D", name: str = "s.x3p",
            **kw) -> Path:
    ny, nx = z_m.shape
    xml = main_xml(nx=nx, ny=ny, cz=axis("CZ", "A", dtype, None, None), **kw)
    np_dtype = {"F": "<f4", "D": "<f8"}[dtype]
    return write_x3p(tmp_path / name, xml, {"bindata/data.bin": z_m.astype(np_dtype).tobytes()})


def read(path: Path):
    head = path.read_bytes()[:4096]
    assert X3PReader().can_open(head, path)
    return X3PReader().open(path)


def height_params(z: np.ndarray) -> dict[str, float]:
    """Raw Sa, Sq, Sp, Sv, Sz on the valid points, plain numpy (no levelling)."""
    v = z[np.isfinite(z)]
    m = v.mean()
    sp, sv = v.max() - m, m - v.min()
    return {"Sa": np.abs(v - m).mean(), "Sq": np.sqrt(np.mean((v - m) ** 2)),
            "Sp": sp, "Sv": sv, "Sz": sp + sv}


def ref_tolerance(ref: str) -> float:
    """SOURCES.md values carry 4 significant digits: 0.1 % relative or half a unit of the
    last digit, whichever is larger (for 4 significant digits the 0.1 % always wins)."""
    decimals = len(ref.split(".")[1]) if "." in ref else 0
    return max(1e-3 * abs(float(ref)), 0.5 * 10.0**-decimals)


def surftopo_heights_um(path: Path) -> np.ndarray:
    """SurfaceTopography's reading (oracle), as (y, x) micrometres with NaN for masked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)  # NuMPI: no mpi4py, stub used
        st = pytest.importorskip("SurfaceTopography")
        topo = st.open_topography(str(path)).topography()
        h = topo.heights()
    assert topo.unit == "m"
    return np.ma.filled(np.ma.asarray(h).astype(np.float64), np.nan).T * 1e6


# --------------------------------------------------------------------------- real files

REAL = {
    # name: (shape, (dx_um, dy_um) from main.xml, NaN fraction, raw valid-points references)
    "surftopo_x3p-2.x3p": (
        (650, 650), (0.127656509837346, 0.314582113527746), "0",
        {"Sa": "0.06195", "Sq": "0.07728", "Sz": "0.5543", "Sp": "0.2424", "Sv": "0.3119"},
    ),
    "x3ptools_sample-land.x3p": (
        (256, 918), (2.58, 2.58), "0.1076",
        {"Sa": "29.84", "Sq": "34.33", "Sz": "132.0", "Sp": "53.03", "Sv": "78.94"},
    ),
    "opengps_KautschukInfiniteFocus.x3p": (
        (634, 860), (2.279984215, 2.279794519), "0.0097",
        {"Sa": "2.705", "Sq": "3.399", "Sz": "25.68", "Sp": "16.08", "Sv": "9.609"},
    ),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_shape_pixel_size_and_raw_heights(name):
    shape, (dx, dy), nan_ref, refs = REAL[name]
    da = read(realfile("heightmaps", name))
    assert da.shape == shape
    assert da.dtype == np.float64 and da.attrs["units"] == "um"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(dx, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(dy, rel=1e-6)
    # SOURCES.md gives the NaN share in percent with 2 decimals: half a unit is 5e-5.
    nan_frac = float(np.isnan(da.values).mean())
    assert nan_frac == pytest.approx(float(nan_ref), abs=5e-5)
    assert da.attrs["invalid_fraction"] == pytest.approx(nan_frac, abs=1e-12)
    got = height_params(da.values)
    for key, ref in refs.items():
        assert got[key] == pytest.approx(float(ref), abs=ref_tolerance(ref)), key


@pytest.mark.realdata
def test_real_file_metadata_from_record2():
    da = read(realfile("heightmaps", "x3ptools_sample-land.x3p"))
    h = da.attrs["header"]
    assert da.attrs["vendor"] == "Sensofar" and da.attrs["instrument"] == "Sneox1"
    assert h["instrument.serial"] == "350262016"
    assert h["creator"] == "CSAFE, Connor Hegenreter"
    assert h["date"] == "2018-09-15T17:46:09"
    assert h["probing_system.identification"] == "Nikon - EPI 20X"
    assert h["CZ.Offset"] == 0.0  # the file's empty <Offset/>
    assert h["zip_prefix"] == "sample-land" and h["md5_main_xml"] == "ok"
    assert "pixel_size_source" in da.attrs and "CX.Increment" in da.attrs["pixel_size_source"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["surftopo_x3p-2.x3p", "opengps_KautschukInfiniteFocus.x3p"])
def test_matches_surfacetopography_transposed(name):
    """ST indexes heights [x, y]; transposed, its array equals ours value for value, with the
    same unmeasured points: ST keeps the stored row order, as we do."""
    path = realfile("heightmaps", name)
    ours = read(path).values
    theirs = surftopo_heights_um(path)
    assert theirs.shape == ours.shape
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(ours))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0, equal_nan=True)
    # The comparison can tell the two orientations apart.
    assert np.nanmax(np.abs(ours - theirs[::-1])) > 0.1


@pytest.mark.realdata
def test_sample_land_repacked_matches_surfacetopography(tmp_path):
    """ST cannot read sample-land as shipped (sub-folder, empty <Offset/>); repacked to the zip
    root with the Offset filled in, it reads the same values as we do from the original."""
    src = realfile("heightmaps", "x3ptools_sample-land.x3p")
    with zipfile.ZipFile(src) as zin:
        xml = zin.read("sample-land/main.xml").replace(b"<Offset/>", b"<Offset>0</Offset>")
        blob = zin.read("sample-land/bindata/data.bin")
    fixed = write_x3p(tmp_path / "root.x3p", xml, {"bindata/data.bin": blob})
    ours = read(src).values
    np.testing.assert_allclose(ours, surftopo_heights_um(fixed), rtol=1e-12, equal_nan=True)


@pytest.mark.realdata
def test_row_orientation_agrees_with_x3ptools_mask_image():
    """x3ptools stores an annotation image (mask.png, row 0 = top) in sample-land. Its
    "break-off" region (bottom rows) is where the scan lost points: 43 % NaN in our
    orientation, under 1 % if the rows were flipped. So the first stored row is the top."""
    pil = pytest.importorskip("PIL.Image")
    path = realfile("heightmaps", "x3ptools_sample-land.x3p")
    with zipfile.ZipFile(path) as zf:
        rgb = np.asarray(pil.open(io.BytesIO(zf.read("sample-land/bindata/mask.png")))
                         .convert("RGB"))
    z = read(path).values
    assert rgb.shape[:2] == z.shape
    breakoff = np.all(rgb == (0x1F, 0x37, 0x6C), axis=-1)
    assert breakoff.sum() > 10_000
    assert np.isnan(z)[breakoff].mean() > 0.3
    assert np.isnan(z[::-1])[breakoff].mean() < 0.05


# --------------------------------------------------------------------------- hand-made files


def test_x_index_is_fastest_and_pixels_non_square(tmp_path):
    xml = main_xml(nx=3, ny=2, cx=axis("CX", inc="0.5e-6"), cy=axis("CY", inc="2e-6"))
    raw = np.array([1, 2, 3, 4, 5, 6], "<f8") * 1e-6  # stored order: x fastest
    da = read(write_x3p(tmp_path / "o.x3p", xml, {"bindata/data.bin": raw.tobytes()}))
    np.testing.assert_allclose(da.values, [[1, 2, 3], [4, 5, 6]], rtol=1e-12)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.5, "y": 2.0}, rel=1e-12)
    np.testing.assert_allclose(da["x"].values, [0.25, 0.75, 1.25])
    np.testing.assert_allclose(da["y"].values, [1.0, 3.0])


@pytest.mark.parametrize("code,np_dtype", [("I", "<i2"), ("L", "<i4")])
def test_integer_heights_use_cz_increment_and_offset(tmp_path, code, np_dtype):
    raw = np.array([[-2, 0, 5], [7, -300, 1000]], np_dtype)
    cz = axis("CZ", "A", code, inc="1e-9", off="1e-6")  # 1 nm per count, +1 um
    xml = main_xml(nx=3, ny=2, cz=cz)
    da = read(write_x3p(tmp_path / f"{code}.x3p", xml, {"bindata/data.bin": raw.tobytes()}))
    np.testing.assert_allclose(da.values, raw * 1e-3 + 1.0, rtol=1e-12)


def test_float32_nan_is_unmeasured(tmp_path):
    z = np.array([[1.0, np.nan], [np.nan, 4.0]]) * 1e-6
    da = read(surface(tmp_path, z, dtype="F"))
    np.testing.assert_array_equal(np.isnan(da.values), [[False, True], [True, False]])
    assert da.values[1, 1] == pytest.approx(4.0, rel=1e-6)  # float32 resolution
    assert da.attrs["invalid_fraction"] == pytest.approx(0.5)


def test_valid_points_bits_are_lsb_first(tmp_path):
    # 0x95 = 1001 0101: points 0, 2, 4, 7 valid; 0xFD: point 8 valid, 9 invalid.
    raw = np.arange(10, dtype="<i4")
    xml = main_xml(nx=5, ny=2, cz=axis("CZ", "A", "L", inc="1e-6", off="0"), data=(
        "<DataLink><PointDataLink>bindata/data.bin</PointDataLink>"
        "<ValidPointsLink>bindata/valid.bin</ValidPointsLink></DataLink>"))
    path = write_x3p(tmp_path / "v.x3p", xml, {"bindata/data.bin": raw.tobytes(),
                                               "bindata/valid.bin": bytes([0x95, 0xFD])})
    da = read(path)
    expected_nan = np.zeros(10, bool)
    expected_nan[[1, 3, 5, 6, 9]] = True
    np.testing.assert_array_equal(np.isnan(da.values).ravel(), expected_nan)
    np.testing.assert_allclose(da.values.ravel()[~expected_nan], raw[~expected_nan])
    assert da.attrs["header"]["valid_points_link"] == "bindata/valid.bin"


def test_lenient_layout_subfolder_macosx_no_md5_empty_offset_mask(tmp_path):
    """What x3ptools writes: everything under a folder, resource forks, no md5, <Offset/>."""
    xml = main_xml(nx=2, ny=2, cz=axis("CZ", "A", "D", inc="1", off=""),
                   record3_extra="<Mask><Background>#cd7f32</Background></Mask>",
                   record2="<Record2><Creator>me</Creator><Instrument><Manufacturer>ACME"
                           "</Manufacturer><Model>M1</Model><Serial>7</Serial><Version>2"
                           "</Version></Instrument></Record2>")
    path = tmp_path / "land.x3p"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("land/", b"")
        zf.writestr("__MACOSX/land/._main.xml", b"\x00\x05\x16\x07junk")
        zf.writestr("__MACOSX/._land", b"junk")
        zf.writestr("land/main.xml", xml)
        zf.writestr("land/bindata/.DS_Store", b"\x00" * 64)
        zf.writestr("land/bindata/data.bin", (np.array([1.0, 2, 3, 4]) * 1e-6).tobytes())
    da = read(path)
    np.testing.assert_allclose(da.values, [[1, 2], [3, 4]], rtol=1e-12)
    h = da.attrs["header"]
    assert h["md5_main_xml"] == "absent" and h["zip_prefix"] == "land"
    assert da.attrs["vendor"] == "ACME" and da.attrs["instrument"] == "M1"
    assert h["creator"] == "me" and h["instrument.version"] == "2"


def test_md5_mismatch_is_logged_not_fatal(tmp_path, caplog):
    xml = main_xml(nx=2, ny=1)
    path = tmp_path / "m.x3p"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("main.xml", xml)
        zf.writestr("md5checksum.hex", "0" * 32 + " *main.xml\n")
        zf.writestr("bindata/data.bin", struct.pack("<2d", 1e-6, 2e-6))
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.height.x3p"):
        da = read(path)
    assert da.attrs["header"]["md5_main_xml"] == "mismatch"
    assert "md5checksum.hex does not match" in caplog.text


def test_inline_datalist_with_empty_datum(tmp_path):
    datums = "".join(f"<Datum>{v}</Datum>" for v in ("1e-6", "", "3e-6", "4.5e-6"))
    xml = main_xml(nx=2, ny=2, data=f"<DataList>{datums}</DataList>")
    da = read(write_x3p(tmp_path / "dl.x3p", xml))
    np.testing.assert_allclose(da.values, [[1, np.nan], [3, 4.5]], rtol=1e-12)
    assert da.attrs["header"]["data_link"] == "inline DataList"


def test_profile_feature_type_reads_as_one_row(tmp_path):
    z = np.array([[0.0, 1.0, 0.5, 2.0]]) * 1e-6
    da = read(surface(tmp_path, z, feature="PRF"))
    assert da.shape == (1, 4)
    np.testing.assert_allclose(da.values, z * 1e6, rtol=1e-12)


def test_can_open_declines_other_zips_and_non_zips(tmp_path):
    r = X3PReader()
    plux = tmp_path / "a.plux"
    with zipfile.ZipFile(plux, "w") as zf:
        zf.writestr("index.xml", "<xml/>")
    other = tmp_path / "b.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("main.xml", "<project><name>not a surface</name></project>")
    tif = tmp_path / "c.tif"
    tif.write_bytes(b"II*\x00" + b"\x00" * 100)
    for p in (plux, other, tif):
        assert not r.can_open(p.read_bytes()[:4096], p), p.name


# --------------------------------------------------------------------------- refusals

XXE = '<!DOCTYPE p:ISO5436_2 [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
LAUGHS = '<!DOCTYPE p:ISO5436_2 [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'


@pytest.mark.parametrize("doctype", [XXE, LAUGHS], ids=["external-entity", "entity-expansion"])
def test_xml_with_dtd_entities_is_refused(tmp_path, doctype):
    xml = main_xml(nx=1, ny=1, doctype=doctype,
                   record2="<Record2><Comment>&xxe;&b;</Comment></Record2>")
    path = write_x3p(tmp_path / "xxe.x3p", xml, {"bindata/data.bin": b"\x00" * 8})
    err = assert_unreadable(path, r"main\.xml uses XML that is refused as unsafe")
    assert "DTD" in err.problem or "Entit" in err.problem


def test_malformed_xml(tmp_path):
    path = write_x3p(tmp_path / "bad.x3p", b"<p:ISO5436_2 xmlns:p='x'><Record1>", {})
    assert_unreadable(path, r"main\.xml is not well-formed XML")


@pytest.mark.parametrize("value, match", [
    (0.0, r"no height data \(the block is constant: an interrupted copy\?\)"),
    (3e-6, r"no height data \(the block is constant"),
    (np.nan, r"height map has no valid point"),
])
def test_trivially_compressible_grid_is_judged_by_content_not_ratio(tmp_path, value, match):
    # a data member of exactly the grid's size that deflates beyond the ratio limit: an
    # all-zero, constant or all-NaN block, refused for what it holds, not as a "zip bomb"
    from pipeline.ingest.limits import MAX_ZIP_RATIO

    n = 1024
    xml = main_xml(nx=n, ny=n)
    path = write_x3p(tmp_path / "flat.x3p", xml,
                     {"bindata/data.bin": np.full(n * n, value, "<f8").tobytes()}, level=9)
    info = zipfile.ZipFile(path).getinfo("bindata/data.bin")
    assert info.file_size / info.compress_size > 2 * MAX_ZIP_RATIO  # the premise of the test
    err = assert_unreadable(path, match)
    assert "zip bomb" not in str(err)


def _opened_members(monkeypatch) -> list[str]:
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def test_data_member_far_beyond_the_grid_is_refused_before_inflating(tmp_path, monkeypatch):
    xml = main_xml(nx=4, ny=4)  # the grid needs 128 bytes
    path = write_x3p(tmp_path / "bomb.x3p", xml,
                     {"bindata/data.bin": bytes(16 * 1024**2)}, level=9)
    info = zipfile.ZipFile(path).getinfo("bindata/data.bin")
    assert info.file_size / info.compress_size > 1000
    opened = _opened_members(monkeypatch)
    assert_unreadable(path, r"holds 16777216 bytes; SizeX\*SizeY\*itemsize = 4\*4\*8 = 128")
    assert "bindata/data.bin" not in opened


def test_member_beyond_the_grid_keeps_the_ratio_limit(tmp_path, monkeypatch):
    # valid.bin needs 2 bytes for 16 points; one declaring a megabyte that deflates
    # a thousand-fold is still a bomb, refused before it is inflated
    xml = main_xml(nx=4, ny=4, data=(
        "<DataLink><PointDataLink>bindata/data.bin</PointDataLink>"
        "<ValidPointsLink>bindata/valid.bin</ValidPointsLink></DataLink>"))
    z = np.arange(16, dtype="<f8") * 1e-6
    path = write_x3p(tmp_path / "vbomb.x3p", xml, {"bindata/data.bin": z.tobytes(),
                                                    "bindata/valid.bin": bytes(1024**2)},
                     level=9)
    opened = _opened_members(monkeypatch)
    assert_unreadable(path, r"zip member 'bindata/valid\.bin' expands \d+-fold .* zip bomb")
    assert "bindata/valid.bin" not in opened


def test_all_valid_mask_of_a_large_map_is_not_a_bomb(tmp_path):
    # an all-ones valid.bin deflates some 800-fold: bounded by the grid, it is read
    n = 1024
    xml = main_xml(nx=n, ny=n, data=(
        "<DataLink><PointDataLink>bindata/data.bin</PointDataLink>"
        "<ValidPointsLink>bindata/valid.bin</ValidPointsLink></DataLink>"))
    z = np.random.default_rng(0).normal(0.0, 1e-6, n * n)
    path = write_x3p(tmp_path / "ok.x3p", xml, {"bindata/data.bin": z.tobytes(),
                                                 "bindata/valid.bin": b"\xff" * (n * n // 8)})
    info = zipfile.ZipFile(path).getinfo("bindata/valid.bin")
    assert info.file_size / info.compress_size > 250  # the premise of the test
    da = read(path)
    assert da.attrs["invalid_fraction"] == 0.0
    np.testing.assert_allclose(da.values.ravel(), z * 1e6, rtol=1e-12)


def _patch_declared_sizes(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size of `member` in its central-directory entry."""
    blob = bytearray(path.read_bytes())
    pos = 0
    while (pos := blob.find(b"PK\x01\x02", pos)) >= 0:
        nlen = struct.unpack_from("<H", blob, pos + 28)[0]
        if blob[pos + 46:pos + 46 + nlen].decode() == member:
            struct.pack_into("<I", blob, pos + 24, size)
        pos += 4
    path.write_bytes(bytes(blob))


def test_zip_declaring_huge_uncompressed_size_is_refused(tmp_path):
    xml = main_xml(nx=2, ny=2)
    path = write_x3p(tmp_path / "huge.x3p", xml, {"bindata/data.bin": bytes(32),
                                                   "bindata/extra.bin": bytes(32)})
    _patch_declared_sizes(path, "bindata/data.bin", 0xF0000000)
    _patch_declared_sizes(path, "bindata/extra.bin", 0xF0000000)
    assert_unreadable(path, r"declares \d+ uncompressed bytes; the limit is")


def test_data_member_length_must_match_matrix(tmp_path):
    xml = main_xml(nx=4, ny=3)
    path = write_x3p(tmp_path / "short.x3p", xml, {"bindata/data.bin": bytes(8 * 11)})
    assert_unreadable(path, r"holds 88 bytes; SizeX\*SizeY\*itemsize = 4\*3\*8 = 96")


def test_missing_data_member(tmp_path):
    path = write_x3p(tmp_path / "nodata.x3p", main_xml(nx=1, ny=1))
    assert_unreadable(path, r"PointDataLink 'bindata/data\.bin' .* is not in the zip")


def test_valid_bin_too_short(tmp_path):
    xml = main_xml(nx=5, ny=4, data=(
        "<DataLink><PointDataLink>bindata/data.bin</PointDataLink>"
        "<ValidPointsLink>bindata/valid.bin</ValidPointsLink></DataLink>"))
    path = write_x3p(tmp_path / "vshort.x3p", xml, {"bindata/data.bin": bytes(160),
                                                     "bindata/valid.bin": b"\xff\xff"})
    assert_unreadable(path, r"valid-points member .* holds 2 bytes; 20 points need 3")


def test_datalist_count_mismatch(tmp_path):
    xml = main_xml(nx=2, ny=2, data="<DataList><Datum>1</Datum><Datum>2</Datum></DataList>")
    assert_unreadable(write_x3p(tmp_path / "dl.x3p", xml), r"DataList holds 2 Datum .* = 4")


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"feature": "PCL"}, r"point cloud"),
        ({"feature": "XYZ"}, r"FeatureType 'XYZ' is not SUR, PRF or PCL"),
        ({"cx": axis("CX", "A", "D", None, None)}, r"CX AxisType is 'A': absolute"),
        ({"cz": axis("CZ", "A", "Q", None, None)}, r"CZ DataType 'Q' is not one of"),
        ({"cz": axis("CZ", "I", "D", "1", None)}, r"CZ AxisType is 'I'; expected A"),
        ({"cx": axis("CX", inc="0")}, r"pixel size x is 0\.0 um"),
        ({"cy": axis("CY", inc="-1e-6")}, r"pixel size y is -1\.0 um"),
        ({"cx": axis("CX", inc="1,5e-6")}, r"CX Increment is not a number: '1,5e-6'"),
        ({"cz": axis("CZ", "A", "D", "1", "nan")}, r"CZ Offset is 'nan'; it must be finite"),
        ({"nz": 2}, r"SizeZ is 2: layered"),
        ({"nx": 70000}, r"dimensions 1 x 70000 exceed the limit"),
    ],
)
def test_refused_variants(tmp_path, kw, match):
    kw = dict(kw)
    nx, ny = kw.pop("nx", 2), 1
    xml = main_xml(nx=nx, ny=ny, **kw)
    path = write_x3p(tmp_path / "v.x3p", xml, {"bindata/data.bin": bytes(8 * nx * ny)})
    assert_unreadable(path, match)


def test_missing_lateral_increment_is_missing_calibration(tmp_path):
    xml = main_xml(nx=2, ny=1, cy=axis("CY", inc=None))
    path = write_x3p(tmp_path / "noinc.x3p", xml, {"bindata/data.bin": bytes(16)})
    with pytest.raises(MissingCalibration, match=r"CY axis is incremental but gives no Incr"):
        X3PReader().open(path)


def test_integer_heights_without_z_increment_is_missing_calibration(tmp_path):
    xml = main_xml(nx=2, ny=1, cz=axis("CZ", "A", "I", None, None))
    path = write_x3p(tmp_path / "noz.x3p", xml, {"bindata/data.bin": bytes(4)})
    with pytest.raises(MissingCalibration, match=r"integer counts but CZ gives no Increment"):
        X3PReader().open(path)


def test_truncated_archive(tmp_path):
    good = surface(tmp_path, np.ones((8, 8)) * 1e-6)
    cut = tmp_path / "cut.x3p"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert not X3PReader().can_open(cut.read_bytes()[:4096], cut)
    with pytest.raises(UnreadableInput, match=r"not a readable zip archive") as info:
        X3PReader().open(cut)
    assert str(cut) in str(info.value)


def test_zip_without_main_xml(tmp_path):
    path = tmp_path / "nomain.x3p"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bindata/data.bin", bytes(8))
    with pytest.raises(UnreadableInput, match=r"has no main\.xml"):
        X3PReader().open(path)


def test_registry_picks_x3p_reader(tmp_path):
    import pipeline

    z = np.arange(6.0).reshape(3, 2)
    da = pipeline.read(surface(tmp_path, z * 1e-6))
    assert da.attrs["reader"] == "x3p" and da.attrs["format"] == "x3p"
    np.testing.assert_allclose(da.values, z, rtol=1e-12)


def test_all_nan_map_is_unreadable(tmp_path):
    p = surface(tmp_path, np.full((4, 5), np.nan))
    assert_unreadable(p, "no valid")


@pytest.mark.parametrize("inc, match", [("0", "pixel size x is 0.0"),
                                        ("NaN", "CX Increment is 'NaN'; it must be finite"),
                                        ("INF", "CX Increment is 'INF'; it must be finite"),
                                        ("-1e-6", "pixel size x is -1.0")])
def test_zero_or_non_finite_pixel_size(tmp_path, inc, match):
    ny, nx = 3, 4
    xml = main_xml(nx=nx, ny=ny, cx=axis("CX", inc=inc))
    p = write_x3p(tmp_path / "px.x3p", xml, {"bindata/data.bin": np.zeros(ny * nx, "<f8").tobytes()})
    assert_unreadable(p, match)
