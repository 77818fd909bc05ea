import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import UnreadableInput
from pipeline.ingest import registry
from pipeline.ingest.dataarray import height_dataarray
from tests.helpers import ROOT, assert_unreadable


class _Fake:
    name = "fake"
    kind = "height"
    suffixes = (".fake",)
    description = "test format"
    expects = "the bytes FAKE"
    priority = 5

    def __init__(self, fail=None):
        self.fail = fail

    def can_open(self, head: bytes, path: Path) -> bool:
        return head.startswith(b"FAKE")

    def open(self, path: Path):
        if self.fail:
            raise self.fail
        return height_dataarray(np.arange(6.0).reshape(2, 3), path=path, dx_um=1.0, dy_um=2.0,
                                pixel_size_source="test", vendor="v", fmt="fake")


def test_reader_found_by_content_and_provenance_added(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "readers", lambda: [_Fake()])
    p = tmp_path / "x.bin"  # the suffix does not matter
    p.write_bytes(b"FAKE and more")
    da = registry.read(p)
    assert da.attrs["reader"] == "fake" and da.attrs["source_path"] == str(p)
    assert da.attrs["source_sha256"] == registry.sha256_file(p)
    assert da.coords["y"].values.tolist() == [1.0, 3.0]  # pixel centres, micrometres


def test_any_parser_exception_becomes_unreadable(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "readers", lambda: [_Fake(fail=RuntimeError("codec said no"))])
    p = tmp_path / "x.fake"
    p.write_bytes(b"FAKE")
    with pytest.raises(UnreadableInput, match="fake reader could not parse the file: RuntimeError: codec said no"):
        registry.read(p)


def test_no_reader_message_is_one_line_and_the_readers_tried_are_logged(tmp_path, caplog):
    p = tmp_path / "x.x3p"
    p.write_bytes(b"NOPE" * 10)
    with (caplog.at_level(logging.INFO, logger="pipeline.ingest.registry"),
          pytest.raises(UnreadableInput) as info):
        registry.read(p)
    assert str(p) in str(info.value)
    msg = info.value.problem
    assert msg.startswith("no reader recognises this file")
    assert "\n" not in msg and "Readers tried" not in msg
    assert "4e 4f 50 45" not in msg and "NOPE" not in msg  # no bytes of the file
    assert "readers tried" in caplog.text
    for r in registry.readers():
        assert f"{r.name}: expects" in caplog.text and f"{r.name}: expects" not in msg


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


_BMP = (b"BM" + (70).to_bytes(4, "little") + bytes(4) + (54).to_bytes(4, "little")
        + (40).to_bytes(4, "little") + bytes(48))


@pytest.mark.parametrize("content, kind_words, advice", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100), "a JPEG image",
     "has no calibrated scale; export the instrument's TIFF with its metadata"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "a PNG image", "no calibrated scale"),
    (b"GIF89a" + bytes(100), "a GIF image", "no calibrated scale"),
    (_BMP, "a BMP image", "no calibrated scale"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document",
     "export the instrument's own file"),
    (_zip({"notes.txt": b"hello"}), "a ZIP archive but not an X3P", "unpack it"),
    (_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
     "an Office document", "Keyence CSV with its header"),
    (b"x,y,z\n1,2,3\n4,5,6\n", "plain text or CSV",
     "export the height map as .x3p, .sur, .plu"),
    (b"<!DOCTYPE html><html><body>404</body></html>", "an HTML page", "the file itself"),
    (b'<?xml version="1.0"?><root/>', "an XML document", "give the .x3p file itself"),
    (bytes(5000), "all zero", "interrupted copy"),
    (gzip.compress(b"heights" * 100), "a compressed archive", "unpack it"),
    (bytes(range(256)) * 4, "matches no known format", "electrode-qc formats"),
], ids=["jpeg", "png", "gif", "bmp", "pdf", "zip", "office", "csv", "html", "xml", "zeros",
        "gzip", "binary"])
def test_no_reader_names_the_content_and_what_to_export(tmp_path, content, kind_words,
                                                         advice):
    p = tmp_path / "mystery.dat"
    p.write_bytes(content)
    err = assert_unreadable(p, "no reader recognises this file")
    msg = err.problem
    assert kind_words in msg and advice in msg, msg
    assert "\n" not in msg
    assert content[:16].hex(" ") not in msg


