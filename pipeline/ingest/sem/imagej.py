"""Integer grey TIFFs calibrated in ImageJ (Analyze > Set Scale, then File > Save As TIFF).

ImageJ writes ``ImageJ=<version>`` and ``unit=<unit>`` lines into ImageDescription and stores
the scale as XResolution / YResolution in pixels per that unit. This is the one case where
XResolution is trusted, and only for the length units micron / um / µm / nm / mm. The units
inch and cm are what ImageJ shows for a file whose only scale was a display DPI, so they
are refused as display units: the image is then uncalibrated (with a warning), never scaled
from DPI. Float TIFFs are height maps and are left to the height readers.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.tiffio import (
    first_page,
    is_tiff,
    open_tiff,
    read_page,
    sniff_info,
    tag_value,
)

__all__ = ["ImageJReader", "imagej_unit_to_um", "parse_imagej_description"]

log = logging.getLogger(__name__)

TAG_XRESOLUTION, TAG_YRESOLUTION = 282, 283
_UM_PER_UNIT = {"micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0,
                "nm": 1e-3, "mm": 1e3}
_DISPLAY_UNITS = ("inch", "inches", "in", "cm", "centimeter", "centimetre")


def parse_imagej_description(text: str) -> dict[str, str]:
    """ImageJ's ``key=value`` description lines as a dict of raw strings."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k.strip():
            out[k.strip()] = v.strip()
    return out


def imagej_unit_to_um(unit: str) -> float | None:
    """Micrometres per ImageJ `unit` (``\\u00B5m`` escapes included); None if not trusted."""
    u = unit.strip().replace("\\u00B5", "\u00b5").replace("\\u00b5", "\u00b5").lower()
    return _UM_PER_UNIT.get(u)


def _per_unit(path: Path, value, axis: str) -> float:
    """A resolution tag (pixels per unit) as a finite positive float."""
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            ppu = float(Fraction(int(value[0]), int(value[1])))
        else:
            ppu = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise UnreadableInput(path, f"ImageJ {axis}Resolution {value!r} is not a number") from None
    if not math.isfinite(ppu) or ppu <= 0:
        raise UnreadableInput(path, f"ImageJ {axis}Resolution {value!r} must be positive")
    return ppu


def _is_integer_grey(page) -> bool:
    return (int(getattr(page, "samplesperpixel", 1)) == 1 and page.dtype is not None
            and np.dtype(page.dtype) in (np.dtype(np.uint8), np.dtype(np.uint16)))


class ImageJReader:
    """ImageJ-calibrated 8/16-bit grey TIFF."""

    name = "imagej"
    label = "ImageJ"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "ImageJ-calibrated 8/16-bit grey TIFF (unit= + XResolution pixels per unit)"
    expects = "a TIFF whose ImageDescription starts with ImageJ= and whose pixels are 8/16-bit grey"
    priority = 40

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        info = sniff_info(path)
        return bool(info and info["imagej"] and info["samplesperpixel"] == 1
                    and info["dtype"] in (np.dtype(np.uint8), np.dtype(np.uint16)))

    def open(self, path: Path):
        """Read the first page; pixel size = 1 / XResolution in the ImageJ unit.

        Raises
        ------
        UnreadableInput
            Truncated or corrupt TIFF; zero or non-numeric resolution with a length unit.
        """
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            desc = parse_imagej_description(page.imagej_description or "")
            xres, yres = tag_value(page, TAG_XRESOLUTION), tag_value(page, TAG_YRESOLUTION)
            image = read_page(path, page)
        unit = desc.get("unit", "")
        header = {"software": f"ImageJ {desc.get('ImageJ', '')}".strip(), "imagej_unit": unit}
        ps, source = None, None
        factor = imagej_unit_to_um(unit) if unit else None
        if factor is not None and xres is not None:
            yunit = desc.get("yunit", unit)
            yfactor = imagej_unit_to_um(yunit)
            if yfactor is None:
                raise UnreadableInput(path, f"ImageJ yunit {yunit!r} is not a length unit")
            dx = factor / _per_unit(path, xres, "X")
            dy = yfactor / _per_unit(path, yres if yres is not None else xres, "Y")
            ps, source = (dx, dy), f"ImageJ ImageDescription unit={unit} + XResolution (pixels/unit)"
        else:
            if unit.strip().lower() in _DISPLAY_UNITS:
                why = (f"ImageJ unit {unit!r} comes from display DPI, not from a calibration; "
                       "refused")
            elif not unit or unit.lower() == "pixel":
                why = "ImageJ TIFF without a spatial calibration (no unit)"
            elif factor is None:
                why = f"ImageJ unit {unit!r} is not a length unit we trust"
            else:
                why = "ImageJ unit given but no XResolution tag"
            log.warning("%s: %s; image uncalibrated", path, why)
            header["pixel_size_warning"] = why
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=ps,
            pixel_size_source=source,
            vendor="unknown",
            fmt="imagej-tiff",
            header=header,
        )
