"""Hitachi reader: sidecar [SemImageFile] first, TIFF tag 40092 second, painted bar cropped."""

from __future__ import annotations

import codecs
import logging
import shutil

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.hitachi import HitachiReader
from tests.helpers import assert_unreadable, realfile

STEM = "hitachi_tm4000_bse_x200"
VENDOR_NM = 496.0938  # SOURCES.md: sidecar [SemImageFile] PixelSize


def _copy_real(tmp_path, *, sidecar=True):
    tif = realfile("sem", STEM + ".tif")
    dst = tmp_path / (STEM + ".tif")
    shutil.copyfile(tif, dst)
    if sidecar:
        shutil.copyfile(tif.with_suffix(".txt"), tmp_path / (STEM + ".txt"))
    return dst


def _sidecar_text(pixel_nm="12.5", signal="SE"):
    return ("[SemImageFile]\r\nInstructName=S-4800\r\nDataNumber=0001\r\n"
            f"PixelSize={pixel_nm}\r\nMagnification=5000\r\nAcceleratingVoltage=5000 Volt\r\n"
            f"SignalName={signal}\r\nDataDisplayCombine=1\r\n")


def _synthetic(tmp_path, *, bar=30, name="s4800.tif", tag_text=None):
    import tifffile

    img = np.random.default_rng(1).integers(20, 230, (240, 320)).astype(np.uint8)
    img[-bar:] = 0
    img[-bar:, 20:90] = 255
    extratags = []
    if tag_text is not None:
        raw = tag_text.encode("utf-16-le") + b"\x00\x00"
        extratags.append((40092, 1, len(raw), raw, True))
    p = tmp_path / name
    tifffile.imwrite(p, img, extratags=extratags)
    return p


def test_real_file_pixel_size_and_bar():
    da = pipeline.read(realfile("sem", STEM + ".tif"))
    assert da.attrs["reader"] == "hitachi"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(VENDOR_NM / 1000, rel=1e-6)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(VENDOR_NM / 1000, rel=1e-6)
    assert "sidecar" in da.attrs["pixel_size_source"]
    assert abs(da.attrs["databar_rows"] - 59) <= 3
    assert da.shape == (960 - da.attrs["databar_rows"], 1280)
    assert da.attrs["databar_method"].startswith("detected")
    assert da.attrs["calibration"] == "ok"
    assert (da.attrs["vendor"], da.attrs["instrument"]) == ("Hitachi", "TM4000")
    assert da.attrs["kv"] == pytest.approx(15.0)
    assert da.attrs["magnification"] == pytest.approx(200)
    assert da.attrs["detector"] == "BSE"
    assert da.attrs["header"]["sidecar_encoding"] == "utf-16"
    assert "pixel_size_warning" not in da.attrs["header"]  # tag and sidecar agree here
    # the crop removed exactly the flat rows: the last kept row is image, not bar
    assert (da.values[-1] == 0).mean() < 0.5


def test_real_file_without_sidecar_uses_tag_40092(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "hitachi"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(VENDOR_NM / 1000, rel=1e-6)
    assert "40092" in da.attrs["pixel_size_source"]


def test_sidecar_paired_by_stem_not_image_name(tmp_path):
    p = _copy_real(tmp_path)
    renamed = tmp_path / "renamed.tif"
    p.rename(renamed)
    (tmp_path / (STEM + ".txt")).rename(tmp_path / "renamed.txt")
    da = pipeline.read(renamed)  # ImageName= inside still names the export
    assert "sidecar" in da.attrs["pixel_size_source"]


def test_tag_and_sidecar_disagree_sidecar_wins_with_warning(tmp_path, caplog):
    p = _copy_real(tmp_path, sidecar=False)
    text = (realfile("sem", STEM + ".txt").read_bytes().decode("utf-16")
            .replace("PixelSize=496.0938", "PixelSize=500.0"))
    (tmp_path / (STEM + ".txt")).write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.sem.hitachi"):
        da = pipeline.read(p)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.5, rel=1e-9)
    assert "disagree" in caplog.text and "sidecar" in caplog.text
    assert "disagree" in da.attrs["header"]["pixel_size_warning"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932", "latin-1"])
def test_eight_bit_sidecars(tmp_path, encoding):
    p = _synthetic(tmp_path)
    text = _sidecar_text().replace("SignalName=SE", "SignalName=SE\u00b5" if encoding == "latin-1"
                                   else "SignalName=SE二次")
    (tmp_path / "s4800.txt").write_bytes(text.encode(encoding))
    da = pipeline.read(p)
    assert da.attrs["reader"] == "hitachi"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.0125, rel=1e-9)
    assert da.attrs["databar_rows"] == 30
    assert da.shape == (210, 320)
    assert da.attrs["instrument"] == "S-4800"


def test_sidecar_utf32_is_unreadable_naming_sidecar(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    (tmp_path / (STEM + ".txt")).write_bytes(_sidecar_text().encode("utf-32"))
    err = assert_unreadable(p, "UTF-32")
    assert STEM + ".txt" in str(err)


def test_sidecar_binary_garbage_is_unreadable_naming_sidecar(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    garbage = bytes(np.random.default_rng(2).integers(1, 256, 3000, dtype=np.uint8))
    (tmp_path / (STEM + ".txt")).write_bytes(b"[SemImageFile]\r\n" + garbage.replace(b"\x00", b""))
    err = assert_unreadable(p, "not text|NUL")
    assert STEM + ".txt" in str(err)


def test_sidecar_too_large(tmp_path):
    p = _copy_real(tmp_path, sidecar=False)
    (tmp_path / (STEM + ".txt")).write_bytes(b"[SemImageFile]\r\n" + b"A=1\r\n" * 250_000)
    assert_unreadable(p, "larger than")


def test_bad_pixel_size_value(tmp_path):
    p = _synthetic(tmp_path)
    (tmp_path / "s4800.txt").write_text(_sidecar_text(pixel_nm="-3"), encoding="utf-8")
    assert_unreadable(p, "PixelSize")


def test_truncated_tiff_with_sidecar(tmp_path):
    p = _copy_real(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # the IFD sits at the end of this file
    assert_unreadable(p, "no readable first page|truncated or corrupt")


def test_missing_sidecar_and_no_tag_declines_to_generic(tmp_path):
    p = _synthetic(tmp_path)  # Hitachi-looking image, but nothing says Hitachi
    assert not HitachiReader().can_open(p.read_bytes()[:4096], p)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "generic_tiff"
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"


def test_unrelated_xpcomment_is_not_hitachi(tmp_path):
    p = _synthetic(tmp_path, tag_text="holiday photo, PixelSize unknown")
    assert not HitachiReader().can_open(p.read_bytes()[:4096], p)


def test_tag_only_synthetic(tmp_path):
    p = _synthetic(tmp_path, tag_text="SerialNumber=1\r\nPixelSize=250\r\nSignalName=SE\r\n")
    da = pipeline.read(p)
    assert da.attrs["reader"] == "hitachi"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.25, rel=1e-9)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image\n", encoding="utf-8")
    assert_unreadable(p, "no reader recognises")
