"""Shared TIFF plumbing for the SEM readers: sniffing tags, bounded page reads, palettes, INI.

Every SEM reader opens its file through `open_tiff` and reads pixels through `read_page`, so
dimension bounds, truncation handling and palette conversion live in one place.
"""

from __future__ import annotations

import functools
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.limits import MAX_XML_BYTES, check_expansion, check_shape

__all__ = [
    "decode_text",
    "first_page",
    "ifd_tag_codes",
    "is_tiff",
    "open_tiff",
    "parse_ini",
    "raw_tag_bytes",
    "read_page",
    "sniff_info",
    "tag_value",
]

log = logging.getLogger(__name__)

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_tiff(head: bytes) -> bool:
    """True when the bytes start like a classic or Big TIFF."""
    return head[:4] in _TIFF_MAGICS


def open_tiff(path: str | Path):
    """`tifffile.TiffFile` for `path`, or UnreadableInput naming the problem."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error ...
        raise UnreadableInput(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from None


def first_page(path: str | Path, tif, *, max_pages: int = 16):
    """The first full-resolution page.

    Pages flagged as reduced-resolution (NewSubfileType bit 0: thumbnails, previews) are
    skipped; among the first `max_pages` pages the first one without the flag is used,
    else the first page.
    """
    try:
        page = tif.pages.first
    except Exception as exc:
        raise UnreadableInput(path, f"TIFF has no readable first page ({exc})") from None
    if not int(getattr(page, "subfiletype", 0) or 0) & 1:
        return page
    try:
        for i in range(1, min(len(tif.pages), max_pages)):
            p = tif.pages[i]
            if not int(getattr(p, "subfiletype", 0) or 0) & 1:
                log.info("%s: page 0 is a reduced-resolution image; reading page %d", path, i)
                return p
    except Exception as exc:
        raise UnreadableInput(path, f"TIFF page directory is corrupt ({exc})") from None
    return page


def tag_value(page, code: int) -> Any:
    """The value of TIFF tag `code` on `page`, or None."""
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def read_page(path: str | Path, page) -> np.ndarray:
    """Pixels of one page as uint8/uint16 grey values, bounded and palette-resolved.

    Dimensions are checked before any allocation, compressed data may not expand more than
    the zip-bomb limit, and a palette (colour map) is applied after checking that it is
    grey (R = G = B); a palette that is not grey is refused rather than guessed.
    """
    shape = tuple(int(s) for s in page.shape)
    if len(shape) != 2:
        if len(shape) == 3 and shape[-1] in (3, 4):
            raise UnreadableInput(path, f"TIFF page is colour ({shape}); SEM images are grey")
        raise UnreadableInput(path, f"TIFF page has shape {shape}; expected a 2-D grey image")
    check_shape(path, *shape, what="TIFF page")
    itemsize = np.dtype(page.dtype).itemsize if page.dtype is not None else 1
    stored = int(sum(page.databytecounts or (0,)))
    check_expansion(path, shape[0] * shape[1] * itemsize, stored, "TIFF image data")
    try:
        data = page.asarray()
    except Exception as exc:
        raise UnreadableInput(
            path, f"TIFF image data is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
    cmap = page.colormap if page.photometric == 3 else None  # 3: PALETTE
    if cmap is not None:
        cmap = np.asarray(cmap)
        if not (np.array_equal(cmap[0], cmap[1]) and np.array_equal(cmap[0], cmap[2])):
            raise UnreadableInput(path, "TIFF palette is not grey (R, G and B differ)")
        lut = cmap[0].astype(np.int64)
        grey = (lut >> 8 if lut.max() > 255 else lut).astype(np.uint8)
        identity = grey.size >= 256 and np.array_equal(grey[:256], np.arange(256))
        if not (data.dtype == np.uint8 and identity):
            if data.max(initial=0) >= grey.size:
                raise UnreadableInput(path, "TIFF palette indices exceed the colour map")
            data = grey[data]
    if data.dtype not in (np.uint8, np.uint16):
        raise UnreadableInput(path, f"TIFF sample type {data.dtype} is not an SEM grey image")
    return data


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """INI-style ``[Section]`` / ``key=value`` text into nested dicts (no interpolation)."""
    out: dict[str, dict[str, str]] = {}
    section = out.setdefault("", {})
    for raw in text.splitlines():
        line = raw.strip().strip("\x00")
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1].strip(), {})
        elif "=" in line:
            k, _, v = line.partition("=")
            section[k.strip()] = v.strip()
    return out


def sniff_info(path: str | Path) -> dict[str, Any] | None:
    """What the readers' `can_open` ask of a TIFF's first page, read once per file version.

    Several readers sniff the same file (tags present, sample type, ImageJ description,
    Windows XP comment); the answer is cached by path, size and modification time, so the
    file is parsed once however many readers ask. None when it is not a readable TIFF.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    return _sniff_info(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sniff_info(path: str, size: int, mtime_ns: int) -> dict[str, Any] | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            xp = page.tags.get(40092)
            return {
                "tags": frozenset(page.tags.keys()),
                "samplesperpixel": int(page.samplesperpixel),
                "dtype": None if page.dtype is None else np.dtype(page.dtype),
                "imagej": page.imagej_description is not None,
                "xpcomment": None if xp is None else xp.value,
            }
    except Exception:  # sniffing: any failure means "not a TIFF we can read"
        return None


_MAX_IFD_ENTRIES = 4096


def ifd_tag_codes(head: bytes, path: Path) -> frozenset[int]:
    """Tag codes of the first IFD of a classic or Big TIFF (empty when it cannot be read).

    Reads only the IFD (from `head` when it lies there, else from the file), so that
    ``can_open`` can look for a vendor tag without opening the whole TIFF.
    """
    magic = head[:4]
    if magic in (b"II*\x00", b"MM\x00*"):
        big = False
    elif magic in (b"II+\x00", b"MM\x00+"):
        big = True
    else:
        return frozenset()
    bo = "<" if magic[:2] == b"II" else ">"
    off_fmt, n_fmt, esize = ("Q", "Q", 20) if big else ("I", "H", 12)
    hdr = 16 if big else 8
    if len(head) < hdr:
        return frozenset()
    (ifd,) = struct.unpack_from(bo + off_fmt, head, hdr - struct.calcsize(off_fmt))
    nlen = struct.calcsize(n_fmt)
    blob = _bytes_at(head, path, ifd, nlen)
    if blob is None:
        return frozenset()
    (n,) = struct.unpack(bo + n_fmt, blob)
    if not 0 < n <= _MAX_IFD_ENTRIES:
        return frozenset()
    entries = _bytes_at(head, path, ifd + nlen, n * esize)
    if entries is None:
        return frozenset()
    return frozenset(struct.unpack_from(bo + "H", entries, i * esize)[0] for i in range(n))


def _bytes_at(head: bytes, path: Path, offset: int, size: int) -> bytes | None:
    if offset + size <= len(head):
        return head[offset:offset + size]
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            blob = fh.read(size)
    except (OSError, ValueError, OverflowError):
        return None
    return blob if len(blob) == size else None


def raw_tag_bytes(path: str | Path, tif, page, code: int, *, max_bytes: int = MAX_XML_BYTES
                  ) -> bytes | None:
    """The stored bytes of tag `code` on `page`, unparsed; None when the tag is absent.

    tifffile parses some vendor tags (FEI, Zeiss) into dicts and loses their layout; the
    readers here parse the text themselves. A tag larger than `max_bytes` or running past the
    end of the file is UnreadableInput.
    """
    tag = page.tags.get(code)
    if tag is None:
        return None
    size = int(tag.valuebytecount)
    if size > max_bytes:
        raise UnreadableInput(path, f"TIFF tag {code} declares {size} bytes; the limit is "
                                    f"{max_bytes}")
    fh = tif.filehandle
    with fh.lock:
        fh.seek(int(tag.valueoffset))
        blob = fh.read(size)
    if len(blob) != size:
        raise UnreadableInput(
            path, f"file is truncated: TIFF tag {code} needs {size} bytes at offset "
                  f"{tag.valueoffset} but the file ends first")
    return blob


def decode_text(blob: bytes) -> str:
    """Tag text: UTF-8 when valid (a BOM dropped), else latin-1; trailing NULs removed."""
    if blob.startswith(b"\xef\xbb\xbf"):
        blob = blob[3:]
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        text = blob.decode("latin-1")
    return text.rstrip("\x00")


def has_tag(head: bytes, path: str | Path, code: int) -> bool:
    """True when the first IFD of a TIFF carries tag `code` (the vendor readers' sniff)."""
    if not is_tiff(head):
        return False
    try:
        return code in ifd_tag_codes(head, Path(path))
    except struct.error:
        return False


def parse_tag_xml(path: str | Path, blob: bytes, what: str):
    """XML held in a TIFF tag, through defusedxml; UnreadableInput naming the tag if bad."""
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as ET

    try:
        return ET.fromstring(blob.rstrip(b"\x00").strip())
    except (ET.ParseError, DefusedXmlException) as exc:
        raise UnreadableInput(path, f"{what} is not valid XML ({exc})") from None
