"""Thermo Fisher Scientific / FEI SEM and DualBeam TIFFs (xT, Helios, Teneo, Quanta, Scios).

Metadata live in TIFF tag 34682 (``FEI_HELIOS``: INI text) or tag 34680 (``FEI_SFEG``: INI
text, or on some FIB-SEM software a base64-encoded ``<MementoItemCollection>`` XML). From the
INI:

- pixel size: ``[Scan] PixelWidth`` / ``PixelHeight``, in metres;
- raster: ``[Image] ResolutionX`` / ``ResolutionY``. The data bar is *appended* below the
  raster, so its height is the page height minus ``ResolutionY``. ``[PrivateFei]
  DatabarHeight`` is used only when ``ResolutionY`` is absent and it is > 0 (Teneo and
  Scios write 0 while storing a 68-70 row bar);
- ``[Beam] HV`` / ``[EBeam] HV`` (volts), ``[Detectors] Name``, ``[EBeam] WD`` and ``HFW``
  (metres), ``[System] SystemType`` and ``Dnumber``.

Nav-Cam images (the optical navigation camera of DualBeams) have no ``[Scan]`` section. They
are not electron images and carry no pixel size: the reader returns them uncalibrated. The
``[IRBeam] HFW`` those files also carry describes the ion column's field, not the camera's,
and is never used. For an e-beam or ion-beam image whose ``[Scan]`` is missing, the active
beam section's ``HFW / ResolutionX`` is used and named as the source.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import struct
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.sem.tiffio import (
    decode_text,
    first_page,
    ifd_tag_codes,
    is_tiff,
    open_tiff,
    parse_ini,
    raw_tag_bytes,
    read_page,
)

__all__ = ["FeiReader", "parse_fei_text"]

log = logging.getLogger(__name__)

TAG_FEI_HELIOS = 34682
TAG_FEI_SFEG = 34680
_HEADER_SECTIONS = ("System", "Beam", "EBeam", "IBeam", "Scan", "Image", "Detectors",
                    "Stage", "PrivateFei")


def _float(value: object) -> float | None:
    try:
        f = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------- FEI text


def parse_fei_text(path: str | Path, blob: bytes) -> dict[str, dict[str, str]]:
    """INI sections from a 34682/34680 tag: INI text, or base64 Memento XML (34680)."""
    text = decode_text(blob).strip()
    if text.startswith("["):
        return parse_ini(text)
    try:
        xml = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableInput(path, "FEI metadata tag is neither INI text ([Section] lines) "
                                    "nor base64-encoded XML") from None
    return _memento_sections(path, xml)


def _memento_sections(path: str | Path, xml: bytes) -> dict[str, dict[str, str]]:
    """Flatten a ``<MementoItemCollection>`` into ``{"Parent.Section": {"Name": value}}``.

    Each ``<MementoItem>`` has a ``<Name>``, a ``<MementoItemUnit>`` (``MementoSection`` for a
    nested section, else ``MementoItemUnitMeter`` ...) and its value in ``<anyType>``.
    Values are kept in the units written (metres for ``...Meter``).
    """
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as ET

    try:
        root = ET.fromstring(xml.lstrip(b"\xef\xbb\xbf"))
    except (ET.ParseError, DefusedXmlException) as exc:
        raise UnreadableInput(path, f"FEI base64 XML metadata is not valid XML ({exc})") from None
    out: dict[str, dict[str, str]] = {}

    def local(el) -> str:
        return el.tag.rsplit("}", 1)[-1]

    def walk(el, prefix: str) -> None:
        for child in el:
            if local(child) == "MementoItem":
                name = (child.findtext("Name") or "").strip()
                unit = (child.findtext("MementoItemUnit") or "").strip()
                sect = child.find("MementoItemSection")
                if unit == "MementoSection" and sect is not None:
                    walk(sect, f"{prefix}.{name}" if prefix else name)
                else:
                    val = next((c.text for c in child if local(c) == "anyType"), None)
                    out.setdefault(prefix, {})[name] = (val or "").strip()
            else:
                walk(child, prefix)

    walk(root, "")
    return out


def _memento_pixel_size(sections: dict[str, dict[str, str]]) -> tuple[str, float, float] | None:
    for name, sect in sections.items():
        if name.split(".")[-1] == "PixelSize" and "Width" in sect:
            w, h = _float(sect.get("Width")), _float(sect.get("Height", sect.get("Width")))
            if w is not None and h is not None:
                return name, w, h
    return None


# --------------------------------------------------------------------------- reader


class FeiReader:
    """Thermo Fisher / FEI SEM TIFF: tag 34682 or 34680, appended data bar cropped."""

    name = "fei"
    label = "FEI"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Thermo Fisher / FEI SEM TIFF (xT INI metadata in tag 34682 or 34680)"
    expects = "a TIFF whose first IFD has tag 34682 (FEI_HELIOS) or 34680 (FEI_SFEG)"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        try:
            codes = ifd_tag_codes(head, Path(path))
        except struct.error:
            return False
        return bool({TAG_FEI_HELIOS, TAG_FEI_SFEG} & codes)

    def open(self, path: Path):
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            code = TAG_FEI_HELIOS if TAG_FEI_HELIOS in page.tags else TAG_FEI_SFEG
            blob = raw_tag_bytes(path, tif, page, code)
            if blob is None:
                raise UnreadableInput(path, "no FEI metadata tag (34682 or 34680) on the first page")
            ini = parse_fei_text(path, blob)
            image = read_page(path, page)
        return _build(path, image, ini, code)


def _section(ini: dict, name: str) -> dict[str, str]:
    return ini.get(name) or {}


def _header(ini: dict, code: int) -> dict[str, object]:
    """The header: the metadata tag code, then every ``Section.Key`` of the known sections."""
    header: dict[str, object] = {"metadata_tag": code}
    for sect in _HEADER_SECTIONS:
        for k, v in _section(ini, sect).items():
            header[f"{sect}.{k}"] = v
    return header


def _active_beam(ini: dict) -> tuple[str, dict[str, str]]:
    """The ``[Beam] Beam`` name ("EBeam", "IBeam", ... or "") and that beam's section ({} if none)."""
    beam_name = _section(ini, "Beam").get("Beam", "")
    return beam_name, (_section(ini, beam_name) if beam_name else {})


