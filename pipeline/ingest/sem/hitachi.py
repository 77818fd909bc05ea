"""Hitachi SEM TIFFs: ``<stem>.txt`` sidecar ``[SemImageFile]``, or TIFF tag 40092.

Layout facts (from the TM4000 file in ../shared/realdata/sem):

- The sidecar sits beside the image as ``<stem>.txt`` (paired by stem: its ``ImageName=``
  keeps the name at export, not the current one). UTF-16LE with a BOM and CRLF, or 8-bit.
  Section ``[SemImageFile]``; ``PixelSize`` is in nanometres with no unit written.
- Tabletop models (TM series) also store the same ``key=value`` lines, without a section
  header, in TIFF tag 40092 (XPComment, UTF-16LE).
- Priority: sidecar first, tag second. If both give a pixel size and they disagree, the
  sidecar wins, and a warning is logged and put in ``header["pixel_size_warning"]``.
- The data bar is painted over the bottom rows (``DataDisplayCombine=1``; ``DataSize``
  includes it) and is detected and cropped (`overlay.painted_bar_rows`).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.overlay import painted_bar_rows
from pipeline.ingest.sem.sidecar import find_sidecar, read_sidecar, sniff_sidecar
from pipeline.ingest.sem.tiffio import (
    first_page,
    is_tiff,
    open_tiff,
    parse_ini,
    read_page,
    sniff_info,
    tag_value,
)

__all__ = ["HitachiReader", "parse_tag_text", "pixel_size_nm"]

log = logging.getLogger(__name__)

TAG_XPCOMMENT = 40092
TAG_XPAUTHOR = 40093
SECTION = "SemImageFile"
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ]*)\s*$")
_NM_PER_UNIT = {"": 1.0, "nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "mm": 1e6, "pm": 1e-3}
_TAG_KEYS = ("DataNumber", "SerialNumber", "Condition", "InstructName")


def _xp_text(value) -> str | None:
    """Tag 40092/40093 bytes (UTF-16LE, maybe NUL-terminated) as text, or None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        try:
            value = bytes(value)
        except (TypeError, ValueError):
            return None
    if not isinstance(value, (bytes, bytearray)):
        return None
    return bytes(value).decode("utf-16-le", errors="replace").rstrip("\x00")


def parse_tag_text(text: str) -> dict[str, str]:
    """The ``key=value`` lines of tag 40092 (no section header) as a dict."""
    sections = parse_ini(text)
    out = dict(sections.get("", {}))
    out.update(sections.get(SECTION, {}))
    return out


def _looks_hitachi(fields: dict[str, str]) -> bool:
    return "PixelSize" in fields and any(k in fields for k in _TAG_KEYS)


def pixel_size_nm(path: str | Path, raw: str, where: str) -> float:
    """``PixelSize`` (nm unless a unit follows) as a finite positive float."""
    m = _NUMBER.match(raw or "")
    unit = m.group(2) if m else None
    if m is None or unit.lower() not in {u.lower() for u in _NM_PER_UNIT}:
        raise UnreadableInput(path, f"{where} PixelSize {raw!r} is not a length in nm")
    nm = float(m.group(1)) * _NM_PER_UNIT.get(unit, _NM_PER_UNIT.get(unit.lower(), 1.0))
    if not math.isfinite(nm) or nm <= 0:
        raise UnreadableInput(path, f"{where} PixelSize {raw!r} must be a finite positive length")
    return nm


def _leading_float(raw: str | None) -> float | None:
    m = re.match(r"\s*([-+]?\d+\.?\d*(?:[eE][-+]?\d+)?)", raw or "")
    return float(m.group(1)) if m else None


def _sidecar_head_is_hitachi(path: Path) -> bool:
    head = sniff_sidecar(path)
    return head is not None and f"[{SECTION}]" in head


