"""What a file that no reader recognises looks like, and what to export instead.

Used only for the message of the "no reader recognises this file" error: one sentence that
names the kind of content (JPEG, PNG, PDF, text, ...) and what the user can do. It never
quotes the file's bytes: an error message travels into logs and results files, and the
file may be anything (a link to a private file, for one).
"""

from __future__ import annotations

__all__ = ["describe_unrecognised"]

_NO_SCALE = ("export the instrument's TIFF with its metadata (or, for a height map, the "
             "instrument's height file)")
_HEIGHT_EXPORTS = ("export the height map as .x3p, .sur, .plu, .vk4/.vk6, .zon, .al3d or "
                   "as the Keyence CSV with its header rows")
_RAW = ("export the instrument's own file: a TIFF with its metadata for an SEM image; "
        ".x3p, .sur, .plu, .vk4/.vk6, ... for a height map")


def _is_bmp(head: bytes) -> bool:
    # "BM", then the DIB header size at byte 14 is one of the known header sizes
    return (len(head) >= 18 and head[:2] == b"BM"
            and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124))


def _text_share(head: bytes) -> float:
    """Share of bytes that are printable ASCII, whitespace or part of a non-ASCII character."""
    if not head:
        return 0.0
    ok = sum(1 for b in head if b in (9, 10, 13) or 32 <= b < 127 or b >= 128)
    return ok / len(head)


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        return True
    return b"\x00" not in head and _text_share(head) >= 0.95


def describe_unrecognised(head: bytes) -> str:
    """One sentence: what the content looks like and what to give instead.

    Parameters
    ----------
    head : bytes
        The first bytes of the file (`registry.HEAD_BYTES`).

    Returns
    -------
    str
        For example ``"it looks like a JPEG image, which has no calibrated scale; export the
        instrument's TIFF with its metadata ..."``. Never contains bytes of the file.
    """
    if not head:
        return "the file is empty"
    if not any(head):
        return ("its first bytes are all zero: no data was written (an interrupted copy or "
                "download?); copy the file again from the instrument")
    images = (
        (head.startswith(b"\xff\xd8\xff"), "a JPEG image"),
        (head.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG image"),
        (head.startswith((b"GIF87a", b"GIF89a")), "a GIF image"),
        (_is_bmp(head), "a BMP image"),
        (head[:4] == b"RIFF" and head[8:12] == b"WEBP", "a WebP image"),
    )
    for hit, what in images:
        if hit:
            return f"it looks like {what}, which has no calibrated scale; {_NO_SCALE}"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return ("it is a TIFF image that no reader takes (a colour or screenshot copy, or "
                "an unusual sample type?); export the instrument's grey-level TIFF with its "
                "metadata")
    if head.startswith(b"%PDF-"):
        return f"it looks like a PDF document, which holds no measurement data; {_RAW}"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if b"[Content_Types].xml" in head:
            return (f"it looks like an Office document (a spreadsheet or report), not an "
                    f"instrument file; {_HEIGHT_EXPORTS}")
        return ("it is a ZIP archive but not an X3P (no ISO 5436 main.xml); unpack it and "
                "give the instrument files inside")
    if head.startswith((b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"BZh", b"\xfd7zXZ\x00")):
        return "it is a compressed archive; unpack it and give the instrument files inside"
    if _looks_like_text(head):
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if start.startswith((b"<!doctype html", b"<html")):
            return ("it looks like an HTML page (a saved web page or a download's error "
                    "page?), not an instrument file; download or copy the file itself")
        if start.startswith(b"<"):
            return ("it looks like an XML document; an X3P height map keeps its main.xml "
                    "inside a zip archive: give the .x3p file itself")
        return (f"it looks like plain text or CSV, not a Keyence CSV export (whose header "
                f"rows give the calibration); {_HEIGHT_EXPORTS}")
    return ("its content matches no known format; `electrode-qc formats` lists the formats "
            "that can be read")
