"""JEOL SEM TIFFs with their ``<stem>.txt`` sidecar of ``$KEY value`` lines.

Layout facts (the 4700F and 7800F sidecars in ../shared/realdata/sem):

- The TIFF carries no JEOL tag; only the sidecar (``$CM_FORMAT JEOL-SEM``) says what it is,
  so without a sidecar this reader declines and the generic TIFF reader gives an
  uncalibrated image.
- Pixel size, in order of trust:
  1. ``$$SM_MICRON_MARKER`` (a length with its unit, e.g. ``500um``) / ``$$SM_MICRON_BAR``
     (the scale bar's length in pixels);
  2. ``$CM_FIELD_OF_VIEW`` (x and y in micrometres) / image width;
  3. the magnification rule 0.128 m / ``$CM_MAG`` / image width, used with a logged
     warning and a 6 % relative uncertainty (``header["pixel_size_uncertainty_rel"]``):
     exact for the 4700F file, 6 % off for the 7800F sidecar.
- JEOL burns the accelerating voltage, magnification and a scale bar into the bottom of the
  live image. That region is found (`overlay.burned_in_region`), recorded in
  ``masked_regions`` and left in place: the rows around it are still image.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.overlay import burned_in_region
from pipeline.ingest.sem.sidecar import find_sidecar, read_sidecar, sniff_sidecar
from pipeline.ingest.sem.tiffio import first_page, is_tiff, open_tiff, read_page

__all__ = [
    "MAG_RULE_UNCERTAINTY_REL",
    "MAG_RULE_WIDTH_M",
    "JeolReader",
    "jeol_pixel_size",
    "parse_jeol_sidecar",
    "parse_length_um",
]

log = logging.getLogger(__name__)

MAG_RULE_WIDTH_M = 0.128
MAG_RULE_UNCERTAINTY_REL = 0.06
_SNIFF_KEYS = ("$CM_FORMAT JEOL", "$SEM_DATA_VERSION", "$$SM_MICRON_MARKER", "$CM_MAG ")
_LENGTH = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d.+-]*)\s*$")
_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3,
                "m": 1e6, "pm": 1e-6}


def parse_jeol_sidecar(text: str) -> dict[str, str]:
    """``$KEY value`` / ``$$KEY value`` lines as ``{"KEY": "value"}`` (dollars dropped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("$"):
            continue
        key, _, value = line.partition(" ")
        key = key.lstrip("$")
        if key:
            out.setdefault(key, value.strip())
    return out


def parse_length_um(raw: str) -> float | None:
    """``"500um"``, ``"10 um"``, ``"200nm"``, ``"1mm"`` as micrometres; None if not a length."""
    m = _LENGTH.match(raw or "")
    if not m:
        return None
    unit = m.group(2).replace("\u00b5", "µ").lower()
    factor = _UM_PER_UNIT.get(unit) if unit else None
    if factor is None and unit.endswith("m") and len(unit) == 2 and unit[0] not in "nmp":
        factor = 1.0  # a micro sign mangled by an 8-bit codepage ("ｵm", "æm"): micrometres
    return None if factor is None else float(m.group(1)) * factor


def _positive(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def _number(raw: str | None) -> float | None:
    try:
        return float((raw or "").split()[0])
    except (ValueError, IndexError):
        return None


def jeol_pixel_size(
    meta: dict[str, str], width_px: int, *, path: str | Path = "<sidecar>"
) -> tuple[float | None, str | None, float | None]:
    """Pixel size (um), its source and its relative uncertainty (None unless estimated).

    Parameters
    ----------
    meta : dict
        `parse_jeol_sidecar` output.
    width_px : int
        Width of the image in pixels (for the field-of-view and magnification rules).
    path : path
        For log messages.
    """
    marker_um = parse_length_um(meta.get("SM_MICRON_MARKER", ""))
    bar_px = _number(meta.get("SM_MICRON_BAR"))
    if _positive(marker_um) and _positive(bar_px):
        return (marker_um / bar_px,
                "JEOL sidecar $$SM_MICRON_MARKER / $$SM_MICRON_BAR", None)
    fov = meta.get("CM_FIELD_OF_VIEW", "").split()
    fov_um = parse_length_um(fov[0]) if fov else None
    if fov and fov_um is None:
        fov_um = _number(fov[0])  # bare number: micrometres
    if _positive(fov_um):
        return fov_um / width_px, "JEOL sidecar $CM_FIELD_OF_VIEW / image width", None
    mag = _number(meta.get("CM_MAG"))
    if _positive(mag):
        um = MAG_RULE_WIDTH_M * 1e6 / mag / width_px
        log.warning(
            "%s: JEOL sidecar has no $$SM_MICRON_BAR or $CM_FIELD_OF_VIEW; pixel size %.6g um "
            "from the magnification rule 0.128 m / $CM_MAG %g / width %d (+/-6 %%)",
            path, um, mag, width_px,
        )
        return um, "JEOL magnification rule (+/-6 %): 0.128 m / $CM_MAG / width", \
            MAG_RULE_UNCERTAINTY_REL
    log.warning("%s: JEOL sidecar gives no scale bar, field of view or magnification", path)
    return None, None, None


class JeolReader:
    """JEOL SEM TIFF with a ``$KEY value`` sidecar."""

    name = "jeol"
    label = "JEOL"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "JEOL SEM TIFF + <stem>.txt sidecar ($CM_/$$SM_ keys)"
    expects = "a TIFF with a <stem>.txt sidecar of JEOL $KEY value lines ($CM_FORMAT JEOL-SEM)"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        text = sniff_sidecar(Path(path))
        if text is None:
            return False
        lines = [ln.strip() for ln in text.splitlines()]
        return any(ln.startswith(k) for ln in lines for k in _SNIFF_KEYS)

    def open(self, path: Path):
        """Read the first page and the sidecar; find and mask the burned-in annotations.

        Raises
        ------
        UnreadableInput
            Truncated or corrupt TIFF; sidecar missing, too large or in an unexpected
            encoding (the message names the sidecar).
        """
        path = Path(path)
        car = find_sidecar(path)
        if car is None:
            raise UnreadableInput(path, "JEOL image without its <stem>.txt sidecar")
        sc = read_sidecar(path, car)
        meta = parse_jeol_sidecar(sc.text)
        with open_tiff(path) as tif:
            image = read_page(path, first_page(path, tif))
        ny, nx = image.shape
        full = meta.get("CM_FULL_SIZE", "").split()
        header: dict = {"sidecar": car.name, "sidecar_encoding": sc.encoding}
        if len(full) == 2 and full != [str(nx), str(ny)]:
            header["sidecar_full_size"] = " ".join(full)
            log.warning("%s: sidecar $CM_FULL_SIZE %s differs from the image %dx%d",
                        path, " ".join(full), nx, ny)
        ps, source, unc = jeol_pixel_size(meta, nx, path=path)
        if unc is not None:
            header["pixel_size_uncertainty_rel"] = unc
            header["pixel_size_warning"] = (
                "no $$SM_MICRON_BAR in the sidecar: pixel size from the magnification rule "
                "0.128 m / $CM_MAG / width, +/-6 %")
        for k in ("SM_MICRON_MARKER", "SM_MICRON_BAR", "CM_MAG", "CM_FIELD_OF_VIEW",
                  "CM_FULL_SIZE", "SM_WD", "CM_DATE", "CM_TIME", "CM_VERSION", "CM_FORMAT"):
            if meta.get(k):
                header[k] = meta[k]
        region = burned_in_region(image)
        return sem_dataarray(
            image,
            path=path,
            pixel_size_um=None if ps is None else (ps, ps),
            pixel_size_source=source,
            vendor="JEOL",
            instrument=meta.get("CM_INSTRUMENT", ""),
            fmt="jeol-tiff",
            databar_rows=0 if region is None else region["row1"] - region["row0"],
            databar_method="detected: burned-in region (masked)" if region else "none",
            magnification=_number(meta.get("CM_MAG")),
            kv=_number(meta.get("CM_ACCEL_VOLT")),
            detector=meta.get("CM_DETECTOR_NAME") or meta.get("CM_SIGNAL_NAME") or None,
            header=header,
            masked_regions=[] if region is None else [region],
        )
