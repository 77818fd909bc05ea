"""Decompression bombs and oversized members are refused before anything large is allocated."""

import numpy as np

from tests.helpers import assert_unreadable
from tests.ingest.height.test_sur import compressed_block, sur_object
from tests.ingest.height.test_x3p import main_xml, write_x3p
from tests.ingest.height.test_zon import zon_bytes


def test_sur_compressed_bomb(tmp_path):
    raw = np.zeros((1500, 1500), "<i4")  # zeros deflate about a thousand-fold
    block = compressed_block(raw.tobytes(), n_streams=1)
    p = tmp_path / "bomb.sur"
    p.write_bytes(sur_object(raw, magic=b"DSCOMPRESSED", data=block, compressed_size=len(block)))
    assert_unreadable(p, "SUR compressed data would expand .*-fold .* decompression bomb")


def test_tiff_deflate_bomb(tmp_path):
    import tifffile

    p = tmp_path / "bomb.tif"
    tifffile.imwrite(p, np.zeros((3000, 3000), np.float32), compression="zlib",
                     metadata={"pixel_size_um": {"x": 1.0, "y": 1.0}, "z_unit": "um"})
    assert_unreadable(p, "TIFF image data would expand .*-fold")


def test_zon_zstd_height_bomb(tmp_path):
    p = tmp_path / "bomb.zon"
    p.write_bytes(zon_bytes(np.zeros((1500, 1500), np.int32), magic=b"KPK1"))
    assert_unreadable(p, "ZON height member .* inflates beyond")


def test_x3p_oversized_main_xml(tmp_path, monkeypatch):
    from pipeline.ingest.height import x3p

    monkeypatch.setattr(x3p, "MAX_XML_BYTES", 2000)
    xml = main_xml(nx=2, ny=2).replace(b"<Record3>", b"<!--" + b" " * 4000 + b"--><Record3>")
    p = write_x3p(tmp_path / "big.x3p", xml, {"bindata/data.bin": np.zeros(4, "<f8").tobytes()})
    assert_unreadable(p, "zip member 'main.xml' declares .* bytes; the limit is 2000")
