"""Text sidecars that SEMs write beside their TIFFs (Hitachi ``.txt``, JEOL ``.txt``).

A sidecar is paired with its image by stem (``<stem>.txt`` in the same folder), never by
a file name written inside it: instruments record the name at export, and users rename.

Decoding is strict and bounded. Accepted: UTF-16 with a byte-order mark (Hitachi), UTF-8
with or without a BOM, cp932 (Japanese Windows, both vendors' home market) and latin-1
(JEOL writes a cp1252/latin-1 ``µ``). Refused, with UnreadableInput naming the sidecar:
UTF-32, NUL bytes outside UTF-16, control characters (binary data), files over 1 MB.
"""

from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UnreadableInput

__all__ = [
    "MAX_SIDECAR_BYTES",
    "Sidecar",
    "decode_sidecar",
    "find_sidecar",
    "read_sidecar",
    "sniff_sidecar",
]

log = logging.getLogger(__name__)

MAX_SIDECAR_BYTES = 1024 * 1024
SNIFF_BYTES = 8192
_FALLBACK_ENCODINGS = ("utf-8-sig", "cp932", "latin-1")
_ALLOWED_CONTROLS = frozenset("\t\n\r\x0c\x1a")  # tab, newlines, form feed, DOS EOF


@dataclass(frozen=True)
class Sidecar:
    """A decoded sidecar: its path, its text and the encoding that decoded it."""

    path: Path
    text: str
    encoding: str


def find_sidecar(image_path: str | Path, suffix: str = ".txt") -> Path | None:
    """``<stem><suffix>`` beside `image_path` (suffix case ignored), or None."""
    image_path = Path(image_path)
    want = (image_path.stem + suffix).lower()
    exact = image_path.with_name(image_path.stem + suffix)
    if exact.is_file():
        return exact
    try:
        for p in image_path.parent.iterdir():
            if p.name.lower() == want and p.is_file():
                return p
    except OSError:
        return None
    return None


def decode_sidecar(image_path: str | Path, sidecar: str | Path, raw: bytes) -> tuple[str, str]:
    """Decode sidecar bytes; return ``(text, encoding)`` or raise UnreadableInput.

    Parameters
    ----------
    image_path : path
        The image the sidecar belongs to (the error names both).
    sidecar : path
        The sidecar file, for the message.
    raw : bytes
        Its content.
    """
    name = Path(sidecar).name

    def refuse(why: str) -> UnreadableInput:
        return UnreadableInput(image_path, f"sidecar {name} ({sidecar}) {why}")

    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise refuse("is UTF-32; instruments write UTF-16 (with BOM), UTF-8, cp932 or latin-1")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text, encoding = raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise refuse(f"has a UTF-16 byte-order mark but is not valid UTF-16 ({exc.reason})") from None
    elif b"\x00" in raw:
        raise refuse("contains NUL bytes: binary data, or UTF-16/32 without a byte-order mark")
    else:
        for encoding in _FALLBACK_ENCODINGS:
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    bad = [c for c in text if (c < " " or "\x7f" <= c <= "\x9f") and c not in _ALLOWED_CONTROLS]
    if bad:
        raise refuse(
            f"is not text: {len(bad)} control character(s) (first {bad[0]!r}) after decoding "
            f"as {encoding}"
        )
    return text, encoding


def read_sidecar(image_path: str | Path, sidecar: str | Path) -> Sidecar:
    """Read and decode one sidecar, bounded to MAX_SIDECAR_BYTES.

    Raises
    ------
    UnreadableInput
        Unreadable, larger than 1 MB, or in an encoding we do not accept; the message names
        the sidecar file.
    """
    sidecar = Path(sidecar)
    try:
        with sidecar.open("rb") as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise UnreadableInput(
            image_path, f"sidecar {sidecar.name} cannot be read ({exc.strerror or exc})"
        ) from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise UnreadableInput(
            image_path,
            f"sidecar {sidecar.name} is larger than {MAX_SIDECAR_BYTES} bytes; "
            "not an instrument sidecar",
        )
    text, encoding = decode_sidecar(image_path, sidecar, raw)
    log.debug("%s: sidecar %s decoded as %s", image_path, sidecar.name, encoding)
    return Sidecar(sidecar, text, encoding)


def sniff_sidecar(image_path: str | Path, suffix: str = ".txt") -> str | None:
    """Lenient decode of the first few KB of the sidecar, for `can_open` only; None if absent.

    Never raises: reading a sidecar strictly is `read_sidecar`'s job, so that a sidecar in
    the wrong encoding is still recognised here and then refused with a clear message.
    """
    p = find_sidecar(image_path, suffix)
    if p is None:
        return None
    try:
        with p.open("rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                     (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(enc, errors="ignore")
    return raw.decode("latin-1")
