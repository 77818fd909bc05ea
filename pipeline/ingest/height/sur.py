"""Digital Surf ``.sur`` height maps (MountainsMap's native format, written by many instruments).

Layout facts (Gwyddion's ``surffile.c`` documentation and SurfaceTopography's ``IO/SUR.py``,
MIT; our own code). Everything is little-endian ("PC" format 0):

- A file is one or more *objects*; each starts with a 512-byte header, then a comment of
  ``comment_size`` bytes, a private zone of ``private_size`` bytes, then the data. We read the
  first object (a multi-layer or series file keeps the height layer first).
- Header: magic ``"DIGITAL SURF"`` (or ``"DSCOMPRESSED"``), format, object count, version,
  studiable type, object and operator names, acquisition type, special-points flag, bits per
  point (16 or 32, signed integers), z min/max, points per line (x), lines (y), total points,
  x/y/z spacing (float32) with 16-character step-unit strings, unit ratios, inversion,
  levelling, date and time, compressed data size, x/y/z offsets.
- Row-major data: ``n_y`` lines of ``n_x`` points; line 0 is the top of the image.
- Heights: ``z = (raw * spacing_z + offset_z) * um_per(step unit z)``; lateral pixel size
  ``spacing_x * um_per(step unit x)`` (and y). Offsets are in the step unit.
- Inversion 1: heights negated; 2: negated and mirrored left-right; 3: negated and mirrored
  top-bottom.
- Non-measured points: when the special-points flag is 1, a raw value of ``z_min - 2`` marks
  a point the instrument did not measure (-> NaN).
- ``DSCOMPRESSED`` objects hold, in place of the raw data, a uint32 stream count, that many
  (raw length, zipped length) uint32 pairs, then the zlib streams, whose concatenation is the
  raw data. The header's compressed size is the length of that whole block.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import (
    array_from_buffer,
    finite_positive,
    fixed_string,
    length_unit_to_um,
    read_file_bytes,
)
from pipeline.ingest.limits import check_expansion, check_shape, need, unpack_from

__all__ = ["HEADER_FIELDS", "HEADER_SIZE", "SurReader", "parse_sur"]

log = logging.getLogger(__name__)

MAGIC_PLAIN = b"DIGITAL SURF"
MAGIC_COMPRESSED = b"DSCOMPRESSED"
HEADER_SIZE = 512
MAX_STREAMS = 65_536
NON_MEASURED_OFFSET = -2  # marker = z_min - 2
INVALID_RULE = "special_points == 1 and raw == z_min - 2 -> NaN"

# (name, struct code); None marks reserved bytes. Sums to HEADER_SIZE.
HEADER_FIELDS: tuple[tuple[str | None, str], ...] = (
    ("magic", "12s"), ("format", "H"), ("n_objects", "H"), ("version", "H"),
    ("studiable_type", "H"), ("object_name", "30s"), ("operator_name", "30s"),
    ("material_code", "H"), ("acquisition_type", "H"), ("range_type", "H"),
    ("special_points", "H"), ("absolute", "H"), ("gauge_resolution", "f"), (None, "4x"),
    ("bits_per_point", "H"), ("z_min", "i"), ("z_max", "i"), ("n_x", "i"), ("n_y", "i"),
    ("n_points", "I"), ("spacing_x", "f"), ("spacing_y", "f"), ("spacing_z", "f"),
    ("name_x", "16s"), ("name_y", "16s"), ("name_z", "16s"),
    ("step_unit_x", "16s"), ("step_unit_y", "16s"), ("step_unit_z", "16s"),
    ("length_unit_x", "16s"), ("length_unit_y", "16s"), ("length_unit_z", "16s"),
    ("unit_ratio_x", "f"), ("unit_ratio_y", "f"), ("unit_ratio_z", "f"),
    ("replica", "H"), ("inversion", "H"), ("levelling", "H"), (None, "12x"),
    ("second", "H"), ("minute", "H"), ("hour", "H"), ("day", "H"), ("month", "H"),
    ("year", "H"), ("weekday", "H"), ("duration_s", "f"), ("compressed_size", "I"),
    (None, "6x"), ("comment_size", "H"), ("private_size", "H"), ("client_zone", "128s"),
    ("offset_x", "f"), ("offset_y", "f"), ("offset_z", "f"), ("spacing_t", "f"),
    ("offset_t", "f"), ("name_t", "13s"), ("step_unit_t", "13s"),
)  # fmt: skip
_FORMAT = "<" + "".join(code for _, code in HEADER_FIELDS)
_NAMES = [name for name, _ in HEADER_FIELDS if name is not None]
assert struct.calcsize(_FORMAT) == HEADER_SIZE

_ACQUISITION = {
    0: "unknown", 1: "contact stylus", 2: "scanning optical gauge", 3: "thermocouple",
    4: "unknown", 5: "contact stylus with skid", 6: "AFM", 7: "STM", 8: "video",
    9: "interferometer", 10: "structured light projection",
}  # fmt: skip
_STUDIABLE = {
    1: "profile", 2: "surface", 3: "binary image", 4: "series of profiles",
    5: "series of surfaces", 6: "meridian disc", 7: "multilayer profile",
    8: "multilayer surface", 9: "parallel disc", 10: "intensity image",
    11: "intensity surface", 12: "RGB image", 13: "RGB surface", 14: "force curve",
    15: "series of force curves", 16: "RGB intensity surface", 17: "parametric profile",
    18: "series of RGB images", 19: "spectrum",
}  # fmt: skip
# Studiables whose first object is a height map. Type 1 (profile) is accepted only with
# more than one line: Gwyddion writes its surfaces with that type.
_HEIGHT_TYPES = {2, 5, 8, 16}


def _header(path, buf: bytes, start: int) -> dict:
    need(path, buf, start, HEADER_SIZE, "SUR object header (512 bytes)")
    values = struct.unpack_from(_FORMAT, buf, start)
    h = dict(zip(_NAMES, values))
    for k, v in h.items():
        if isinstance(v, bytes):
            h[k] = fixed_string(v)
    return h


def _unit_factor(path, h: dict, axis: str) -> float:
    unit = h[f"step_unit_{axis}"]
    f = length_unit_to_um(unit)
    if f is None:
        raise UnreadableInput(
            path, f"SUR header step unit {axis} is {unit!r}, not a known length unit (corrupt header)"
        )
    return f


def _check_header(path, h: dict) -> tuple[int, int, np.dtype]:
    if h["format"] != 0:
        raise UnreadableInput(
            path, f"unsupported SUR variant: format {h['format']} (only 0, PC little-endian, is read)"
        )
    if h["bits_per_point"] not in (16, 32):
        raise UnreadableInput(
            path, f"SUR header gives {h['bits_per_point']} bits per point; 16 or 32 is expected"
        )
    rows, cols = check_shape(path, h["n_y"], h["n_x"], what="SUR height map")
    if h["n_points"] != rows * cols:
        raise UnreadableInput(
            path,
            f"SUR header declares {h['n_points']} points but {cols} x {rows} = {rows * cols} "
            "(corrupt header)",
        )
    st = h["studiable_type"]
    if st not in _HEIGHT_TYPES and not (st == 1 and rows > 1):
        raise UnreadableInput(
            path,
            f"SUR studiable type {st} ({_STUDIABLE.get(st, 'unknown')}) holds no height map",
        )
    for axis in ("x", "y"):
        if not finite_positive(h[f"spacing_{axis}"]):
            raise UnreadableInput(
                path,
                f"SUR header spacing_{axis} is {h[f'spacing_{axis}']!r}; a pixel size must be "
                "finite and positive (corrupt header)",
            )
    if not np.isfinite(h["spacing_z"]) or h["spacing_z"] == 0:
        raise UnreadableInput(
            path, f"SUR header spacing_z is {h['spacing_z']!r}; the z scale must be finite and non-zero"
        )
    return rows, cols, np.dtype("<i2" if h["bits_per_point"] == 16 else "<i4")


def _compressed_data(path, buf: bytes, pos: int, h: dict, nbytes: int) -> bytes:
    (n_streams,) = unpack_from(path, "<I", buf, pos, "SUR compressed stream count")
    if not 1 <= n_streams <= MAX_STREAMS:
        raise UnreadableInput(path, f"SUR compressed block declares {n_streams} streams (corrupt)")
    table = array_from_buffer(path, buf, pos + 4, "<u4", (n_streams, 2), "SUR compressed stream table")
    raw_lens, zip_lens = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    block = 4 + 8 * n_streams + int(zip_lens.sum())
    if h["compressed_size"] and h["compressed_size"] != block:
        raise UnreadableInput(
            path,
            f"SUR header gives a compressed data size of {h['compressed_size']} bytes but the "
            f"stream table adds up to {block} (corrupt)",
        )
    if int(raw_lens.sum()) != nbytes:
        raise UnreadableInput(
            path,
            f"SUR compressed streams hold {int(raw_lens.sum())} bytes; the header's "
            f"{h['n_x']} x {h['n_y']} points of {h['bits_per_point']} bits need {nbytes}",
        )
    check_expansion(path, nbytes, int(zip_lens.sum()), "SUR compressed data")
    pos += 4 + 8 * n_streams
    parts = []
    for i, (raw_len, zip_len) in enumerate(zip(raw_lens.tolist(), zip_lens.tolist())):
        need(path, buf, pos, zip_len, f"SUR compressed stream {i}")
        d = zlib.decompressobj()
        try:
            out = d.decompress(buf[pos : pos + zip_len], raw_len)
        except zlib.error as exc:
            raise UnreadableInput(path, f"SUR compressed stream {i} is corrupt ({exc})") from None
        if len(out) != raw_len or not d.eof or d.unconsumed_tail:
            raise UnreadableInput(
                path,
                f"SUR compressed stream {i} inflates to {len(out)}+ bytes; its table entry "
                f"says {raw_len} (corrupt or truncated stream)",
            )
        parts.append(out)
        pos += zip_len
    return b"".join(parts)


def parse_sur(path: str | Path, buf: bytes) -> tuple[np.ndarray, float, float, dict]:
    """Parse the first object of a SUR file.

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN at non-measured points.
    dx_um, dy_um : float
        Pixel sizes in micrometres.
    header : dict
        Header fields worth showing.
    """
    magic = bytes(buf[:12])
    if magic not in (MAGIC_PLAIN, MAGIC_COMPRESSED):
        raise UnreadableInput(
            path, f"not a Digital Surf SUR file: magic is {magic!r}, expected {MAGIC_PLAIN!r}"
        )
    h = _header(path, buf, 0)
    rows, cols, dtype = _check_header(path, h)
    fx, fy, fz = (_unit_factor(path, h, a) for a in ("x", "y", "z"))
    pos = HEADER_SIZE
    need(path, buf, pos, h["comment_size"] + h["private_size"], "SUR comment and private zones")
    comment = fixed_string(buf[pos : pos + h["comment_size"]])
    pos += h["comment_size"] + h["private_size"]
    nbytes = rows * cols * dtype.itemsize
    if magic == MAGIC_COMPRESSED:
        data = _compressed_data(path, buf, pos, h, nbytes)
        raw = np.frombuffer(data, dtype=dtype).reshape(rows, cols)
    else:
        raw = array_from_buffer(path, buf, pos, dtype, (rows, cols), "SUR height data")

    z_um = (raw.astype(np.float64) * h["spacing_z"] + h["offset_z"]) * fz
    if h["special_points"] == 1:
        z_um[raw.astype(np.int64) == h["z_min"] + NON_MEASURED_OFFSET] = np.nan
    inversion = h["inversion"]
    if inversion in (1, 2, 3):
        z_um = -z_um
    if inversion == 2:
        z_um = z_um[:, ::-1]
    elif inversion == 3:
        z_um = z_um[::-1, :]
    return z_um, h["spacing_x"] * fx, h["spacing_y"] * fy, _header_info(h, magic, comment)


def _header_info(h: dict, magic: bytes, comment: str) -> dict:
    info = {
        "variant": "compressed (DSCOMPRESSED)" if magic == MAGIC_COMPRESSED else "uncompressed",
        "version": h["version"],
        "n_objects": h["n_objects"],
        "studiable_type": _STUDIABLE.get(h["studiable_type"], str(h["studiable_type"])),
        "object_name": h["object_name"],
        "operator_name": h["operator_name"],
        "comment": comment,
        "acquisition_type": _ACQUISITION.get(h["acquisition_type"], str(h["acquisition_type"])),
        "bits_per_point": h["bits_per_point"],
        "spacing_x": h["spacing_x"], "spacing_y": h["spacing_y"], "spacing_z": h["spacing_z"],
        "step_unit_x": h["step_unit_x"], "step_unit_y": h["step_unit_y"],
        "step_unit_z": h["step_unit_z"],
        "offset_x": h["offset_x"], "offset_y": h["offset_y"], "offset_z": h["offset_z"],
        "z_min_raw": h["z_min"], "z_max_raw": h["z_max"],
        "special_points": h["special_points"], "absolute_z": h["absolute"],
        "inversion": h["inversion"], "levelling": h["levelling"],
        "invalid_rule": INVALID_RULE,
    }  # fmt: skip
    if h["year"]:
        info["date"] = "{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}".format(**h)
    for axis in ("x", "y", "z"):
        if h[f"unit_ratio_{axis}"] != 1.0:
            info[f"unit_ratio_{axis}"] = h[f"unit_ratio_{axis}"]
    if h["client_zone"]:
        info["client_zone"] = h["client_zone"]
    return {k: v for k, v in info.items() if v != ""}


class SurReader:
    """Digital Surf SUR (plain and DSCOMPRESSED), first object of the file."""

    name = "sur"
    kind = "height"
    suffixes = (".sur",)
    description = "Digital Surf / MountainsMap SUR height map (plain or compressed)"
    expects = "magic 'DIGITAL SURF' or 'DSCOMPRESSED' at byte 0"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return head[:12] in (MAGIC_PLAIN, MAGIC_COMPRESSED)

    def open(self, path: Path):
        path = Path(path)
        z_um, dx, dy, header = parse_sur(path, read_file_bytes(path))
        acq = header.get("acquisition_type", "unknown")
        return height_dataarray(
            z_um,
            path=path,
            dx_um=dx,
            dy_um=dy,
            pixel_size_source=(
                f"Digital Surf SUR header spacing_x/spacing_y in step units "
                f"{header['step_unit_x']!r}/{header['step_unit_y']!r}"
            ),
            vendor="Digital Surf",
            instrument=header.get("operator_name") or ("" if acq == "unknown" else acq),
            fmt="sur",
            header=header,
        )
