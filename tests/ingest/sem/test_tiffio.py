import numpy as np
import tifffile

from pipeline.ingest.sem.tiffio import first_page, open_tiff, read_page


def test_reduced_resolution_first_page_is_skipped(tmp_path):
    p = tmp_path / "thumb_first.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(np.full((8, 10), 7, np.uint8), subfiletype=1)  # a thumbnail first
        tw.write(np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) % 4000)
    with open_tiff(p) as tif:
        img = read_page(p, first_page(p, tif))
    assert img.shape == (40, 50) and img.dtype == np.uint16


def test_grey_palette_is_applied_not_assumed(tmp_path):
    p = tmp_path / "pal.tif"
    idx = np.array([[0, 1], [2, 3]], np.uint8)
    ramp = (255 - np.arange(256)) * 257  # an inverted grey ramp: index 0 is white
    cmap = np.stack([ramp, ramp, ramp]).astype(np.uint16)
    tifffile.imwrite(p, idx, photometric="palette", colormap=cmap)
    with open_tiff(p) as tif:
        img = read_page(p, first_page(p, tif))
    assert img.tolist() == [[255, 254], [253, 252]]