class HitachiReader:
    """Hitachi SEM TIFF with its ``[SemImageFile]`` sidecar or tag 40092."""

    name = "hitachi"
    label = "Hitachi"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Hitachi SEM TIFF + <stem>.txt [SemImageFile] sidecar (or tag 40092)"
    expects = "a TIFF with a <stem>.txt [SemImageFile] sidecar, or tag 40092 with PixelSize="
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        if _sidecar_head_is_hitachi(Path(path)):
            return True
        return self._tag_fields(Path(path)) is not None

    @staticmethod
    def _tag_fields(path: Path) -> dict[str, str] | None:
        info = sniff_info(path)
        text = _xp_text(info["xpcomment"]) if info else None
        if not text:
            return None
        fields = parse_tag_text(text)
        return fields if _looks_hitachi(fields) else None

    def open(self, path: Path):
        """Read the first page, the sidecar and tag 40092, and crop the painted data bar.

        Raises
        ------
        UnreadableInput
            Truncated or corrupt TIFF, sidecar in an unexpected encoding or too large,
            PixelSize that is not a positive length.
        """
        path = Path(path)
        header: dict = {}
        side: dict[str, str] = {}
        car = find_sidecar(path)
        if car is not None:
            sc = read_sidecar(path, car)
            sections = parse_ini(sc.text)
            if SECTION in sections:
                side = sections[SECTION]
                header.update(sidecar=car.name, sidecar_encoding=sc.encoding)
            else:
                log.warning("%s: %s has no [%s] section; ignored", path, car.name, SECTION)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            tag = parse_tag_text(_xp_text(tag_value(page, TAG_XPCOMMENT)) or "")
            author = _xp_text(tag_value(page, TAG_XPAUTHOR)) or ""
            image = read_page(path, page)

        ps_um, source = self._pixel_size(path, side, tag, header)
        fields = {**tag, **side}  # sidecar first
        bar = 0
        if fields.get("DataDisplayCombine", "1").strip() != "0":
            bar = painted_bar_rows(image)
            if bar == 0:
                log.warning("%s: no painted Hitachi data bar found; nothing cropped", path)
        if bar:
            image = image[: image.shape[0] - bar]
        kv = _leading_float(fields.get("AcceleratingVoltage"))
        for k in ("SerialNumber", "DataSize", "PixelSize", "WorkingDistance", "Condition",
                  "Date", "Time", "ImageName"):
            if fields.get(k):
                header[k] = fields[k]
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=None if ps_um is None else (ps_um, ps_um),
            pixel_size_source=source,
            vendor="Hitachi",
            instrument=fields.get("InstructName") or author.strip(),
            fmt="hitachi-tiff",
            databar_rows=bar,
            databar_method=("detected: painted bar (row uniformity >= 50 %)" if bar else "none"),
            magnification=_leading_float(fields.get("Magnification")),
            kv=None if kv is None else kv / 1000.0,  # "15000 Volt"
            detector=fields.get("SignalName") or None,
            header=header,
        )

    @staticmethod
    def _pixel_size(path, side, tag, header) -> tuple[float | None, str | None]:
        s_nm = pixel_size_nm(path, side["PixelSize"], "sidecar") if "PixelSize" in side else None
        t_nm = pixel_size_nm(path, tag["PixelSize"], "tag 40092") if "PixelSize" in tag else None
        if s_nm is not None and t_nm is not None and abs(s_nm - t_nm) > 1e-6 * s_nm:
            msg = (f"sidecar PixelSize {s_nm:g} nm and TIFF tag 40092 PixelSize {t_nm:g} nm "
                   "disagree; the sidecar is used (documented priority)")
            log.warning("%s: %s", path, msg)
            header["pixel_size_warning"] = msg
        if s_nm is not None:
            return s_nm / 1000.0, "Hitachi sidecar [SemImageFile] PixelSize (nm)"
        if t_nm is not None:
            return t_nm / 1000.0, "Hitachi TIFF tag 40092 (XPComment) PixelSize (nm)"
        log.warning("%s: neither the sidecar nor tag 40092 gives PixelSize; uncalibrated", path)
        return None, None
