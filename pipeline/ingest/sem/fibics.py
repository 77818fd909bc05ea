"""Zeiss / Fibics Atlas Engine TIFFs (Atlas 5, FIB-SEM slices): tag 51023 ``<Fibics>`` XML.

``<Scan>`` gives the pixel as two vectors in µm per pixel: ``U = (Ux, Uy)`` for one step
along a row and ``V = (Vx, Vy)`` for one step down a column, in stage coordinates. The pixel
size is their length (``|U|``, ``|V|``; equal to ``Ux`` and ``|Vy|`` without scan rotation).

A negative ``Vy`` means stage y points up while image rows go down, i.e. the y axes of the
image and of the stage are opposite. The raster itself is stored top row first, as written
(checked on the real Atlas slice: the protective cap and the FIB curtaining start at row 0),
so the reader does not flip it; the axis relation is recorded in the header. No data bar.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.tiffio import (
    first_page,
    has_tag,
    open_tiff,
    parse_tag_xml,
    raw_tag_bytes,
    read_page,
)

__all__ = ["FibicsReader"]

log = logging.getLogger(__name__)

TAG_FIBICS = 51023


def _num(path: Path, scan, name: str) -> float:
    text = scan.findtext(name)
    try:
        v = float((text or "").strip())
    except ValueError:
        raise UnreadableInput(path, f"Fibics <Scan><{name}> = {text!r} is not a number") from None
    if not math.isfinite(v):
        raise UnreadableInput(path, f"Fibics <Scan><{name}> = {text!r} is not finite")
    return v


class FibicsReader:
    """Fibics Atlas TIFF: tag 51023 XML, pixel from <Scan> Ux/Vy (µm/px)."""

    name = "fibics"
    label = "Fibics"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Zeiss Fibics Atlas TIFF (FibicsXML in tag 51023)"
    expects = "a TIFF whose first IFD has tag 51023 (FibicsXML)"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return has_tag(head, path, TAG_FIBICS)

    def open(self, path: Path):
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            blob = raw_tag_bytes(path, tif, page, TAG_FIBICS)
            if blob is None:
                raise UnreadableInput(path, "no FibicsXML tag (51023) on the first page")
            root = parse_tag_xml(path, blob, "Fibics XML (tag 51023)")
            image = read_page(path, page)
        scan = _scan(path, root)
        dx, dy, vy = _pixel_size(path, scan)
        img = root.find("Image")
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=(dx, dy),
            pixel_size_source="Fibics <Scan> Ux/Vy",
            vendor="Zeiss (Fibics Atlas)",
            instrument=_image_text(img, "Machine"),
            fmt="fibics-tiff",
            databar_rows=0,
            databar_method="none",
            magnification=None,
            kv=_aperture_kv(img),
            detector=_image_text(img, "Detector") or None,
            header=_header(root, scan, img, vy),
            y_axis_flipped=vy < 0,
        )


def _scan(path: Path, root):
    """The ``<Scan>`` element of the Fibics XML; refused when there is none."""
    scan = root.find("Scan")
    if scan is None:
        raise UnreadableInput(path, "Fibics XML has no <Scan> element: corrupt metadata")
    return scan


def _pixel_size(path: Path, scan) -> tuple[float, float, float]:
    """Pixel size in um along x and y (the lengths of the U and V step vectors), and ``Vy``.

    ``Ux`` and ``Vy`` are required; ``Uy`` and ``Vx`` (scan rotation) default to 0.
    """
    ux, vy = _num(path, scan, "Ux"), _num(path, scan, "Vy")
    uy = _num(path, scan, "Uy") if scan.find("Uy") is not None else 0.0
    vx = _num(path, scan, "Vx") if scan.find("Vx") is not None else 0.0
    return math.hypot(ux, uy), math.hypot(vx, vy), vy


def _image_text(img, name: str) -> str:
    """The text of ``<Image><name>``; "" when there is no ``<Image>``, no such child or no text."""
    return (img.findtext(name) if img is not None else "") or ""


def _header(root, scan, img, vy: float) -> dict[str, object]:
    """The header: every childless ``<Scan>`` and ``<Image>`` element, the relation of the
    stage y axis to the image rows, and the Atlas software version."""
    header: dict[str, object] = {
        f"Scan.{el.tag}": (el.text or "").strip() for el in scan if len(el) == 0
    }
    if img is not None:
        header.update({f"Image.{el.tag}": (el.text or "").strip() for el in img
                       if len(el) == 0})
    header["y_axis"] = (
        "Vy < 0: stage y is opposite to image rows; raster kept as stored, row 0 = top"
        if vy < 0 else "Vy >= 0: stage y runs with image rows; raster kept as stored")
    header["software"] = root.findtext("Application/Version") or ""
    return header


def _aperture_kv(img) -> float | None:
    """Accelerating voltage in kV from the end of ``<Image><Aperture>``; None if it gives none."""
    aperture = _image_text(img, "Aperture")
    if "kV)" not in aperture:  # e.g. "[1] 30 µm [HC] (5.0 kV)"
        return None
    try:
        return float(aperture.rsplit("(", 1)[1].split("kV")[0])
    except (IndexError, ValueError):
        return None
