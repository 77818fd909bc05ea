"""Zeiss SmartSEM TIFFs (Merlin, Ultra, Sigma, Supra, EVO, Crossbeam): tag 34118.

The tag holds CRLF-separated text: first a run of unnamed numbers (the first block of which
starts ``0, 0, 0, <pixel size re 1024-wide raster in m>, ...``), then a count, then pairs of
lines: an upper-case parameter id (``AP_IMAGE_PIXEL_SIZE``) and ``Label = value unit`` (or
``Label :value`` for dates). Text is latin-1 in the files seen (``\\xb5m``), UTF-8 is accepted.

Pixel size, in this order:

1. ``AP_IMAGE_PIXEL_SIZE`` (``Image Pixel Size = 2.615 µm``): the pixel of the stored image.
2. ``AP_WIDTH`` (the field width) divided by the stored image width.

``AP_PIXEL_SIZE`` alone is never used: it refers to a 1024-wide raster and is 2x wrong on
512- and 2048-wide stores. It is kept in the header, with the factor to the value used.
Units: pm, nm, µm/um, mm, m. Pixels are square (SmartSEM gives one pixel size).

The data zone is painted over the bottom of the stored raster and no tag gives its height.
It is detected as the run of bottom rows in which one grey value covers at least half the
row (`pipeline.ingest.sem.overlay`), allowing up to two unpainted rows below it: SmartSEM
leaves the last raster row (and sometimes two) unpainted under the zone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.height.binary import length_unit_to_um
from pipeline.ingest.limits import check_expansion, check_shape
from pipeline.ingest.sem.overlay import painted_bar_rows
from pipeline.ingest.sem.tiffio import (
    decode_text,
    first_page,
    has_tag,
    open_tiff,
    raw_tag_bytes,
    read_page,
)

__all__ = ["ZeissReader", "data_zone_rows", "parse_cz_sem", "parse_cz_sem_fields",
           "zeiss_quantity"]

log = logging.getLogger(__name__)

TAG_CZ_SEM = 34118
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z\u00b5\u03bc]*)"
                       r"\s*([A-Za-z]*)\s*$")
_MAX_SKIP_ROWS = 2  # unpainted raster rows below the data zone
_MIN_ZONE_ROWS = 8  # a shorter uniform run is image content, not a two-line data zone
_HEADER_KEYS = ("ap_image_pixel_size", "ap_pixel_size", "ap_width", "ap_height", "ap_mag",
                "ap_actualkv", "ap_manualkv", "ap_wd", "dp_detector_type",
                "dp_detector_channel", "dp_image_store", "sv_serial_number", "sv_version",
                "ap_date", "ap_time")


def parse_cz_sem(text: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """``({"ap_width": ("Width", "2.677 mm"), ...}, [unnamed values])`` from tag 34118 text."""
    named: dict[str, tuple[str, str]] = {}
    unnamed: list[str] = []
    key = None
    for raw in text.splitlines():
        line = raw.strip().strip("\x00")
        if key is not None:
            for sep in ("=", ":"):
                if sep in line:
                    label, _, value = line.partition(sep)
                    named[key] = (label.strip(), value.strip())
                    break
            key = None
        elif _KEY.match(line) and any(c.isalpha() for c in line):
            key = line.lower()
        elif line and not named:
            unnamed.append(line)
    return named, unnamed


def _key_lines(keys: tuple[str, ...]) -> re.Pattern:
    """A parameter line of one of `keys` (upper case in the file) and the line after it."""
    names = "|".join(re.escape(k.upper()) for k in keys)
    return re.compile(rf"^[ \t\r\x00]*({names})[ \t\r\x00]*$\n?([^\n]*)", re.MULTILINE)


_WANTED = _key_lines(_HEADER_KEYS)
_ANY_KEY = re.compile(r"^[ \t\r\x00]*[A-Z][A-Z0-9_]*[ \t\r\x00]*$", re.MULTILINE)


def parse_cz_sem_fields(text: str) -> tuple[dict[str, tuple[str, str]], list[str], bool]:
    """What the reader uses of the tag 34118 text, without walking every line of it: the
    `_HEADER_KEYS` parameters as `parse_cz_sem` gives them, the unnamed values before the
    first parameter, and whether the text has any parameter line at all."""
    if "\r" in text and "\n" not in text:  # old Mac line ends
        text = text.replace("\r", "\n")
    named: dict[str, tuple[str, str]] = {}
    for m in _WANTED.finditer(text):
        line = m.group(2).strip().strip("\x00")
        for sep in ("=", ":"):
            if sep in line:
                label, _, value = line.partition(sep)
                named[m.group(1).lower()] = (label.strip(), value.strip())  # the last wins
                break
    first = next((k for k in _ANY_KEY.finditer(text) if any(c.isalpha() for c in k.group())),
                 None)
    head = text if first is None else text[:first.start()]
    unnamed = [ln for ln in (raw.strip().strip("\x00") for raw in head.splitlines()) if ln]
    return named, unnamed, first is not None


def zeiss_quantity(value: str) -> tuple[float, str] | None:
    """``"2.615 µm"`` -> (2.615, "µm"); ``"50.00 K X"`` -> (50000.0, "X"); None otherwise."""
    m = _QUANTITY.match(value or "")
    if not m:
        return None
    number, unit, rest = float(m.group(1)), m.group(2), m.group(3)
    if unit == "K" and rest == "X":  # magnification "50.00 K X"
        return number * 1e3, "X"
    if rest:
        return None
    return number, unit


def _length_um(path: Path, key: str, entry: tuple[str, str] | None) -> float | None:
    if entry is None:
        return None
    q = zeiss_quantity(entry[1])
    scale = length_unit_to_um(q[1]) if q else None
    if q is None or scale is None:
        raise UnreadableInput(path, f"Zeiss {key.upper()} = {entry[1]!r} is not a length in "
                                    "pm, nm, um, mm or m: corrupt metadata")
    return q[0] * scale


def data_zone_rows(image) -> int:
    """Rows of the data zone painted over the bottom of a SmartSEM raster (0 if none)."""
    ny = image.shape[0]
    for skip in range(_MAX_SKIP_ROWS + 1):
        if ny - skip <= 0:
            break
        rows = painted_bar_rows(image[: ny - skip])
        if rows >= _MIN_ZONE_ROWS:
            return rows + skip
    return 0


class ZeissReader:
    """Zeiss SmartSEM TIFF: tag 34118 text; painted data zone detected and cropped."""

    name = "zeiss"
    label = "Zeiss"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Zeiss SmartSEM TIFF (CZ_SEM text in tag 34118)"
    expects = "a TIFF whose first IFD has tag 34118 (CZ_SEM)"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return has_tag(head, path, TAG_CZ_SEM)

    def open(self, path: Path):
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            blob = raw_tag_bytes(path, tif, page, TAG_CZ_SEM)
            if blob is None:
                raise UnreadableInput(path, "no Zeiss CZ_SEM tag (34118) on the first page")
            named, unnamed, any_key = parse_cz_sem_fields(decode_text(blob))
            if not any_key:
                raise UnreadableInput(path, "Zeiss tag 34118 holds no AP_/DP_/SV_ parameter "
                                            "lines: corrupt metadata")
            image, colour_idx = _read_zeiss_page(path, page)
        return _build(path, image, named, unnamed, colour_idx)


def _read_zeiss_page(path: Path, page):
    """Pixels of a SmartSEM page, and the palette indices that are colours (None if none).

    SmartSEM palettes are a grey ramp in which a few entries (every 9th on the ULTRA 55 file)
    are colours used for the logo and markers drawn in the data zone. `read_page` refuses a
    palette that is not grey; here the colour entries are converted to their luminance and
    reported, and every other entry must be grey.
    """
    import numpy as np

    cmap = page.colormap if page.photometric == 3 else None
    if cmap is None:
        return read_page(path, page), None
    cmap = np.asarray(cmap).astype(np.int64)
    colour = (cmap[0] != cmap[1]) | (cmap[0] != cmap[2])
    if not colour.any():
        return read_page(path, page), None
    if cmap.shape[1] != 256 or colour.sum() > 32 or page.dtype != np.uint8:
        raise UnreadableInput(path, "TIFF palette is not grey (R, G and B differ in "
                                    f"{int(colour.sum())} entries)")
    check_shape(path, *page.shape, what="TIFF page")
    check_expansion(path, page.shape[0] * page.shape[1], int(sum(page.databytecounts or (0,))),
                    "TIFF image data")
    try:
        idx = page.asarray()
    except Exception as exc:  # as tiffio.read_page: any decode failure
        raise UnreadableInput(
            path, f"TIFF image data is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
    grey = (cmap[0] * 299 + cmap[1] * 587 + cmap[2] * 114) // 1000
    lut = (grey >> 8).astype(np.uint8)
    return lut[idx], np.nonzero(colour)[0]


def _numeric_block_pixel(unnamed: list[str], nx: int) -> float | None:
    """Pixel size in um from the unnamed numeric block: value [3] (m, re 1024) x 1024 / nx."""
    if len(unnamed) <= 3:
        return None
    try:
        v = float(unnamed[3])
    except ValueError:
        return None
    if not (v > 0 and v < 1.0):
        return None
    return v * 1e6 * 1024.0 / nx


def _header(named: dict, unnamed: list[str], colour_idx) -> dict[str, object]:
    """The header: the known parameters' values, the palette's colour entries and unnamed [3]."""
    header: dict[str, object] = {k: named[k][1] for k in _HEADER_KEYS if k in named}
    if colour_idx is not None:
        header["palette_colour_entries"] = ", ".join(str(int(i)) for i in colour_idx)
    if len(unnamed) > 3:
        header["unnamed[3]"] = unnamed[3]
    return header


def _named_pixel_size(path: Path, named: dict, nx: int) -> tuple[float | None, str | None]:
    """Pixel size in um and its source: AP_IMAGE_PIXEL_SIZE, else AP_WIDTH / image width;
    (None, None) without either. AP_PIXEL_SIZE is never used (see the module docstring)."""
    ips = _length_um(path, "ap_image_pixel_size", named.get("ap_image_pixel_size"))
    if ips is not None:
        return ips, "Zeiss AP_IMAGE_PIXEL_SIZE"
    width = _length_um(path, "ap_width", named.get("ap_width"))
    if width is not None:
        return width / nx, f"Zeiss AP_WIDTH / image width ({nx})"
    return None, None


def _ap_pixel_size_note(path: Path, named: dict, pixel: float | None) -> str | None:
    """A note saying AP_PIXEL_SIZE is not used (with its factor to `pixel`), or None without a
    readable AP_PIXEL_SIZE."""
    try:
        aps = _length_um(path, "ap_pixel_size", named.get("ap_pixel_size"))
    except UnreadableInput:
        aps = None
    if aps is None:
        return None
    return ("AP_PIXEL_SIZE refers to a 1024-wide raster and is not used"
            + (f"; it is {aps / pixel:.4g} x the pixel size used" if pixel else ""))


def _refine_pixel(pixel: float, source: str, unnamed: list[str], nx: int) -> tuple[float, str]:
    """The pixel size and source, taken to 7 digits from the numeric block when it agrees."""
    precise = _numeric_block_pixel(unnamed, nx)
    # The named values are printed to 4 digits; the numeric block carries the same pixel
    # (re a 1024-wide raster, in metres) to 7. Use it when it agrees within the print.
    if precise is not None and abs(precise / pixel - 1) <= 5e-4:
        return precise, source + " (7 digits from the numeric block [3] x 1024 / width)"
    return pixel, source


def _kv(named: dict) -> float | None:
    """Accelerating voltage in kV from AP_ACTUALKV (kV or V); None if absent or another unit."""
    kv = zeiss_quantity(named.get("ap_actualkv", ("", ""))[1])
    if kv is None:
        return None
    factor = {"kV": 1.0, "V": 1e-3}.get(kv[1])
    return kv[0] * factor if factor is not None else None


def _magnification(named: dict) -> float | None:
    """Magnification from AP_MAG (``"50.00 K X"`` -> 50000.0); None if absent or not in X."""
    mag = zeiss_quantity(named.get("ap_mag", ("", ""))[1])
    return mag[0] if mag and mag[1] == "X" else None


def _detector(named: dict) -> str | None:
    """The detector: DP_DETECTOR_TYPE, else DP_DETECTOR_CHANNEL; None if neither has a value."""
    detector = (named.get("dp_detector_type") or named.get("dp_detector_channel") or ("", ""))[1]
    return detector or None


def _build(path: Path, image, named: dict, unnamed: list[str], colour_idx=None):
    ny, nx = image.shape
    header = _header(named, unnamed, colour_idx)

    pixel, source = _named_pixel_size(path, named, nx)
    note = _ap_pixel_size_note(path, named, pixel)
    if note is not None:
        header["note_ap_pixel_size"] = note
    if pixel is None:
        header["note"] = "neither AP_IMAGE_PIXEL_SIZE nor AP_WIDTH: uncalibrated"
    else:
        pixel, source = _refine_pixel(pixel, source, unnamed, nx)

    bar = data_zone_rows(image)
    return sem_dataarray(
        image[: ny - bar],
        path=path,
        pixel_size_um=None if pixel is None else (pixel, pixel),
        pixel_size_source=source,
        vendor="Zeiss",
        instrument=named.get("sv_serial_number", ("", ""))[1],
        fmt="zeiss-smartsem-tiff",
        databar_rows=bar,
        databar_method="detected: uniform rows" if bar else "none",
        magnification=_magnification(named),
        kv=_kv(named),
        detector=_detector(named),
        header=header,
    )