def test_no_reader_names_a_tiff_that_no_reader_takes(tmp_path):
    import tifffile

    p = tmp_path / "colour.tif"
    tifffile.imwrite(p, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    assert_unreadable(p, r"a TIFF image that no reader takes .* grey-level TIFF")


def test_no_bytes_of_an_unrecognised_file_reach_the_message(tmp_path):
    # a link to a private file must not copy its content into results or logs of errors
    secret = b"root:$6$Zx9Qv1Sa$kQ8fGJ3hX2pL:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
    p = tmp_path / "shadow.tif"
    p.write_bytes(secret)
    err = assert_unreadable(p, "no reader recognises this file: it looks like plain text")
    msg = err.problem  # the rest of the message is the path
    for piece in (b"root", b"Zx9Qv1Sa", b"daemon", b"19000"):
        assert piece.decode() not in msg
    assert secret[:16].hex(" ") not in msg and secret[:16].hex() not in msg


SAMPLE = ROOT / "sample_images" / "embodiment-1"


def test_sem_image_asked_as_a_height_map_is_wrong_kind():
    from pipeline.errors import WrongKind

    p = SAMPLE / "psd-01.tif"
    assert registry.read(p, kind="sem").attrs["kind"] == "sem"
    with pytest.raises(registry.WrongKind) as info:
        registry.read(p, kind="height")
    err = info.value
    assert str(err) == f"{p}: psd-01.tif is an SEM image (FEI), not a height map"
    assert err.found_kind == "sem" and err.reader == "fei"
    assert isinstance(err, UnreadableInput) and err.exit_code == 4
    assert registry.WrongKind is WrongKind


def test_height_map_asked_as_an_sem_image_is_wrong_kind():
    p = SAMPLE / "height-01.x3p"
    assert registry.read(p, kind="height").attrs["kind"] == "height"
    with pytest.raises(registry.WrongKind) as info:
        registry.find_reader(p, kind="sem")
    assert str(info.value) == f"{p}: height-01.x3p is a height map, not an SEM image"
    assert info.value.found_kind == "height" and info.value.reader == "x3p"


def test_wrong_kind_crosses_a_process_boundary():
    import pickle

    err = registry.WrongKind("/d/a.tif", "a.tif is an SEM image (FEI), not a height map",
                             found_kind="sem", reader="fei")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is registry.WrongKind and str(back) == str(err)
    assert (back.found_kind, back.reader, back.path) == ("sem", "fei", "/d/a.tif")


def test_commands_for_each_kind():
    assert registry.commands_for("sem") == "use particles, porosity or protrusions"
    assert registry.commands_for("height") == "use surface"
    assert registry.commands_for("other") == ""
    assert set(registry.COMMANDS_BY_KIND) == {"sem", "height"}
    assert {r.kind for r in registry.readers()} <= set(registry.COMMANDS_BY_KIND)


def test_empty_missing_and_directory(tmp_path):
    (tmp_path / "empty.x3p").write_bytes(b"")
    with pytest.raises(UnreadableInput, match="file is empty"):
        registry.read(tmp_path / "empty.x3p")
    with pytest.raises(UnreadableInput, match="does not exist"):
        registry.read(tmp_path / "absent.x3p")
    with pytest.raises(UnreadableInput, match="not a regular file"):
        registry.read(tmp_path)


def test_entry_point_readers_are_registered(monkeypatch):
    class EP:
        name = "fake"

        @staticmethod
        def load():
            return _Fake

    class BrokenEP:
        name = "broken"

        @staticmethod
        def load():
            raise ImportError("missing dependency")

    monkeypatch.setattr(registry, "entry_points", lambda group: [EP(), BrokenEP()])
    registry.refresh()
    try:
        names = [r.name for r in registry.readers()]
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert names[0] == "fake"  # priority 5 sorts it first
    assert "x3p" in names and "broken" not in names


def test_dataarray_refuses_bad_pixel_sizes_and_all_nan():
    for dx in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(UnreadableInput, match="pixel size x"):
            height_dataarray(np.zeros((2, 2)), path="f", dx_um=dx, dy_um=1.0,
                             pixel_size_source="t", vendor="v", fmt="t")
    with pytest.raises(UnreadableInput, match="no valid"):
        height_dataarray(np.full((2, 2), np.nan), path="f", dx_um=1.0, dy_um=1.0,
                         pixel_size_source="t", vendor="v", fmt="t")
    da = height_dataarray(np.array([[1.0, np.inf, 2.0, np.nan]]), path="f", dx_um=1.0,
                          dy_um=1.0, pixel_size_source="t", vendor="v", fmt="t")
    assert np.isnan(da.values[0, 1]) and da.attrs["invalid_fraction"] == 0.5


def test_corrupt_deflate_stream_in_zip_member(tmp_path):
    import zipfile

    from pipeline.ingest.limits import open_zip, read_zip_member

    p = tmp_path / "m.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.bin", bytes(range(256)) * 64)
    raw = bytearray(p.read_bytes())
    start = 30 + len("data.bin")  # local header, then the deflate stream
    raw[start + 2 : start + 40] = b"\xff" * 38
    p.write_bytes(bytes(raw))
    with pytest.raises(UnreadableInput, match="zip member 'data.bin' is corrupt"):
        read_zip_member(p, open_zip(p), "data.bin")


def test_sha256_given_skipped_or_computed(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "readers", lambda: [_Fake()])
    p = tmp_path / "x.fake"
    p.write_bytes(b"FAKE" * 100)
    assert registry.read(p).attrs["source_sha256"] == registry.sha256_file(p)
    assert registry.read(p, sha256=False).attrs["source_sha256"] is None
    assert registry.read(p, sha256="AB" * 32).attrs["source_sha256"] == "ab" * 32
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        registry.read(p, sha256="xyz")
