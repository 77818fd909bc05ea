"""Olympus Soft Imaging System (analySIS / SIS) TIFFs, through tifffile's ``sis_metadata``.

The binary ``OlympusSIS`` tag (33560) holds a ``SIS0`` structure whose general-data block
gives the calibration as mantissa and power-of-ten exponent; tifffile returns it as
``pixelsizex`` / ``pixelsizey`` in metres (RosettaSciIO reads the same fields as metres).
``OlympusINI`` (33471) adds text settings. No data bar is stored.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.tiffio import (
    first_page,
    is_tiff,
    open_tiff,
    read_page,
    sniff_info,
)

__all__ = ["OlympusSisReader"]

log = logging.getLogger(__name__)

TAG_OLYMPUS_SIS = 33560
TAG_OLYMPUS_INI = 33471


def _positive(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


class OlympusSisReader:
    """Olympus SIS TIFF (tags 33560 / 33471)."""

    name = "olympus_sis"
    label = "Olympus SIS"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Olympus Soft Imaging System TIFF (OlympusSIS tag 33560, pixel size in m)"
    expects = "a TIFF with the OlympusSIS tag 33560 or OlympusINI tag 33471"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        info = sniff_info(path)
        return bool(info and {TAG_OLYMPUS_SIS, TAG_OLYMPUS_INI} & info["tags"])

    def open(self, path: Path):
        """Read the first page; pixel size from ``sis_metadata`` (metres -> micrometres).

        Raises
        ------
        UnreadableInput
            Truncated or corrupt TIFF, colour or non-integer pixels.
        """
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            try:
                meta = dict(tif.sis_metadata or {})
            except Exception as exc:  # a broken SIS block; the image is still read
                log.warning("%s: OlympusSIS metadata unreadable (%s)", path, exc)
                meta = {}
            image = read_page(path, page)
        dx_m, dy_m = _positive(meta.get("pixelsizex")), _positive(meta.get("pixelsizey"))
        header = {k: str(meta[k]) for k in ("name", "datetime", "cameraname", "picturetype",
                                             "pixelsizex", "pixelsizey") if k in meta}
        if dx_m is None:
            log.warning("%s: OlympusSIS metadata gives no pixel size; uncalibrated", path)
            ps, source = None, None
        else:
            ps = (dx_m * 1e6, (dy_m or dx_m) * 1e6)
            source = "Olympus SIS tag 33560 pixelsizex/pixelsizey (m)"
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=ps,
            pixel_size_source=source,
            vendor="Olympus SIS",
            instrument=str(meta.get("cameraname", "") or ""),
            fmt="olympus-sis-tiff",
            magnification=_positive(meta.get("magnification")),
            header=header,
        )
