"""Thermo Fisher Phenom desktop SEM TIFFs: tag 34683 ``<FeiImage>`` XML.

Layout (as public Phenom readers parse it; no real Phenom file is in the test set): root
``<FeiImage>`` with ``<pixelWidth unit="m">``, ``<pixelHeight unit="m">``,
``<databarHeight>`` (rows appended below the image), ``<workingDistance unit=...>``,
``<instrument><type>``/``<uniqueID>``/``<softwareVersion>``, and
``<acquisition><scan>`` with ``<detector>`` and ``<highVoltage unit="V">`` (a negative
value is the electron accelerating potential; its magnitude is used).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.height.binary import length_unit_to_um
from pipeline.ingest.sem.tiffio import (
    first_page,
    has_tag,
    open_tiff,
    parse_tag_xml,
    raw_tag_bytes,
    read_page,
)

__all__ = ["PhenomReader"]

log = logging.getLogger(__name__)

TAG_PHENOM = 34683
_VOLT = {"V": 1e-3, "kV": 1.0, "mV": 1e-6}


def _num(el) -> float | None:
    if el is None:
        return None
    try:
        v = float((el.text or "").strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _length_um(path: Path, el, name: str) -> float | None:
    if el is None:
        return None
    v = _num(el)
    unit = el.get("unit", "")
    scale = length_unit_to_um(unit) if unit else None
    if v is None or scale is None:
        raise UnreadableInput(path, f"Phenom <{name} unit={unit!r}> = {el.text!r} is not a "
                                    "length with a unit: corrupt metadata")
    return v * scale


class PhenomReader:
    """Phenom TIFF: tag 34683 <FeiImage> XML; appended data bar cropped by databarHeight."""

    name = "phenom"
    label = "Phenom"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "Thermo Fisher Phenom TIFF (<FeiImage> XML in tag 34683)"
    expects = "a TIFF whose first IFD has tag 34683 (Phenom <FeiImage> XML)"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return has_tag(head, path, TAG_PHENOM)

    def open(self, path: Path):
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            blob = raw_tag_bytes(path, tif, page, TAG_PHENOM)
            if blob is None:
                raise UnreadableInput(path, "no Phenom tag 34683 on the first page")
            root = parse_tag_xml(path, blob, "Phenom XML (tag 34683)")
            if root.tag != "FeiImage":
                raise UnreadableInput(path, f"tag 34683 root element is <{root.tag}>, "
                                            "not Phenom's <FeiImage>")
            image = read_page(path, page)
        return _build(path, image, root)


def _leaf_header(root) -> dict[str, object]:
    """The header: each childless element of the root as ``{tag: "text unit"}``."""
    header: dict[str, object] = {}
    for el in root:
        if len(el) == 0:
            header[el.tag] = (el.text or "").strip() + (f" {el.get('unit')}" if el.get("unit")
                                                          else "")
    return header


def _pixel_size(path: Path, root) -> tuple[tuple[float, float] | None, str | None]:
    """(x, y) pixel size in um from ``<pixelWidth>`` / ``<pixelHeight>``, and its source;
    (None, None) without ``<pixelWidth>``. The height defaults to the width."""
    pw = _length_um(path, root.find("pixelWidth"), "pixelWidth")
    ph = _length_um(path, root.find("pixelHeight"), "pixelHeight")
    if pw is None:
        return None, None
    pixel = (pw, ph if ph is not None else pw)
    return pixel, "Phenom <pixelWidth>" + ("/<pixelHeight>" if ph is not None else "")


def _databar(path: Path, root, ny: int) -> tuple[int, str]:
    """Rows of the data bar appended below the image (``<databarHeight>``), and the method.

    A height that is not a whole number of rows within the page is refused.
    """
    bar_el = root.find("databarHeight")
    if bar_el is None:
        return 0, "none"
    b = _num(bar_el)
    if b is None or b != int(b) or not 0 <= b < ny:
        raise UnreadableInput(path, f"Phenom <databarHeight> = {bar_el.text!r} does not fit "
                                    f"the {ny}-row page: corrupt metadata")
    bar = int(b)
    return bar, "metadata: <databarHeight>" if bar else "none"


def _kv(root) -> float | None:
    """Accelerating voltage in kV from ``<highVoltage unit=...>``; None if absent or of an unknown unit.

    A negative value is the electron accelerating potential: its magnitude is used.
    """
    hv_el = root.find("acquisition/scan/highVoltage")
    hv = _num(hv_el)
    if hv is None:
        return None
    factor = _VOLT.get(hv_el.get("unit", "V"))
    return abs(hv) * factor if factor else None


def _working_distance_mm(root) -> float | None:
    """Working distance in mm from ``<workingDistance unit=...>``; None if absent or not a length."""
    wd = root.find("workingDistance")
    if wd is not None and _num(wd) is not None and length_unit_to_um(wd.get("unit", "")):
        return _num(wd) * length_unit_to_um(wd.get("unit")) / 1e3
    return None


def _instrument(root) -> str:
    """``<instrument><type>`` and ``<uniqueID>`` joined by a space (either may be missing)."""
    instrument = " ".join(x for x in (root.findtext("instrument/type") or "",
                                      root.findtext("instrument/uniqueID") or "") if x)
    return instrument.strip()


def _build(path: Path, image, root):
    ny = image.shape[0]
    header = _leaf_header(root)
    pixel, source = _pixel_size(path, root)
    if pixel is None:
        header["note"] = "no <pixelWidth>: uncalibrated"
    bar, method = _databar(path, root, ny)
    kv = _kv(root)
    wd_mm = _working_distance_mm(root)
    if wd_mm is not None:
        header["working_distance_mm"] = wd_mm
    return sem_dataarray(
        image[: ny - bar],
        path=path,
        pixel_size_um=pixel,
        pixel_size_source=source,
        vendor="Phenom",
        instrument=_instrument(root),
        fmt="phenom-tiff",
        databar_rows=bar,
        databar_method=method,
        magnification=None,
        kv=kv,
        detector=(root.findtext("acquisition/scan/detector") or "").strip() or None,
        header=header,
    )
