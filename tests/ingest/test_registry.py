from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import UnreadableInput
from pipeline.ingest import registry
from pipeline.ingest.dataarray import height_dataarray


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
        return height_dataarray(np.zeros((2, 3)), path=path, dx_um=1.0, dy_um=2.0,
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


def test_no_reader_lists_every_reader_and_its_expectation(tmp_path):
    p = tmp_path / "x.x3p"
    p.write_bytes(b"NOPE" * 10)
    with pytest.raises(UnreadableInput) as info:
        registry.read(p)
    msg = str(info.value)
    assert str(p) in msg and "4e 4f 50 45" in msg
    for r in registry.readers():
        assert f"{r.name}: " in msg


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
    da = height_dataarray(np.array([[1.0, np.inf]]), path="f", dx_um=1.0, dy_um=1.0,
                          pixel_size_source="t", vendor="v", fmt="t")
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
