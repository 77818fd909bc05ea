"""Alicona ``.al3d`` height maps (InfiniteFocus focus-variation microscopes, MeasureSuite).

Layout facts (Gwyddion's ``alicona.c`` documentation and SurfaceTopography's ``IO/AL3D.py``,
MIT; our own code):

- 17 bytes of magic ``b"AliconaImaging\\x00\\r\\n"``;
- tag records of 52 bytes: a 20-byte NUL-padded key, a 30-byte NUL-padded value (text) and
  ``\\r\\n``. The first is ``Version``, the second ``TagCount`` (the number of records that
  follow): ``Cols``, ``Rows``, ``PixelSizeXMeter``, ``PixelSizeYMeter``, ``DepthImageOffset``,
  ``InvalidPixelValue``, ``TextureImageOffset``, ``CreatingApplication``, ...;
- a 256-byte comment (NUL-padded text ending in ``\\r\\n``);
- at ``DepthImageOffset`` (absolute): ``Rows`` rows of little-endian float32 depths in metres,
  each row padded to a multiple of 8 bytes (an even number of values), row 0 at the top.

Points without a depth hold ``InvalidPixelValue`` or NaN (-> NaN). Heights are absolute
(stage position included), so they sit tens of millimetres from zero.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import (
    array_from_buffer,
    finite_positive,
    fixed_string,
    read_file_bytes,
)
from pipeline.ingest.limits import check_shape, need

__all__ = ["COMMENT_SIZE", "MAGIC", "TAG_SIZE", "Al3dReader", "parse_al3d"]

log = logging.getLogger(__name__)

MAGIC = b"AliconaImaging\x00\r\n"
KEY_SIZE, VALUE_SIZE = 20, 30
TAG_SIZE = KEY_SIZE + VALUE_SIZE + 2
COMMENT_SIZE = 256
MAX_TAGS = 10_000
ROW_ALIGN_BYTES = 8
INVALID_RTOL = 1.2e-7  # one float32 step: the marker is text, the data float32
INVALID_RULE = "depth is NaN or equals InvalidPixelValue (within one float32 step) -> NaN"
_REQUIRED = ("Cols", "Rows", "PixelSizeXMeter", "PixelSizeYMeter", "DepthImageOffset")


def _tag(path, buf: bytes, pos: int, index: int) -> tuple[str, str]:
    need(path, buf, pos, TAG_SIZE, f"AL3D header tag record {index}")
    rec = buf[pos : pos + TAG_SIZE]
    if rec[-2:] != b"\r\n":
        raise UnreadableInput(
            path, f"AL3D header tag record {index} (byte {pos}) does not end in CRLF (corrupt header)"
        )
    return fixed_string(rec[:KEY_SIZE]), fixed_string(rec[KEY_SIZE : KEY_SIZE + VALUE_SIZE])


def _tags(path, buf: bytes) -> tuple[dict[str, str], int]:
    pos = len(MAGIC)
    tags: dict[str, str] = {}
    for index, expected in enumerate(("Version", "TagCount")):
        key, value = _tag(path, buf, pos, index)
        if key != expected:
            raise UnreadableInput(
                path, f"AL3D header tag {index} is {key!r}; {expected!r} is expected (corrupt header)"
            )
        tags[key] = value
        pos += TAG_SIZE
    try:
        count = int(tags["TagCount"])
    except ValueError:
        raise UnreadableInput(path, f"AL3D TagCount {tags['TagCount']!r} is not a number") from None
    if not 0 <= count <= MAX_TAGS:
        raise UnreadableInput(path, f"AL3D TagCount is {count} (corrupt header)")
    need(path, buf, pos, count * TAG_SIZE + COMMENT_SIZE, f"AL3D header ({count} tags and comment)")
    for i in range(count):
        key, value = _tag(path, buf, pos, i + 2)
        tags[key] = value
        pos += TAG_SIZE
    return tags, pos


def _number(path, tags: dict, key: str, kind=float):
    text = tags.get(key)
    if text is None:
        raise UnreadableInput(path, f"AL3D header has no {key} tag (corrupt or unsupported file)")
    try:
        return kind(text)
    except ValueError:
        raise UnreadableInput(path, f"AL3D header tag {key} is {text!r}, not a number") from None


def parse_al3d(path: str | Path, buf: bytes) -> tuple[np.ndarray, float, float, dict]:
    """Parse the depth image of an AL3D file.

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN at invalid pixels.
    dx_um, dy_um : float
        Pixel sizes in micrometres.
    header : dict
        Header tags worth showing.
    """
    need(path, buf, 0, len(MAGIC), "AL3D magic")
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        raise UnreadableInput(path, f"not an Alicona AL3D file: magic is {bytes(buf[:17])!r}")
    tags, pos = _tags(path, buf)
    comment = fixed_string(buf[pos : pos + COMMENT_SIZE])
    for key in _REQUIRED:
        if key not in tags:
            raise UnreadableInput(path, f"AL3D header has no {key} tag (corrupt or unsupported file)")
    rows, cols = check_shape(
        path, _number(path, tags, "Rows", int), _number(path, tags, "Cols", int), what="AL3D depth image"
    )
    dx_m, dy_m = (_number(path, tags, f"PixelSize{a}Meter") for a in ("X", "Y"))
    for axis, v in (("X", dx_m), ("Y", dy_m)):
        if not finite_positive(v):
            raise UnreadableInput(
                path,
                f"AL3D PixelSize{axis}Meter is {v!r}; a pixel size must be finite and positive "
                "(corrupt header)",
            )
    offset = _number(path, tags, "DepthImageOffset", int)
    if offset <= 0:
        raise UnreadableInput(path, f"AL3D DepthImageOffset is {offset}: the file holds no depth image")
    stride = -(-cols * 4 // ROW_ALIGN_BYTES) * ROW_ALIGN_BYTES // 4
    depth = array_from_buffer(path, buf, offset, "<f4", (rows, stride), "AL3D depth image")[:, :cols]

    invalid_value = _number(path, tags, "InvalidPixelValue") if "InvalidPixelValue" in tags else math.nan
    z_m = depth.astype(np.float64)
    bad = np.isnan(z_m)
    if math.isfinite(invalid_value):
        bad |= np.abs(z_m - invalid_value) <= INVALID_RTOL * abs(invalid_value)
    z_um = z_m * 1e6
    z_um[bad] = np.nan

    header = {k: v for k, v in tags.items() if v and v.isprintable() and k != "PlaceHolder"}
    header.update(comment=comment, row_stride_values=stride, invalid_rule=INVALID_RULE)
    return z_um, dx_m * 1e6, dy_m * 1e6, {k: v for k, v in header.items() if v != ""}


class Al3dReader:
    """Alicona AL3D: the depth image."""

    name = "al3d"
    kind = "height"
    suffixes = (".al3d",)
    description = "Alicona InfiniteFocus AL3D focus-variation height map"
    expects = "magic 'AliconaImaging\\x00\\r\\n' at byte 0"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return head[: len(MAGIC)] == MAGIC

    def open(self, path: Path):
        path = Path(path)
        z_um, dx, dy, header = parse_al3d(path, read_file_bytes(path))
        return height_dataarray(
            z_um,
            path=path,
            dx_um=dx,
            dy_um=dy,
            pixel_size_source="Alicona AL3D header tags PixelSizeXMeter/PixelSizeYMeter",
            vendor="Alicona",
            instrument="",  # the file names the software (CreatingApplication), not the model
            fmt="al3d",
            header=header,
        )
