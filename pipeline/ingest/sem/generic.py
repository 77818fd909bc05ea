"""Fallback for any other 8/16-bit grey TIFF: pixels yes, calibration no.

Nothing in a plain TIFF gives a trustworthy pixel size (XResolution is display DPI), so the
image is returned uncalibrated (``pixel_size_um`` None, ``calibration`` "missing", vendor
"unknown"); measuring stages then ask for an instrument profile or the sample manifest.
Float TIFFs are height maps and are declined here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.tiffio import (
    first_page,
    is_tiff,
    open_tiff,
    read_page,
    sniff_info,
)

__all__ = ["GenericTiffReader"]

log = logging.getLogger(__name__)

_GREY_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


class GenericTiffReader:
    """Uncalibrated 8/16-bit grey TIFF of unknown origin."""

    name = "generic_tiff"
    label = "grey TIFF without vendor metadata"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "any other 8/16-bit grey TIFF, read uncalibrated (pixel size missing)"
    expects = "a TIFF whose first page is one 8- or 16-bit unsigned integer sample per pixel"
    priority = 80

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        info = sniff_info(path)
        return bool(info and info["samplesperpixel"] == 1 and info["dtype"] in _GREY_DTYPES)

    def open(self, path: Path):
        """Read the first page; no pixel size, no data bar handling.

        Raises
        ------
        UnreadableInput
            Truncated or corrupt TIFF, colour or float pixels.
        """
        path = Path(path)
        with open_tiff(path) as tif:
            image = read_page(path, first_page(path, tif))
        log.info("%s: TIFF of unknown origin; read uncalibrated", path)
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=None,
            pixel_size_source=None,
            vendor="unknown",
            fmt="tiff",
            header={"note": "no vendor metadata; TIFF XResolution (display DPI) is not used"},
        )
