"""Gwyddion .gwy reader: a tiny serialiser writes the test files; the real file is refused."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.height.gwy import GwyReader, length_unit_to_um
from tests.helpers import assert_unreadable, realfile

# --------------------------------------------------------------------------- serialiser


def cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def comp(name: str, kind: str, payload: bytes) -> bytes:
    return cstr(name) + kind.encode() + payload


def obj(typename: str, comps: list[bytes], *, size: int | None = None) -> bytes:
    body = b"".join(comps)
    return cstr(typename) + struct.pack("<I", len(body) if size is None else size) + body


def si_unit(unit: str) -> bytes:
    return obj("GwySIUnit", [comp("unitstr", "s", cstr(unit))])


def doubles(values) -> bytes:
    a = np.asarray(values, "<f8").ravel()
    return struct.pack("<I", a.size) + a.tobytes()


def datafield(z, *, xreal: float, yreal: float, xy: str = "m", zu: str = "m",
              xres: int | None = None, count_override: int | None = None,
              drop: tuple[str, ...] = ()) -> bytes:
    z = np.asarray(z, np.float64)
    ny, nx = z.shape
    parts = {
        "xres": comp("xres", "i", struct.pack("<i", nx if xres is None else xres)),
        "yres": comp("yres", "i", struct.pack("<i", ny)),
        "xreal": comp("xreal", "d", struct.pack("<d", xreal)),
        "yreal": comp("yreal", "d", struct.pack("<d", yreal)),
        "xoff": comp("xoff", "d", struct.pack("<d", 1e-6)),
        "si_unit_xy": comp("si_unit_xy", "o", si_unit(xy)),
        "si_unit_z": comp("si_unit_z", "o", si_unit(zu)),
        "data": comp("data", "D", doubles(z) if count_override is None else
                     struct.pack("<I", count_override) + z.astype("<f8").tobytes()),
    }
    return obj("GwyDataField", [v for k, v in parts.items() if k not in drop])


def container(comps: list[bytes], magic: bytes = b"GWYP") -> bytes:
    return magic + obj("GwyContainer", comps)


def channel(i: int, field: bytes, title: str | None = None) -> list[bytes]:
    out = [comp(f"/{i}/data", "o", field)]
    if title is not None:
        out.append(comp(f"/{i}/data/title", "s", cstr(title)))
    return out


def write(tmp_path: Path, blob: bytes, name: str = "t.gwy") -> Path:
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def read(path: Path):
    assert GwyReader().can_open(path.read_bytes()[:4096], path)
    return GwyReader().open(path)


Z = np.arange(12.0).reshape(3, 4) * 1e-9  # metres: 0 .. 11 nm


# --------------------------------------------------------------------------- real file


@pytest.mark.realdata
def test_real_file_with_empty_z_unit_is_refused():
    path = realfile("heightmaps", "gwyfile_test.gwy")
    with pytest.raises(MissingCalibration) as info:
        read(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "channel 'Test' (/0/data)" in msg and "the z unit is empty" in msg


@pytest.mark.realdata
def test_real_file_inspect_exits_3_with_the_reason():
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = realfile("heightmaps", "gwyfile_test.gwy")
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 3, result.output
    out = result.output.replace("\n", " ")
    assert "z unit is empty" in out and "'Test'" in out
    assert "Traceback" not in out


@pytest.mark.realdata
def test_real_file_serialisation_is_walked_to_the_end():
    """The parser steps over every component Gwyddion wrote (strings, booleans, nested
    containers) and finds the 128 x 128 field with its empty units."""
    from pipeline.ingest.height.gwy import _datafield, _Parser

    path = realfile("heightmaps", "gwyfile_test.gwy")
    buf = path.read_bytes()
    p = _Parser(path, buf)
    name, start, end = p.object(4, len(buf), "top")
    assert (name, end) == ("GwyContainer", len(buf))
    comps = {c: (k, pos) for c, k, pos in p.components(start, end, "top")}
    assert comps["/0/data/title"][0] == "s" and comps["/0/data"][0] == "o"
    f = _datafield(p, comps["/0/data"][1], end, 0)
    assert (f["xres"], f["yres"], f["si_unit_xy"], f["si_unit_z"]) == (128, 128, "", "")
    values = np.frombuffer(buf, "<f8", count=128 * 128, offset=f["data_pos"])
    assert np.isfinite(values).all() and np.ptp(values) > 0


# --------------------------------------------------------------------------- valid files


def test_metre_units_values_and_non_square_pixels(tmp_path):
    field = datafield(Z, xreal=4e-6, yreal=6e-6)  # 1 um by 2 um pixels
    da = read(write(tmp_path, container(channel(0, field, "Height"))))
    np.testing.assert_allclose(da.values, np.arange(12.0).reshape(3, 4) * 1e-3, rtol=1e-12)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 1.0, "y": 2.0}, rel=1e-12)
    h = da.attrs["header"]
    assert h["title"] == "Height" and h["channel"] == "/0/data"
    assert h["si_unit_z"] == "m" and h["xoff"] == pytest.approx(1e-6)
    assert da.attrs["format"] == "gwy" and da.attrs["invalid_fraction"] == 0.0


@pytest.mark.parametrize(
    "xy,zu,dx_um,z_factor",
    [("um", "nm", 4.0, 1e-3), ("\u00b5m", "mm", 4.0, 1e3), ("\u03bcm", "\u00c5", 4.0, 1e-4),
     ("nm", "um", 4e-3, 1.0)],
)
def test_prefixed_units(tmp_path, xy, zu, dx_um, z_factor):
    field = datafield(np.arange(12.0).reshape(3, 4), xreal=16.0, yreal=12.0, xy=xy, zu=zu)
    da = read(write(tmp_path, container(channel(0, field))))
    np.testing.assert_allclose(da.values, np.arange(12.0).reshape(3, 4) * z_factor, rtol=1e-12)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(dx_um, rel=1e-12)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(dx_um, rel=1e-12)


@pytest.mark.parametrize(
    "unit,um", [("m", 1e6), ("mm", 1e3), ("cm", 1e4), ("um", 1.0), ("nm", 1e-3), ("pm", 1e-6),
                (" m ", 1e6), ("", None), ("V", None), ("A", None), ("m^2", None),
                ("deg", None), ("mV", None), ("xm", None)],
)
def test_length_unit_table(unit, um):
    got = length_unit_to_um(unit)
    assert got == (None if um is None else pytest.approx(um, rel=1e-12))


def test_first_channel_is_read_and_the_others_logged(tmp_path, caplog):
    a = datafield(Z, xreal=4e-6, yreal=3e-6)
    b = datafield(Z * 2, xreal=4e-6, yreal=3e-6)
    comps = channel(3, b, "Phase") + channel(0, a, "Topo") + channel(1, b, "Amplitude")
    with caplog.at_level(logging.INFO, logger="pipeline.ingest.height.gwy"):
        da = read(write(tmp_path, container(comps)))
    np.testing.assert_allclose(da.values, Z * 1e6, rtol=1e-12)
    h = da.attrs["header"]
    assert h["title"] == "Topo" and h["n_channels"] == 3
    assert "/1/data 'Amplitude'" in h["other_channels"]
    assert "/3/data 'Phase'" in h["other_channels"]
    assert "not read" in caplog.text


def test_lowest_channel_id_when_there_is_no_channel_0(tmp_path):
    comps = channel(5, datafield(Z * 3, xreal=1e-6, yreal=1e-6)) + channel(
        2, datafield(Z, xreal=1e-6, yreal=1e-6))
    da = read(write(tmp_path, container(comps)))
    assert da.attrs["header"]["channel"] == "/2/data"
    np.testing.assert_allclose(da.values, Z * 1e6, rtol=1e-12)


def test_every_component_type_is_stepped_over(tmp_path):
    others = [
        comp("/b", "b", b"\x01"), comp("/c", "c", b"x"), comp("/i", "i", struct.pack("<i", -3)),
        comp("/q", "q", struct.pack("<q", 7)), comp("/d", "d", struct.pack("<d", 2.5)),
        comp("/s", "s", cstr("text")), comp("/C", "C", struct.pack("<I", 3) + b"abc"),
        comp("/I", "I", struct.pack("<I", 2) + struct.pack("<2i", 1, 2)),
        comp("/Q", "Q", struct.pack("<I", 1) + struct.pack("<q", 1)),
        comp("/D", "D", doubles([1.0, 2.0])),
        comp("/S", "S", struct.pack("<I", 2) + cstr("a") + cstr("bc")),
        comp("/O", "O", struct.pack("<I", 2) + si_unit("m") + obj("GwyContainer", [])),
        comp("/0/meta", "o", obj("GwyContainer", [comp("Note", "s", cstr("x"))])),
    ]
    comps = others + channel(0, datafield(Z, xreal=4e-6, yreal=3e-6))
    da = read(write(tmp_path, container(comps)))
    np.testing.assert_allclose(da.values, Z * 1e6, rtol=1e-12)


def test_registry_picks_gwy_reader(tmp_path):
    import pipeline

    da = pipeline.read(write(tmp_path, container(channel(0, datafield(Z, xreal=4e-6,
                                                                       yreal=3e-6)))))
    assert da.attrs["reader"] == "gwy"


# --------------------------------------------------------------------------- refusals


def test_z_unit_not_a_length(tmp_path):
    field = datafield(Z, xreal=4e-6, yreal=3e-6, zu="V")
    with pytest.raises(MissingCalibration, match=r"channel 'Bias' \(/0/data\): the z unit 'V' "
                                                 r"is not a length"):
        read(write(tmp_path, container(channel(0, field, "Bias"))))


def test_lateral_unit_empty(tmp_path):
    field = datafield(Z, xreal=4.0, yreal=3.0, xy="")
    with pytest.raises(MissingCalibration, match=r"/0/data: the lateral \(xy\) unit is empty"):
        read(write(tmp_path, container(channel(0, field))))


def test_truncated_in_the_data_array(tmp_path):
    blob = container(channel(0, datafield(Z, xreal=4e-6, yreal=3e-6)))
    path = write(tmp_path, blob[: len(blob) - 20])
    assert_unreadable(path, r"file is truncated: top-level object \(GwyContainer\) declares")


def test_huge_declared_array_is_refused_before_allocating(tmp_path):
    field = datafield(Z, xreal=4e-6, yreal=3e-6, count_override=0x7FFFFFFF)
    path = write(tmp_path, container(channel(0, field)))
    assert_unreadable(path, r"/0/data data declares 2147483647 items \(17179869176 bytes at "
                            r"least\) but only 96 bytes remain")


def test_huge_object_array_is_refused(tmp_path):
    bad = comp("/O", "O", struct.pack("<I", 0xFFFFFFFF) + si_unit("m"))
    path = write(tmp_path, container([bad] + channel(0, datafield(Z, xreal=1, yreal=1))))
    assert_unreadable(path, r"component '/O' declares 4294967295 items")


def test_value_count_must_match_xres_yres(tmp_path):
    field = datafield(Z, xreal=4e-6, yreal=3e-6, xres=5)
    path = write(tmp_path, container(channel(0, field)))
    assert_unreadable(path, r"data holds 12 values; xres\*yres = 5\*3 = 15")


@pytest.mark.parametrize(
    "field,match",
    [
        (datafield(Z, xreal=4e-6, yreal=3e-6, xres=0), r"dimensions 3 x 0 are not positive"),
        (datafield(Z, xreal=0.0, yreal=3e-6), r"/0/data xreal is 0\.0; it must be positive"),
        (datafield(Z, xreal=4e-6, yreal=float("nan")), r"yreal is nan"),
        (datafield(Z, xreal=4e-6, yreal=3e-6, drop=("data",)), r"/0/data has no data array"),
        (datafield(Z, xreal=4e-6, yreal=3e-6, drop=("yres",)), r"/0/data has no yres"),
        (obj("GwyContainer", []), r"/0/data is a 'GwyContainer', not a GwyDataField"),
        (obj("GwyDataField", [comp("xres", "x", b"")]), r"component 'xres' has unknown type"),
    ],
)
def test_corrupt_datafield(tmp_path, field, match):
    assert_unreadable(write(tmp_path, container(channel(0, field))), match)


def test_no_image_channel(tmp_path):
    path = write(tmp_path, container([comp("/0/graph", "s", cstr("x"))]))
    assert_unreadable(path, r"holds no image channel")


def test_object_size_beyond_end_of_file(tmp_path):
    blob = b"GWYP" + obj("GwyContainer", channel(0, datafield(Z, xreal=1, yreal=1)),
                         size=10_000_000)
    assert_unreadable(write(tmp_path, blob), r"declares 10000000 bytes but only \d+ remain")


def test_unterminated_string(tmp_path):
    blob = container([comp("/0/data/title", "s", b"no end")])  # string without its NUL
    assert_unreadable(write(tmp_path, blob), r"/0/data/title has no terminating NUL")
    cut = b"GWYP" + cstr("GwyContainer") + struct.pack("<I", 9) + b"/0/data/t"
    assert_unreadable(write(tmp_path, cut, "cut.gwy"), r"has no terminating NUL")


def test_wrong_magic(tmp_path):
    blob = container(channel(0, datafield(Z, xreal=1, yreal=1)), magic=b"GWYO")
    path = write(tmp_path, blob)
    assert not GwyReader().can_open(path.read_bytes()[:4096], path)
    with pytest.raises(UnreadableInput, match=r"GWYO is the Gwyddion 1 format"):
        GwyReader().open(path)
