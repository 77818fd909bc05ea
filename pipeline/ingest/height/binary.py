"""Small helpers shared by the binary height-map readers (sur, plu, zygo, al3d, zon).

Length units written as text in headers are turned into micrometres here, fixed-length
NUL-padded strings into ``str``, and typed arrays are taken out of a byte buffer with a
truncation check that names the block.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.limits import need

__all__ = [
    "array_from_buffer",
    "finite_positive",
    "fixed_string",
    "length_unit_to_um",
    "read_file_bytes",
]

# Micrometres per unit. Keys are lower-case with the micro sign normalised to "u".
_UM_PER_UNIT = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "a": 1e-4,  # angstrom
    "ang": 1e-4,
    "angstrom": 1e-4,
}

# Spellings of the micro prefix: MICRO SIGN (U+00B5), GREEK SMALL MU (U+03BC), and 0xE6 as
# old MS-DOS (code page 437) software writes it, which reads as U+00E6 in Latin-1.
_MICRO = ("\u00b5", "\u03bc", "\u00e6")


def length_unit_to_um(unit: str) -> float | None:
    """Micrometres in one `unit` (``"mm"`` -> 1000.0), or None for an unknown or empty unit.

    Parameters
    ----------
    unit : str
        A length unit as written in a file header: ``m``, ``cm``, ``mm``, ``um``/``µm``/``μm``
        (also the MS-DOS ``0xE6`` micro sign), ``nm``, ``pm``, ``Å``/``A``. Case is ignored
        (some writers use ``"MM"``); surrounding blanks and NULs are dropped.

    Returns
    -------
    float or None
    """
    u = unit.replace("\x00", "").strip()
    if not u:
        return None
    for m in _MICRO:
        u = u.replace(m, "u")
    u = u.replace("\u00c5", "a").replace("\u212b", "a")  # Å (two code points)
    return _UM_PER_UNIT.get(u.lower())


def fixed_string(raw: bytes, encoding: str = "latin-1") -> str:
    """A fixed-length header string: cut at the first NUL, decoded, surrounding blanks removed."""
    return raw.split(b"\x00", 1)[0].decode(encoding, errors="replace").strip()


def read_file_bytes(path: str | Path) -> bytes:
    """The whole file; UnreadableInput (not OSError) when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableInput(path, f"cannot be read ({exc.strerror or exc})") from None


def array_from_buffer(
    path: str | Path,
    buf: bytes | memoryview,
    offset: int,
    dtype: str | np.dtype,
    shape: tuple[int, ...],
    what: str,
) -> np.ndarray:
    """A read-only array view of `buf` at `offset`; UnreadableInput naming `what` if it runs short.

    Parameters
    ----------
    path : str or Path
        The file, for the error message.
    buf : bytes or memoryview
        The data.
    offset : int
        Byte offset of the first element.
    dtype : str or numpy.dtype
        Element type with explicit byte order (``"<f4"``, ``">i4"``, ...).
    shape : tuple of int
        Shape of the result; the element count is their product.
    what : str
        Name of the block (``"SUR height data"``), quoted when the file is truncated.
    """
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    need(path, buf, offset, count * dt.itemsize, what)
    return np.frombuffer(buf, dtype=dt, count=count, offset=offset).reshape(shape)


def finite_positive(value: float) -> bool:
    """True for a finite number > 0 (False for NaN, inf, zero and negatives)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0.0