def _is_navcam(ini: dict, detector: str | None) -> bool:
    """True for a Nav-Cam image: the detector is the Nav-Cam, or a ``[Nav-Cam]`` section exists."""
    return (detector or "").lower().replace("-", "") == "navcam" or "Nav-Cam" in ini


def _databar(path: Path, ini: dict, ny: int) -> tuple[int, str]:
    """Rows of the data bar appended below the raster, and how they were found.

    The page height minus ``[Image] ResolutionY`` when that is given (refused if it does not
    fit the page); else ``[PrivateFei] DatabarHeight`` when it is > 0 and fits; else no bar.
    """
    res_y = _section(ini, "Image").get("ResolutionY")
    if res_y is not None and res_y != "":
        ry = _float(res_y)
        if ry is None or ry != int(ry) or not 0 < ry <= ny:
            raise UnreadableInput(
                path, f"FEI [Image] ResolutionY = {res_y!r} does not fit the {ny}-row page: "
                      "corrupt metadata")
        return ny - int(ry), "metadata: page height - [Image] ResolutionY"
    return _private_databar(ini, ny)


def _private_databar(ini: dict, ny: int) -> tuple[int, str]:
    """Bar rows and method from ``[PrivateFei] DatabarHeight`` (used only when > 0), else (0, "none").

    Teneo and Scios write 0 there while storing a 68-70 row bar: 0 is not a bar height.
    """
    dbh = _float(_section(ini, "PrivateFei").get("DatabarHeight"))
    if dbh is not None and 0 < dbh < ny and dbh == int(dbh):
        return int(dbh), "metadata: [PrivateFei] DatabarHeight"
    return 0, "none"


def _resolution_x_note(path: Path, res_x: float | None, nx: int) -> str | None:
    """A note (also logged) when ``[Image] ResolutionX`` differs from the page width, else None."""
    if res_x is None or int(res_x) == nx:
        return None
    log.warning("%s: FEI [Image] ResolutionX %g differs from the page width %d",
                path, res_x, nx)
    return (f"[Image] ResolutionX = {res_x:g} differs from the page "
            f"width {nx}; pixel size kept as written")


def _scan_pixel_size(path: Path, scan: dict[str, str]) -> tuple[tuple[float, float], str]:
    """(x, y) pixel size in um from ``[Scan] PixelWidth`` / ``PixelHeight`` (metres), and its source.

    PixelHeight defaults to PixelWidth; a PixelWidth that is not a number is refused.
    """
    pw, ph = _float(scan.get("PixelWidth")), _float(scan.get("PixelHeight"))
    if pw is None:
        raise UnreadableInput(path, f"FEI [Scan] PixelWidth = {scan.get('PixelWidth')!r} "
                                    "is not a number")
    pixel = (pw * 1e6, (ph if ph is not None else pw) * 1e6)
    return pixel, "FEI [Scan] PixelWidth" + ("/PixelHeight" if ph is not None else "")


