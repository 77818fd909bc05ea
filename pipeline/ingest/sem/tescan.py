"""TESCAN SEM TIFFs (MIRA, VEGA, LYRA, ...): tag 50431 or the ``<stem>-tif.hdr`` sidecar.

Tag 50431 is binary: a sequence of chunks ``[u32 length][u16 type][body]``, little-endian,
where ``length`` counts the type field and the body (so the next chunk starts ``4 + length``
bytes later). Types: 1 JPEG 2000 thumbnail, 2 ``MAIN``, 3 ``SEM``, 5 ``FIB``, 0 end. The
text chunks are latin-1 ``key=value`` lines in SI units (m, V, A).

The sidecar is INI text with ``[MAIN]`` and ``[SEM]`` (or ``[FIB]``) sections holding the same
keys. The tag wins when both exist; a sidecar pixel size that disagrees is logged as a
warning and recorded in the header.

``[MAIN] PixelSizeX/Y`` (m) give the pixel; ``ImageStripSize`` is the height of the data bar
appended below the image; ``[SEM] HV`` (V), ``Detector``, ``WD`` (m); ``[MAIN]
Magnification``, ``Device``, ``SerialNumber``.
"""

from __future__ import annotations

import logging
import math
import struct
from pathlib import Path

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.ingest.limits import unpack_from
from pipeline.ingest.sem.sidecar import find_sidecar, read_sidecar, sniff_sidecar
from pipeline.ingest.sem.tiffio import (
    first_page,
    ifd_tag_codes,
    is_tiff,
    open_tiff,
    parse_ini,
    raw_tag_bytes,
    read_page,
)

__all__ = ["SIDECAR_SUFFIX", "TescanReader", "parse_tescan_chunks"]

log = logging.getLogger(__name__)

TAG_TESCAN = 50431
SIDECAR_SUFFIX = "-tif.hdr"
_CHUNK_NAMES = {2: "MAIN", 3: "SEM", 5: "FIB"}
_MAX_CHUNKS = 256


def parse_tescan_chunks(path: str | Path, blob: bytes) -> dict[str, dict[str, str]]:
    """Sections ``{"MAIN": {...}, "SEM": {...}}`` from the binary tag 50431."""
    out: dict[str, dict[str, str]] = {}
    off = 0
    for _ in range(_MAX_CHUNKS):
        if off == len(blob):
            break  # no end chunk: tolerated
        length, ctype = unpack_from(path, "<IH", blob, off, "TESCAN tag 50431 chunk header")
        if length < 2 or off + 4 + length > len(blob):
            raise UnreadableInput(
                path, f"TESCAN tag 50431: chunk at byte {off} (type {ctype}) declares "
                      f"{length} bytes, past the end of the {len(blob)}-byte tag: corrupt metadata")
        if ctype == 0:
            break
        name = _CHUNK_NAMES.get(ctype)
        if name is not None:
            body = blob[off + 6: off + 4 + length].decode("latin-1")
            out[name] = parse_ini(body).get("", {})
        off += 4 + length
    else:
        raise UnreadableInput(path, f"TESCAN tag 50431 has more than {_MAX_CHUNKS} chunks")
    return out


def _f(value: object) -> float | None:
    try:
        f = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class TescanReader:
    """TESCAN SEM TIFF: binary tag 50431 or <stem>-tif.hdr sidecar; appended bar cropped."""

    name = "tescan"
    label = "TESCAN"
    kind = "sem"
    suffixes = (".tif", ".tiff")
    description = "TESCAN SEM TIFF (tag 50431 chunks or <stem>-tif.hdr sidecar)"
    expects = "a TIFF with tag 50431, or a TIFF with a <stem>-tif.hdr sidecar holding [MAIN]"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if not is_tiff(head):
            return False
        try:
            if TAG_TESCAN in ifd_tag_codes(head, Path(path)):
                return True
        except struct.error:
            return False

        text = sniff_sidecar(path, SIDECAR_SUFFIX)
        return text is not None and "[MAIN]" in text

    def open(self, path: Path):
        path = Path(path)
        with open_tiff(path) as tif:
            page = first_page(path, tif)
            blob = raw_tag_bytes(path, tif, page, TAG_TESCAN)
            tag_sections = parse_tescan_chunks(path, blob) if blob is not None else None
            image = read_page(path, page)
        side_path = find_sidecar(path, SIDECAR_SUFFIX)
        side_sections = None
        if side_path is not None:
            side_sections = parse_ini(read_sidecar(path, side_path).text)
        if tag_sections is None and side_sections is None:
            raise UnreadableInput(path, f"no TESCAN tag 50431 and no {path.stem}{SIDECAR_SUFFIX} "
                                        "sidecar beside it")
        header: dict[str, object] = {}
        if tag_sections is not None:
            sections, origin = tag_sections, "TESCAN tag 50431"
            if side_sections is not None:
                _compare(path, tag_sections, side_sections, side_path.name, header)
        else:
            sections, origin = side_sections, f"TESCAN {side_path.name}"
        header["metadata_source"] = origin
        return _build(path, image, sections, origin, header)


def _compare(path: Path, tag: dict, side: dict, side_name: str, header: dict) -> None:
    a, b = tag.get("MAIN", {}), side.get("MAIN", {})
    for key in ("PixelSizeX", "PixelSizeY", "ImageStripSize"):
        ta, sb = _f(a.get(key)), _f(b.get(key))
        if ta is not None and sb is not None and not math.isclose(ta, sb, rel_tol=1e-6):
            msg = f"tag 50431 {key}={a.get(key)} disagrees with {side_name} {key}={b.get(key)}"
            header[f"disagreement_{key}"] = msg + "; the tag is used"
            log.warning("%s: %s; the tag is used", path, msg)


def _build(path: Path, image, sections: dict, origin: str, header: dict):
    ny = image.shape[0]
    main = sections.get("MAIN") or {}
    column = sections.get("SEM") or sections.get("FIB") or {}
    for sect in ("MAIN", "SEM", "FIB"):
        for k, v in (sections.get(sect) or {}).items():
            header[f"{sect}.{k}"] = v
    px, py = _f(main.get("PixelSizeX")), _f(main.get("PixelSizeY"))
    if px is not None:
        pixel = (px * 1e6, (py if py is not None else px) * 1e6)
        source = f"{origin} [MAIN] PixelSizeX" + ("/Y" if py is not None else "")
    else:
        pixel, source = None, None
        header["note"] = "no [MAIN] PixelSizeX: uncalibrated"
    strip = main.get("ImageStripSize")
    bar, method = 0, "none"
    if strip not in (None, ""):
        s = _f(strip)
        if s is None or s != int(s) or not 0 <= s < ny:
            raise UnreadableInput(path, f"TESCAN [MAIN] ImageStripSize = {strip!r} does not fit "
                                        f"the {ny}-row page: corrupt metadata")
        bar, method = int(s), "metadata: [MAIN] ImageStripSize"
    hv = _f(column.get("HV"))
    wd = _f(column.get("WD"))
    if wd is not None:
        header["working_distance_mm"] = wd * 1e3
    device = main.get("Device", "")
    return sem_dataarray(
        image[: ny - bar],
        path=path,
        pixel_size_um=pixel,
        pixel_size_source=source,
        vendor="TESCAN",
        instrument=" ".join(x for x in (device, main.get("SerialNumber", "")) if x),
        fmt="tescan-tiff",
        databar_rows=bar,
        databar_method=method if bar else "none",
        magnification=_f(main.get("Magnification")),
        kv=hv / 1e3 if hv is not None else None,
        detector=column.get("Detector") or None,
        header=header,
    )
