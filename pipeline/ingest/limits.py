"""Defensive limits for parsing untrusted instrument files.

Every reader goes through these helpers so that one place bounds what a hostile or broken
file can make us allocate: image dimensions, zip members and their uncompressed size, and
byte slices that run past the end of the data.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path

from pipeline.errors import UnreadableInput

__all__ = [
    "MAX_PIXELS",
    "MAX_PIXEL_SIZE_UM",
    "MAX_SIDE",
    "MAX_XML_BYTES",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_RATIO",
    "MAX_ZIP_TOTAL_BYTES",
    "MIN_PIXEL_SIZE_UM",
    "check_expansion",
    "check_pixel_size",
    "check_shape",
    "need",
    "open_zip",
    "read_zip_member",
    "unpack_from",
]

MAX_SIDE = 65_536
MAX_PIXELS = 200_000_000
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3
MAX_ZIP_RATIO = 250
MAX_XML_BYTES = 32 * 1024**2
# Plausible lateral pixel sizes: 0.1 nm (beyond any SEM's resolution) to 1 mm (a wide-area
# profiler or a navigation camera stays far below). Outside them the calibration is corrupt.
MIN_PIXEL_SIZE_UM = 1e-4
MAX_PIXEL_SIZE_UM = 1e3


def check_shape(path: str | Path, rows: int, cols: int, *, what: str = "image") -> tuple[int, int]:
    """Refuse dimensions that are not positive or that exceed the bounds above."""
    rows, cols = int(rows), int(cols)
    if rows <= 0 or cols <= 0:
        raise UnreadableInput(path, f"{what} dimensions {rows} x {cols} are not positive")
    if rows > MAX_SIDE or cols > MAX_SIDE or rows * cols > MAX_PIXELS:
        raise UnreadableInput(
            path,
            f"{what} dimensions {rows} x {cols} exceed the limit "
            f"({MAX_SIDE} per side, {MAX_PIXELS} pixels)",
        )
    return rows, cols


def check_pixel_size(path: str | Path, dx_um: float, dy_um: float) -> tuple[float, float]:
    """Refuse zero, negative, non-finite or absurd lateral pixel sizes (micrometres).

    A pixel below `MIN_PIXEL_SIZE_UM` (0.1 nm) or above `MAX_PIXEL_SIZE_UM` (1 mm) is a
    corrupt calibration (a unit slip, a garbage header field), refused as UnreadableInput.
    """
    out = []
    for axis, v in (("x", dx_um), ("y", dy_um)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UnreadableInput(path, f"pixel size {axis} is not a number: {v!r}") from None
        if not math.isfinite(f) or f <= 0.0:
            raise UnreadableInput(
                path, f"pixel size {axis} is {f!r} um; it must be a finite positive length"
            )
        if not MIN_PIXEL_SIZE_UM <= f <= MAX_PIXEL_SIZE_UM:
            raise UnreadableInput(
                path,
                f"pixel size {axis} is {f:g} um: the calibration is corrupt (a pixel of "
                f"{MIN_PIXEL_SIZE_UM * 1e3:g} nm to {MAX_PIXEL_SIZE_UM / 1e3:g} mm is expected)",
            )
        out.append(f)
    return out[0], out[1]


def open_zip(path: str | Path, source=None) -> zipfile.ZipFile:
    """Open a zip archive with member-count and uncompressed-size bounds checked up front.

    `source` may be a path or a file-like object; defaults to `path`.
    """
    try:
        zf = zipfile.ZipFile(path if source is None else source)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UnreadableInput(path, f"not a readable zip archive ({exc})") from None
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        zf.close()
        raise UnreadableInput(
            path, f"zip archive has {len(infos)} members; the limit is {MAX_ZIP_MEMBERS}"
        )
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_TOTAL_BYTES:
        zf.close()
        raise UnreadableInput(
            path,
            f"zip archive declares {total} uncompressed bytes; the limit is {MAX_ZIP_TOTAL_BYTES}",
        )
    return zf


def read_zip_member(
    path: str | Path,
    zf: zipfile.ZipFile,
    name: str,
    *,
    max_bytes: int = MAX_ZIP_TOTAL_BYTES,
    grid_bytes: int | None = None,
) -> bytes:
    """Read one member, refusing members whose size or compression ratio is implausible.

    The declared size is checked before decompressing, and the read is capped at the declared
    size so that a member that lies about its size cannot inflate further.

    Parameters
    ----------
    path : str or Path
        The archive, for error messages.
    zf : zipfile.ZipFile
        The open archive (from `open_zip`).
    name : str
        The member.
    max_bytes : int
        Hard limit on the declared uncompressed size.
    grid_bytes : int, optional
        The bytes the file's declared grid needs for this member (already bounded by
        `check_shape`). A member declaring no more than this may expand beyond
        `MAX_ZIP_RATIO`: its size is bounded by the grid, and a high ratio then only means
        trivially compressible content (an all-NaN or constant height block, an all-valid
        mask), which the caller judges on its content. A member declaring more keeps the
        ratio limit.
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise UnreadableInput(path, f"zip archive has no member {name!r}") from None
    if info.file_size > max_bytes:
        raise UnreadableInput(
            path, f"zip member {name!r} declares {info.file_size} bytes; the limit is {max_bytes}"
        )
    bounded = grid_bytes is not None and info.file_size <= grid_bytes
    if (not bounded and info.compress_size > 0
            and info.file_size / info.compress_size > MAX_ZIP_RATIO):
        raise UnreadableInput(
            path,
            f"zip member {name!r} expands {info.file_size / info.compress_size:.0f}-fold "
            f"(limit {MAX_ZIP_RATIO}); refusing a likely zip bomb",
        )
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise UnreadableInput(path, f"zip member {name!r} is corrupt ({exc})") from None
    if len(data) != info.file_size:
        raise UnreadableInput(
            path, f"zip member {name!r} holds {len(data)} bytes, its header says {info.file_size}"
        )
    return data


def check_expansion(path: str | Path, decoded_bytes: int, stored_bytes: int, what: str) -> None:
    """Refuse compressed data that claims to expand more than MAX_ZIP_RATIO-fold.

    Real height maps compress a few-fold; a small file that inflates to gigabytes is a
    decompression bomb, refused before anything is allocated.
    """
    stored = max(int(stored_bytes), 1)
    if int(decoded_bytes) > MAX_ZIP_RATIO * stored:
        raise UnreadableInput(
            path,
            f"{what} would expand {int(decoded_bytes) / stored:.0f}-fold "
            f"({decoded_bytes} bytes from {stored}; limit {MAX_ZIP_RATIO}); "
            "refusing a likely decompression bomb",
        )


def need(path: str | Path, buf: bytes | memoryview, offset: int, size: int, what: str) -> None:
    """Raise UnreadableInput when `buf[offset:offset+size]` runs past the end (truncated file)."""
    if offset < 0 or size < 0 or offset + size > len(buf):
        raise UnreadableInput(
            path,
            f"file is truncated: {what} needs bytes {offset}..{offset + size} "
            f"but the file has {len(buf)}",
        )


def unpack_from(path: str | Path, fmt: str, buf: bytes | memoryview, offset: int, what: str):
    """struct.unpack_from with a truncation check that names the field."""
    need(path, buf, offset, struct.calcsize(fmt), what)
    return struct.unpack_from(fmt, buf, offset)
