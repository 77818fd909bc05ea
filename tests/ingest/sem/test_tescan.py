"""TESCAN reader: the real MIRA3 file, synthetic chunks and sidecars, refusals."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.tescan import TescanReader, parse_tescan_chunks
from tests.helpers import assert_unreadable, realfile

tifffile = pytest.importorskip("tifffile")

MAIN = "Device=VEGA3\r\nImageStripSize=6\r\nMagnification=2000\r\nPixelSizeX=1.5e-7\r\nPixelSizeY=1.5e-7\r\n"
SEM = "Detector=BSE\r\nHV=20000\r\nWD=0.01\r\n"


def chunk(ctype: int, body: bytes) -> bytes:
    return struct.pack("<IH", len(body) + 2, ctype) + body


def tag_blob(main=MAIN, sem=SEM) -> bytes:
    return (chunk(1, b"\x00\x00\x00\x0cjP  fake") + chunk(2, main.encode("latin-1"))
            + chunk(3, sem.encode("latin-1")) + chunk(0, b""))


def write(path: Path, blob: bytes | None, *, rows=40) -> Path:
    data = np.arange(rows * 30, dtype=np.uint16).reshape(rows, 30)
    extra = [] if blob is None else [(50431, "B", len(blob), blob, True)]
    tifffile.imwrite(path, data, extratags=extra)
    return path


def test_real_mira3():
    da = pipeline.read(realfile("sem", "tescan_mira3_se_16bit.tif"))
    assert da.attrs["reader"] == "tescan" and da.attrs["vendor"] == "TESCAN"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(2.5012, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(2.5012, rel=1e-6)
    assert da.shape == (768, 1024) and da.dtype == np.uint16
    assert da.attrs["databar_rows"] == 120
    assert da.attrs["databar_method"] == "metadata: [MAIN] ImageStripSize"
    assert da.attrs["kv"] == pytest.approx(10.0) and da.attrs["detector"] == "SE"
    assert da.attrs["magnification"] == pytest.approx(108.08)


def test_synthetic_tag(tmp_path):
    path = write(tmp_path / "t.tif", tag_blob())
    assert TescanReader().can_open(path.read_bytes()[:4096], path)
    da = pipeline.read(path)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.15, rel=1e-12)
    assert da.shape == (34, 30) and da.attrs["databar_rows"] == 6
    assert da.attrs["kv"] == pytest.approx(20.0) and da.attrs["detector"] == "BSE"


def test_sidecar_only(tmp_path):
    path = write(tmp_path / "img.tif", None)
    (tmp_path / "img-tif.hdr").write_text("[MAIN]\n" + MAIN + "[SEM]\n" + SEM, encoding="utf-8")
    assert TescanReader().can_open(path.read_bytes()[:4096], path)
    da = pipeline.read(path)
    assert da.attrs["reader"] == "tescan"
    assert da.attrs["pixel_size_source"] == "TESCAN img-tif.hdr [MAIN] PixelSizeX/Y"
    assert da.attrs["databar_rows"] == 6 and da.attrs["kv"] == pytest.approx(20.0)


def test_tag_and_sidecar_disagree_tag_wins(tmp_path, caplog):
    path = write(tmp_path / "d.tif", tag_blob())
    (tmp_path / "d-tif.hdr").write_text("[MAIN]\n" + MAIN.replace("1.5e-7", "3e-7"))
    with caplog.at_level(logging.WARNING):
        da = pipeline.read(path)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.15, rel=1e-12)
    assert "the tag is used" in da.attrs["header"]["disagreement_PixelSizeX"]
    assert any("disagrees" in r.getMessage() and "d.tif" in r.getMessage() for r in caplog.records)


def test_sidecar_in_unexpected_encoding(tmp_path):
    path = write(tmp_path / "w.tif", None)
    (tmp_path / "w-tif.hdr").write_bytes("[MAIN]\nPixelSizeX=1e-7\n".encode("utf-32"))
    assert_unreadable(path, "UTF-32")


def test_chunk_length_past_end(tmp_path):
    blob = bytearray(tag_blob())
    struct.pack_into("<I", blob, 0, 10_000)  # thumbnail chunk claims 10 kB
    assert_unreadable(write(tmp_path / "c.tif", bytes(blob)), "past the end of the")


def test_truncated_chunk_header(tmp_path):
    with pytest.raises(Exception, match="chunk header"):
        parse_tescan_chunks("x.tif", chunk(2, MAIN.encode()) + b"\x05\x00")


def test_strip_size_too_large(tmp_path):
    blob = tag_blob(main=MAIN.replace("ImageStripSize=6", "ImageStripSize=40"))
    assert_unreadable(write(tmp_path / "s.tif", blob), "ImageStripSize = '40' does not fit")


def test_truncated_tiff(tmp_path):
    path = write(tmp_path / "tr.tif", tag_blob(), rows=400)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 4000])
    assert_unreadable(path, "truncated")
