"""Keyence VK-X laser-confocal height maps: VK4, and VK6/VK7 (a zip that holds a VK4 stream).

Layout (little-endian, every field a uint32 unless said otherwise), as published by
Gwyddion's ``keyence.c`` documentation, SurfaceTopography's ``IO/VK.py`` (MIT) and the
Kaitai description of vk4; our own code, facts only:

- bytes 0..12: magic ``b"VK4_"``, 4 bytes DLL version, 4 bytes file type (zero).
- bytes 12..84: offset table of 18 absolute offsets: setting (the measurement conditions,
  84), color peak, color light, light 1..3, height 1..3, four thumbnails, assemble, line
  measure, line thickness, string data, reserved. 0 means "absent".
- byte 84: measurement conditions, a block whose first field is its own size (>= 304):
  date and time, UTC offset (int32, minutes), ..., optical zoom (x10), ..., lens (objective)
  magnification (x10), ..., x and y length per pixel (picometres), z length per digit
  (picometres), ..., numerical aperture (x1000), ..., upper/lower scan position (nm).
  The laser wavelength is not a field of the published block, so it is not reported.
- a height (false-colour) image: width, height, bit depth (8/16/32), compression, byte size
  (= width x height x bit depth / 8), palette range min/max, a 768-byte palette, then the
  unsigned pixel data row by row, first row = top of the image.
- the string block: two UTF-16LE strings (title, lens name), each prefixed by its length
  in characters.

VK6 and VK7 files start with ``b"VK6"``/``b"VK7"`` and a uint32 (the size of the BMP preview
that follows), then the BMP, then a zip archive whose member ``Vk4File`` is a VK4 stream.

Heights: ``height_um = count * z_length_per_digit_pm * 1e-6`` (the counts are read as
unsigned, as Gwyddion, SurfaceTopography and surfalize do).

Unmeasured points: a pixel where the confocal scan found no intensity peak is written as
count 0 (the lowest possible height, below the scan range). Gwyddion, SurfaceTopography and
surfalize keep these zeros as heights of 0; tools written against real VK-X exports drop
raw 0 as invalid. We choose the explicit rule **raw count == 0 -> NaN** for every bit depth
and record it as ``header["invalid_rule"]``. A real point measured at exactly count 0 would be
lost, which cannot happen in practice because counts are referred to a level below the scan.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.limits import check_shape, need, open_zip, read_zip_member, unpack_from

__all__ = ["VK4Reader", "VK6Reader", "parse_vk4"]

log = logging.getLogger(__name__)

MAGIC_VK4 = b"VK4_"
MAGICS_ZIPPED = (b"VK6", b"VK7")
VK4_MEMBER = "Vk4File"
HEADER_SIZE = 12
OFFSET_NAMES = (
    "setting", "color_peak", "color_light", "light1", "light2", "light3",
    "height1", "height2", "height3", "color_peak_thumbnail", "color_light_thumbnail",
    "light_thumbnail", "height_thumbnail", "assemble", "line_measure", "line_thickness",
    "string_data", "reserved",
)  # fmt: skip
MEAS_OFFSET = HEADER_SIZE + 4 * len(OFFSET_NAMES)  # 84
MEAS_MIN_SIZE = 304
IMAGE_HEADER_SIZE = 7 * 4 + 768  # 796: seven uint32 and the palette
INVALID_RULE = "raw height count 0 (no confocal peak) -> NaN"

# Byte positions inside the measurement-conditions block (uint32 unless noted).
_MEAS_FIELDS = {
    "year": 4, "month": 8, "day": 12, "hour": 16, "minute": 20, "second": 24,
    "run_mode": 48, "peak_mode": 52, "speed": 60, "distance_nm": 64, "pitch_nm": 68,
    "optical_zoom_x10": 72, "lens_mag_x10": 96, "plane_compensation": 148,
    "x_length_per_pixel_pm": 168, "y_length_per_pixel_pm": 172,
    "z_length_per_digit_pm": 176, "numerical_aperture_x1000": 224, "head_type": 228,
    "lens_id": 240, "upper_position_nm": 288, "lower_position_nm": 292,
    "height_effective_bit_depth": 300,
}  # fmt: skip
_UTC_DIFF_POS = 28  # int32, minutes


def _u32(path, buf, pos: int, what: str) -> int:
    return int(unpack_from(path, "<I", buf, pos, what)[0])


def _offset_table(path, buf: bytes) -> dict[str, int]:
    values = unpack_from(path, f"<{len(OFFSET_NAMES)}I", buf, HEADER_SIZE, "VK4 offset table")
    table = dict(zip(OFFSET_NAMES, (int(v) for v in values), strict=True))
    for name, off in table.items():
        if name != "reserved" and off > len(buf):
            raise UnreadableInput(
                path,
                f"VK4 offset table entry '{name}' points to byte {off}, beyond the end of the "
                f"data ({len(buf)} bytes): the file is truncated or corrupt",
            )
    return table


def _measurement_conditions(path, buf: bytes) -> dict[str, int]:
    size = _u32(path, buf, MEAS_OFFSET, "VK4 measurement conditions block size")
    if size < MEAS_MIN_SIZE:
        raise UnreadableInput(
            path,
            f"VK4 measurement conditions block declares {size} bytes; at least "
            f"{MEAS_MIN_SIZE} are expected (corrupt header)",
        )
    need(path, buf, MEAS_OFFSET, size, "VK4 measurement conditions block")
    mc = {
        k: _u32(path, buf, MEAS_OFFSET + p, "VK4 measurement conditions")
        for k, p in _MEAS_FIELDS.items()
    }
    mc["diff_utc_min"] = int(struct.unpack_from("<i", buf, MEAS_OFFSET + _UTC_DIFF_POS)[0])
    mc["size"] = size
    return mc


def _utf16_string(path, buf: bytes, pos: int, what: str) -> tuple[str, int]:
    n = _u32(path, buf, pos, f"VK4 string block ({what} length)")
    need(path, buf, pos + 4, 2 * n, f"VK4 string block ({what})")
    text = buf[pos + 4 : pos + 4 + 2 * n].decode("utf-16-le", errors="replace")
    return text.rstrip("\x00").strip(), pos + 4 + 2 * n


def _height_image(path, buf: bytes, off: int) -> tuple[np.ndarray, dict]:
    need(path, buf, off, IMAGE_HEADER_SIZE, "VK4 height image header")
    width, height, bits, compression, byte_size, pmin, pmax = struct.unpack_from("<7I", buf, off)
    if bits not in (8, 16, 32):
        raise UnreadableInput(
            path, f"VK4 height image has bit depth {bits}; 8, 16 or 32 is expected (corrupt header)"
        )
    rows, cols = check_shape(path, height, width, what="VK4 height image")
    expected = rows * cols * (bits // 8)
    if byte_size != expected:
        raise UnreadableInput(
            path,
            f"VK4 height image declares {byte_size} data bytes but {cols} x {rows} pixels of "
            f"{bits} bits need {expected} (corrupt header or compressed data)",
        )
    start = off + IMAGE_HEADER_SIZE
    need(path, buf, start, byte_size, "VK4 height image data")
    dtype = {8: "u1", 16: "<u2", 32: "<u4"}[bits]
    counts = np.frombuffer(buf, dtype=dtype, count=rows * cols, offset=start).reshape(rows, cols)
    info = {
        "bit_depth": bits,
        # VK-X3000 files carry an ASCII tag (e.g. "MC32") here; keep it readable.
        "compression": _tag_or_int(compression),
        "palette_range_min": int(pmin),
        "palette_range_max": int(pmax),
    }
    return counts, info


def _tag_or_int(value: int) -> int | str:
    raw = struct.pack("<I", value)
    if value and all(32 <= b < 127 for b in raw):
        return raw.decode("ascii")
    return int(value)


def parse_vk4(path: str | Path, buf: bytes) -> tuple[np.ndarray, float, float, dict]:
    """Parse a VK4 byte stream.

    Parameters
    ----------
    path : str or Path
        The file, for error messages.
    buf : bytes
        The VK4 stream (a .vk4 file, or the ``Vk4File`` member of a .vk6/.vk7).

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN where the raw count is 0 (see module docstring).
    dx_um, dy_um : float
        Pixel sizes in micrometres.
    header : dict
        Measurement conditions worth showing (plain scalars and strings).
    """
    need(path, buf, 0, HEADER_SIZE, "VK4 file header")
    if buf[:4] != MAGIC_VK4:
        raise UnreadableInput(
            path, f"not a Keyence VK4 stream: magic is {bytes(buf[:4])!r}, expected {MAGIC_VK4!r}"
        )
    if buf[8:12] != b"\x00\x00\x00\x00":
        raise UnreadableInput(
            path,
            f"unsupported VK4 variant: file-type bytes are {bytes(buf[8:12]).hex(' ')}, "
            "expected zeros",
        )
    table = _offset_table(path, buf)
    if table["setting"] not in (0, MEAS_OFFSET):
        log.warning(
            "%s: VK4 offset table puts the measurement conditions at byte %d; reading them at "
            "byte %d as every published reader does",
            path, table["setting"], MEAS_OFFSET,
        )  # fmt: skip
    mc = _measurement_conditions(path, buf)
    if table["height1"] == 0:
        raise UnreadableInput(
            path, "VK4 file holds no height image (offset table entry 'height1' is 0)"
        )
    counts, img = _height_image(path, buf, table["height1"])

    x_pm, y_pm, z_pm = (
        mc[k] for k in ("x_length_per_pixel_pm", "y_length_per_pixel_pm", "z_length_per_digit_pm")
    )
    for axis, v in (
        ("x_length_per_pixel", x_pm),
        ("y_length_per_pixel", y_pm),
        ("z_length_per_digit", z_pm),
    ):
        if v == 0:
            raise UnreadableInput(
                path,
                f"VK4 measurement conditions give {axis} = 0 pm; a scale must be positive "
                "(corrupt header)",
            )
    z_um = counts.astype(np.float64) * (z_pm * 1e-6)
    z_um[counts == 0] = np.nan

    header: dict = {
        "dll_version": ".".join(str(b) for b in reversed(buf[4:8])),
        "image_width_px": int(counts.shape[1]),
        "image_height_px": int(counts.shape[0]),
        "pixel_size_x_um": x_pm * 1e-6,
        "pixel_size_y_um": y_pm * 1e-6,
        "x_length_per_pixel_pm": x_pm,
        "y_length_per_pixel_pm": y_pm,
        "z_length_per_digit_pm": z_pm,
        "z_per_digit_nm": z_pm * 1e-3,
        "objective_magnification": mc["lens_mag_x10"] / 10.0,
        "optical_zoom": mc["optical_zoom_x10"] / 10.0,
        "numerical_aperture": mc["numerical_aperture_x1000"] / 1000.0,
        "date": "{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}".format(
            **mc
        ),
        "utc_offset_min": mc["diff_utc_min"],
        "height_layers": sum(1 for k in ("height1", "height2", "height3") if table[k]),
        "invalid_rule": INVALID_RULE,
        "measurement_conditions_bytes": mc["size"],
        **img,
    }
    for k in ("run_mode", "peak_mode", "speed", "pitch_nm", "distance_nm", "upper_position_nm",
              "lower_position_nm", "head_type", "lens_id", "plane_compensation",
              "height_effective_bit_depth"):  # fmt: skip
        header[k] = mc[k]
    if table["string_data"]:
        title, pos = _utf16_string(path, buf, table["string_data"], "title")
        lens, _ = _utf16_string(path, buf, pos, "lens name")
        if title:
            header["title"] = title
        if lens:
            header["lens_name"] = lens
    return z_um, x_pm * 1e-6, y_pm * 1e-6, header


def _dataarray(path: Path, buf: bytes, fmt: str, extra: dict):
    z_um, dx, dy, header = parse_vk4(path, buf)
    header = {"format_variant": fmt.upper(), **extra, **header}
    return height_dataarray(
        z_um,
        path=path,
        dx_um=dx,
        dy_um=dy,
        pixel_size_source="Keyence VK4 measurement conditions x/y_length_per_pixel",
        vendor="Keyence",
        instrument="VK series laser confocal microscope",
        fmt=fmt,
        header=header,
    )


class VK4Reader:
    """Keyence VK4 (VK-X laser-confocal microscope), read natively."""

    name = "keyence_vk4"
    kind = "height"
    suffixes = (".vk4",)
    description = "Keyence VK-X laser confocal microscope VK4 height map"
    expects = "magic 'VK4_' at byte 0"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return head[:4] == MAGIC_VK4

    def open(self, path: Path):
        path = Path(path)
        return _dataarray(path, path.read_bytes(), "vk4", {})


class VK6Reader:
    """Keyence VK6 / VK7: a BMP preview then a zip whose member ``Vk4File`` is a VK4 stream."""

    name = "keyence_vk6"
    kind = "height"
    suffixes = (".vk6", ".vk7")
    description = "Keyence VK-X laser confocal microscope VK6/VK7 (zipped VK4) height map"
    expects = "magic 'VK6'/'VK7' at byte 0, or a zip whose first member is 'Vk4File'"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        if head[:3] in MAGICS_ZIPPED:
            return True
        return head[:4] == b"PK\x03\x04" and head[30 : 30 + len(VK4_MEMBER)] == VK4_MEMBER.encode()

    def open(self, path: Path):
        path = Path(path)
        with path.open("rb") as fh:
            prefix = fh.read(16)
        variant = prefix[:3].decode("ascii") if prefix[:3] in MAGICS_ZIPPED else "zip"
        extra: dict = {"container": f"{variant} zip member {VK4_MEMBER}"}
        if variant != "zip" and len(prefix) >= 13 and prefix[7:9] == b"BM":
            extra["bmp_preview_bytes"] = int(struct.unpack_from("<I", prefix, 9)[0])
        zf = open_zip(path)
        try:
            names = {n.lower(): n for n in zf.namelist()}
            member = names.get(VK4_MEMBER.lower())
            if member is None:
                raise UnreadableInput(
                    path,
                    f"{variant} archive has no member {VK4_MEMBER!r} "
                    f"(members: {sorted(names.values())[:10]})",
                )
            buf = read_zip_member(path, zf, member)
        finally:
            zf.close()
        try:
            fmt = variant.lower() if variant != "zip" else "vk6"
            return _dataarray(path, buf, fmt, extra)
        except UnreadableInput as exc:
            raise UnreadableInput(path, f"in zip member {VK4_MEMBER!r}: {exc.problem}") from None