def _beam_field_pixel(ini: dict, res_x: float | None) -> tuple[float, str] | None:
    """Pixel size in um from the active e-/ion-beam ``HFW / [Image] ResolutionX``, and that beam's
    name; None when the active beam is neither EBeam nor IBeam or either number is missing or 0.

    Only the e-beam and ion-beam sections qualify: the ``[IRBeam] HFW`` of Nav-Cam files is the
    ion column's field, not the camera's.
    """
    beam_name, beam = _active_beam(ini)
    hfw = _float(beam.get("HFW"))
    if beam_name not in ("EBeam", "IBeam") or not hfw or not res_x:
        return None
    return hfw * 1e6 / res_x, beam_name


def _pixel_size(
    path: Path, ini: dict, code: int, res_x: float | None, is_navcam: bool
) -> tuple[tuple[float, float] | None, str | None, str | None]:
    """Pixel size (x, y) in um or None, its source or None, and a note for the header or None.

    In this order: ``[Scan]``; the 34680 Memento XML ``PixelSize`` (no ``[Scan]``); none for a
    Nav-Cam image; the active beam's field width over ``ResolutionX``; else uncalibrated.
    """
    scan = ini.get("Scan")
    if scan is not None:
        pixel, source = _scan_pixel_size(path, scan)
        return pixel, source, None
    memento = _memento_pixel_size(ini) if code == TAG_FEI_SFEG else None
    if memento is not None:
        sect, pw, ph = memento
        return (pw * 1e6, ph * 1e6), f"FEI 34680 XML {sect}.Width/Height", None
    if is_navcam:
        return None, None, ("Nav-Cam optical navigation image (no [Scan] section): not an "
                            "electron image and uncalibrated; the [IRBeam] HFW is the ion "
                            "column's field and is not used")
    field = _beam_field_pixel(ini, res_x)
    if field is not None:
        p, beam_name = field
        return ((p, p), f"FEI [{beam_name}] HFW / [Image] ResolutionX",
                "no [Scan] section: pixel size from the field width of the active beam")
    return None, None, "no [Scan] section and no usable beam field width: uncalibrated"


def _kv(ini: dict, beam: dict[str, str]) -> float | None:
    """Accelerating voltage in kV from ``[Beam] HV``, else the active beam's HV (volts); None if 0."""
    hv = _float(_section(ini, "Beam").get("HV")) or _float(beam.get("HV"))
    return hv / 1e3 if hv else None


def _working_distance(ini: dict, beam: dict[str, str]) -> float | None:
    """Working distance in metres: the active beam's WD, else ``[Stage] WorkingDistance``."""
    wd = _float(beam.get("WD")) if beam else None
    if wd is None:
        wd = _float(_section(ini, "Stage").get("WorkingDistance"))
    return wd


def _build(path: Path, image, ini: dict, code: int):
    ny, nx = image.shape
    header = _header(ini, code)
    detector = _section(ini, "Detectors").get("Name") or None
    _, beam = _active_beam(ini)

    # ---- data bar: appended below the [Image] ResolutionY raster
    bar, method = _databar(path, ini, ny)
    res_x = _float(_section(ini, "Image").get("ResolutionX"))
    note = _resolution_x_note(path, res_x, nx)
    if note is not None:
        header["note_resolution"] = note

    # ---- pixel size
    pixel, source, note = _pixel_size(path, ini, code, res_x, _is_navcam(ini, detector))
    if note is not None:
        header["note"] = note

    wd = _working_distance(ini, beam)
    hfw = _float(beam.get("HFW")) if beam else None
    if wd is not None:
        header["working_distance_mm"] = wd * 1e3
    if hfw is not None:
        header["hfw_um"] = hfw * 1e6
    system = _section(ini, "System")
    return sem_dataarray(
        image[: ny - bar],
        path=path,
        pixel_size_um=pixel,
        pixel_size_source=source,
        vendor="FEI",
        instrument=system.get("SystemType", "").replace('"', "").strip(),
        fmt="fei-tiff",
        databar_rows=bar,
        databar_method=method,
        magnification=None,
        kv=_kv(ini, beam),
        detector=detector,
        header=header,
    )
