"""Single-channel floating-point TIFF height maps whose metadata give the physical scale.

Two metadata conventions are understood, and nothing else:

(a) ImageJ: an ImageJ ``ImageDescription`` with ``unit=`` (um, micron, µm, nm, mm, m) makes
    the XResolution / YResolution tags pixels per that unit (ImageJ's own calibration; if
    YResolution is absent ImageJ uses XResolution for y, and so do we). ``vunit=`` is the
    unit of the values (z). This is the only case where XResolution is trusted.
(b) tifffile: a JSON ``ImageDescription`` as ``tifffile.imwrite(..., metadata={...})`` writes
    it, holding ``"pixel_size_um": {"x": .., "y": ..}`` and ``"z_unit"``.

XResolution without an ImageJ length unit is display resolution (DPI) in every real file
and is never used; nor are ImageJ units "inch" or "cm", which ImageJ derives from such DPI
tags. A missing pixel size or z unit is ``MissingCalibration``.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import length_unit_to_um
from pipeline.ingest.limits import check_expansion, check_shape

__all__ = ["FloatTiffReader", "tiff_length_unit_to_um"]

log = logging.getLogger(__name__)

_DPI_UNITS = ("inch", "in", "cm", "centimeter")
_MAX_IFD_ENTRIES = 4096
_TAG_BITS, _TAG_SPP, _TAG_SAMPLEFORMAT = 258, 277, 339
_IEEEFP = 3


def tiff_length_unit_to_um(unit: object) -> float | None:
    """Micrometres per `unit` (um, micron, µm, nm, mm, m, ...; ImageJ's ``\\u00B5m`` escape
    included); None for anything else, and for "inch" and "cm", which ImageJ derives from
    display-DPI tags."""
    if not isinstance(unit, str):
        return None
    u = unit.strip().replace("\\u00B5", "\u00b5").replace("\\u00b5", "\u00b5")
    if u.lower() in _DPI_UNITS:
        return None
    return length_unit_to_um(u)


def _first_ifd_is_float_gray(head: bytes, path: Path) -> bool:
    """Sniff the first IFD: SampleFormat IEEE float, 32/64 bits, one sample per pixel."""
    magic = head[:4]
    if magic in (b"II*\x00", b"MM\x00*"):
        big = False
    elif magic in (b"II+\x00", b"MM\x00+"):
        big = True
    else:
        return False
    bo = "<" if magic[:2] == b"II" else ">"
    # offset, count and entry-number formats, entry size, value-field size
    off_fmt, cnt_fmt, n_fmt, esize, vsize = (
        ("Q", "Q", "Q", 20, 8) if big else ("I", "I", "H", 12, 4))
    hdr = 16 if big else 8
    if len(head) < hdr:
        return False
    (ifd,) = struct.unpack_from(bo + off_fmt, head, hdr - struct.calcsize(off_fmt))
    nlen = struct.calcsize(n_fmt)
    blob = _bytes_at(head, path, ifd, nlen)
    (n,) = struct.unpack(bo + n_fmt, blob)
    if not 0 < n <= _MAX_IFD_ENTRIES:
        return False
    entries = _bytes_at(head, path, ifd + nlen, n * esize)
    tags = {_TAG_BITS: 1, _TAG_SPP: 1, _TAG_SAMPLEFORMAT: 1}
    for i in range(n):
        e = i * esize
        tag, typ = struct.unpack_from(bo + "HH", entries, e)
        if tag not in tags:
            continue
        (count,) = struct.unpack_from(bo + cnt_fmt, entries, e + 4)
        size = {3: 2, 4: 4, 16: 8}.get(typ)
        if size is None or count != 1 or size > vsize:
            return False  # several samples (values stored elsewhere) or an odd type
        value_at = e + 4 + struct.calcsize(cnt_fmt)  # values are left-justified in the field
        (tags[tag],) = struct.unpack_from(bo + {2: "H", 4: "I", 8: "Q"}[size], entries, value_at)
    return (tags[_TAG_SPP] == 1 and tags[_TAG_SAMPLEFORMAT] == _IEEEFP
            and tags[_TAG_BITS] in (32, 64))


def _bytes_at(head: bytes, path: Path, offset: int, size: int) -> bytes:
    if offset + size <= len(head):
        return head[offset:offset + size]
    with open(path, "rb") as fh:
        fh.seek(offset)
        blob = fh.read(size)
    if len(blob) != size:
        raise EOFError("IFD runs past the end of the file")
    return blob


class FloatTiffReader:
    """Reader for float32/float64 single-channel TIFF height maps with ImageJ or JSON scale."""

    name = "float_tiff"
    kind = "height"
    suffixes = (".tif", ".tiff")
    description = "float32/64 single-channel TIFF height map (ImageJ or tifffile JSON scale)"
    expects = "a TIFF (II*/MM*/BigTIFF) whose first page is one float32/float64 sample"
    priority = 30

    def can_open(self, head: bytes, path: Path) -> bool:
        try:
            return _first_ifd_is_float_gray(head, path)
        except (struct.error, OSError, EOFError, KeyError):
            return False

    def open(self, path: Path):
        """Read the first page.

        Raises
        ------
        UnreadableInput
            Not a float single-channel TIFF, truncated or corrupt, malformed metadata, zero
            or non-finite pixel size.
        MissingCalibration
            No pixel size (ImageJ unit + XResolution, or JSON pixel_size_um) or no z unit.
        """
        import tifffile

        path = Path(path)
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                info = _page_info(path, page)
                check_shape(path, *info["shape"], what="TIFF page")
                stored = sum(page.databytecounts) if page.databytecounts else 0
                decoded = info["shape"][0] * info["shape"][1] * page.dtype.itemsize
                check_expansion(path, decoded, stored, "TIFF image data")
                ij = tif.imagej_metadata if tif.is_imagej else None
                n_pages = len(tif.pages)
                raw = page.asarray()
        except (tifffile.TiffFileError, ValueError, OSError, EOFError, struct.error,
                IndexError, KeyError, MemoryError) as exc:
            raise UnreadableInput(
                path, f"TIFF is truncated or corrupt ({type(exc).__name__}: {exc})"
            ) from None
        header = {"dtype": str(raw.dtype), "pages": n_pages, "software": info["software"]}
        if n_pages > 1:
            log.info("%s: %d pages; reading the first only", path, n_pages)
        if ij is not None:
            dx, dy, z_scale, source = _imagej_scale(path, ij, info, header)
        else:
            dx, dy, z_scale, source = _json_scale(path, info["description"], header)
        if raw.ndim != 2:
            raise UnreadableInput(path, f"TIFF page has shape {raw.shape}; expected 2-D")
        z_um = np.multiply(raw, z_scale, dtype=np.float64)
        return height_dataarray(z_um, path=path, dx_um=dx, dy_um=dy, pixel_size_source=source,
                                vendor="", instrument="", fmt="tiff", header=header)


def _page_info(path: Path, page) -> dict:
    if page.samplesperpixel != 1 or page.sampleformat != _IEEEFP or page.bitspersample not in (
            32, 64):
        raise UnreadableInput(
            path, f"first TIFF page has {page.samplesperpixel} samples of {page.dtype}; a height "
            "map must be one float32 or float64 sample per pixel")
    shape = tuple(int(s) for s in page.shape)
    if len(shape) != 2:
        raise UnreadableInput(path, f"first TIFF page has shape {shape}; expected 2-D")
    tags = page.tags
    return {
        "shape": shape,
        "description": page.description or "",
        "software": str(page.software or ""),
        "xres": tags["XResolution"].value if "XResolution" in tags else None,
        "yres": tags["YResolution"].value if "YResolution" in tags else None,
    }


def _per_unit(path: Path, rational, name: str) -> float:
    """Unit length of one pixel from a pixels-per-unit rational (num, den)."""
    try:
        num, den = (float(v) for v in rational)
    except (TypeError, ValueError):
        raise UnreadableInput(path, f"{name} {rational!r} is not a rational") from None
    if not (num > 0 and den > 0 and math.isfinite(num) and math.isfinite(den)):
        raise UnreadableInput(
            path, f"{name} is {rational!r}; it does not give a finite positive pixel size")
    return den / num


def _imagej_scale(path: Path, ij: dict, info: dict, header: dict):
    header.update({f"imagej.{k}": v for k, v in ij.items() if isinstance(v, (str, int, float))})
    unit = ij.get("unit")
    if unit is None:
        raise MissingCalibration(
            path, "ImageJ description has no unit=, so XResolution is display resolution, not "
            "a pixel size; calibrate the image in ImageJ (Analyze > Set Scale) or supply one")
    xy = tiff_length_unit_to_um(unit)
    if xy is None:
        why = " (derived from display DPI)" if str(unit).strip().lower() in _DPI_UNITS else ""
        raise MissingCalibration(
            path, f"ImageJ unit {unit!r}{why} is not a microscope length unit (um, micron, "
            "nm, mm, m); the pixel size is unknown")
    if info["xres"] is None:
        raise MissingCalibration(path, f"ImageJ unit={unit} but no XResolution tag")
    dx = _per_unit(path, info["xres"], "XResolution") * xy
    dy = dx if info["yres"] is None else _per_unit(path, info["yres"], "YResolution") * xy
    if info["yres"] is None:
        header["y_resolution"] = "absent; XResolution used for y, as ImageJ does"
    if "cf" in ij and str(ij["cf"]).strip() != "20":
        raise UnreadableInput(
            path, f"ImageJ value calibration function cf={ij['cf']} is not supported; "
            "export the heights themselves")
    vunit = ij.get("vunit")
    if vunit is None:
        raise MissingCalibration(path, "ImageJ description has no vunit=: the z unit is unknown")
    z_scale = tiff_length_unit_to_um(vunit)
    if z_scale is None:
        raise MissingCalibration(path, f"ImageJ vunit {vunit!r} is not a length: the z unit is "
                                       "unknown")
    return dx, dy, z_scale, f"ImageJ unit={unit} with XResolution/YResolution (pixels per unit)"


def _json_scale(path: Path, description: str, header: dict):
    meta = None
    if description.lstrip().startswith("{"):
        try:
            meta = json.loads(description)
        except json.JSONDecodeError as exc:
            raise UnreadableInput(path, f"JSON ImageDescription is malformed ({exc})") from None
    if not isinstance(meta, dict) or "pixel_size_um" not in meta:
        raise MissingCalibration(
            path, "no pixel size in the TIFF metadata: expected an ImageJ description with "
            "unit= and XResolution, or a JSON description with pixel_size_um {x, y}; "
            "XResolution alone is display DPI and is not used")
    ps = meta["pixel_size_um"]
    try:
        dx, dy = float(ps["x"]), float(ps["y"])
    except (TypeError, KeyError, ValueError):
        raise UnreadableInput(
            path, f"JSON pixel_size_um is {ps!r}; expected {{\"x\": number, \"y\": number}}"
        ) from None
    header.update({f"json.{k}": v for k, v in meta.items() if isinstance(v, (str, int, float))})
    if "z_unit" not in meta:
        raise MissingCalibration(path, "JSON description has no z_unit: the z unit is unknown")
    z_scale = tiff_length_unit_to_um(meta["z_unit"])
    if z_scale is None:
        raise MissingCalibration(
            path, f"JSON z_unit {meta['z_unit']!r} is not a length: the z unit is unknown")
    return dx, dy, z_scale, "TIFF JSON ImageDescription pixel_size_um"
