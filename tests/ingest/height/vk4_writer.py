"""Test-only writer of Keyence VK4 bytes (and VK6/VK7 wrappers), field by field.

Follows the published layout (see pipeline/ingest/height/keyence_vk.py): 12-byte header,
18-entry offset table, measurement conditions (size field first), then a light image, the
height image (7 uint32 + 768-byte palette + data) and the string block. No real VK file is
available, so these bytes are also read by SurfaceTopography's reader as an oracle.
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

OFFSET_NAMES = (
    "setting", "color_peak", "color_light", "light1", "light2", "light3",
    "height1", "height2", "height3", "color_peak_thumbnail", "color_light_thumbnail",
    "light_thumbnail", "height_thumbnail", "assemble", "line_measure", "line_thickness",
    "string_data", "reserved",
)  # fmt: skip

# name -> byte position inside the measurement-conditions block
MEAS_POS = {
    "size": 0, "year": 4, "month": 8, "day": 12, "hour": 16, "minute": 20, "second": 24,
    "diff_utc_by_minutes": 28, "optical_zoom": 72, "lens_mag": 96,
    "x_length_per_pixel": 168, "y_length_per_pixel": 172, "z_length_per_digit": 176,
    "numerical_aperture": 224, "upper_position": 288, "lower_position": 292,
    "height_effective_bit_depth": 300,
}  # fmt: skip


def false_color_image(data: np.ndarray, bits: int, *, byte_size: int | None = None) -> bytes:
    """Width, height, bit depth, compression, byte size, palette min/max, palette, data."""
    h, w = data.shape
    raw = np.ascontiguousarray(data, dtype={8: "u1", 16: "<u2", 32: "<u4"}[bits]).tobytes()
    nbytes = len(raw) if byte_size is None else byte_size
    vmin, vmax = int(data.min()), int(data.max())
    head = struct.pack("<7I", w, h, bits, 0, nbytes, vmin, vmax)
    palette = bytes(range(256)) * 3
    return head + palette + raw


def utf16_string(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def vk4_bytes(
    counts: np.ndarray,
    *,
    x_pm: int,
    y_pm: int,
    z_pm: int,
    lens_mag_x10: int = 500,
    optical_zoom_x10: int = 10,
    date: tuple[int, int, int, int, int, int] = (2024, 3, 14, 15, 9, 26),
    utc_min: int = 540,
    bits: int = 32,
    title: str = "electrode A1",
    lens_name: str = "CF IC EPI Plan 50X",
    meas_size: int = 304,
    byte_size: int | None = None,
) -> bytes:
    """A VK4 stream holding one height image of raw `counts` (row 0 = top)."""
    counts = np.asarray(counts)
    header = b"VK4_" + bytes([0, 0, 1, 2]) + b"\x00\x00\x00\x00"
    meas = bytearray(meas_size)

    def put(name: str, value: int, fmt: str = "<I") -> None:
        struct.pack_into(fmt, meas, MEAS_POS[name], value)

    put("size", meas_size)
    for name, v in zip(("year", "month", "day", "hour", "minute", "second"), date, strict=True):
        put(name, v)
    put("diff_utc_by_minutes", utc_min, "<i")
    put("optical_zoom", optical_zoom_x10)
    put("lens_mag", lens_mag_x10)
    put("x_length_per_pixel", x_pm)
    put("y_length_per_pixel", y_pm)
    put("z_length_per_digit", z_pm)
    put("numerical_aperture", 950)
    put("upper_position", 120_000)
    put("lower_position", 20_000)
    put("height_effective_bit_depth", bits)

    offsets = dict.fromkeys(OFFSET_NAMES, 0)
    pos = 12 + 4 * len(OFFSET_NAMES)
    offsets["setting"] = pos
    pos += meas_size
    light = false_color_image((np.arange(counts.size) % 4096).reshape(counts.shape), 16)
    offsets["light1"] = pos
    pos += len(light)
    height = false_color_image(counts, bits, byte_size=byte_size)
    offsets["height1"] = pos
    pos += len(height)
    strings = utf16_string(title) + utf16_string(lens_name)
    offsets["string_data"] = pos
    table = struct.pack(f"<{len(OFFSET_NAMES)}I", *(offsets[n] for n in OFFSET_NAMES))
    return header + table + bytes(meas) + light + height + strings


def height_offset(vk4: bytes) -> int:
    """Where the height image of a stream made by `vk4_bytes` starts."""
    return struct.unpack_from("<I", vk4, 12 + 4 * OFFSET_NAMES.index("height1"))[0]


def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return bio.getvalue()


def vk6_bytes(vk4: bytes, *, magic: bytes = b"VK6", extra: dict[str, bytes] | None = None) -> bytes:
    """'VK6'/'VK7', uint32 BMP size, a 2x2 BMP preview, then a zip holding ``Vk4File``."""
    bmp_pixels = b"\x00" * 16
    bmp_size = 14 + 40 + len(bmp_pixels)
    bmp = (
        b"BM" + struct.pack("<IHHI", bmp_size, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(bmp_pixels), 2835, 2835, 0, 0)
        + bmp_pixels
    )  # fmt: skip
    members = {"Vk4File": vk4, **(extra or {})}
    return magic + struct.pack("<I", bmp_size) + bmp + zip_bytes(members)
