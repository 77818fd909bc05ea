"""Sensofar ``.plu`` height maps (PLu, PLu neox, S neox, DCM confocal/interferometric profilers).

Layout facts (Gwyddion's ``sensofar.c`` documentation and SurfaceTopography's ``IO/PLU.py``,
MIT; our own code). Little-endian, no magic number:

==========  ======================================================================
bytes       content
==========  ======================================================================
0..128      acquisition date as text (C ``ctime`` style), NUL-padded
128..132    uint32 acquisition time (Unix seconds)
132..388    user comment, NUL-padded
388..428    calibration: uint32 rows, cols, N_tall; float32 dy_multip, um per pixel
            x and y, x0, y0, um per z step, z0
428..448    measurement configuration: uint32 type (3 = topography, 1 = profile),
            algorithm, method, objective id, area type
448..488    scan settings (two 40-byte variants, chosen by the area type)
488..500    uint8 restore, number of layers, format version, hardware id, number of
            images; 3 reserved bytes; uint32 factor_delmacio
500..508    first layer: uint32 rows, cols
508..       float32 heights in micrometres, row-major, row 0 at the top; then float32
            min and max and the layer's RGB images
==========  ======================================================================

Unmeasured points hold the value 1000001 (-> NaN). The format version byte is 0 for the
2000 format and counts down from 0xFF (2006) to 0xFA (2013); the hardware id names the
instrument only in 2012 and newer files.
"""

from __future__ import annotations

import logging
import re
import struct
from datetime import datetime
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

__all__ = ["DATA_OFFSET", "HEADER_SIZE", "UNDEFINED_VALUE", "PluReader", "parse_plu"]

log = logging.getLogger(__name__)

DATE_SIZE = 128
COMMENT_OFFSET, COMMENT_SIZE = 132, 256
CALIBRATION_OFFSET = 388
CONFIG_OFFSET = 428
SCAN_OFFSET = 448
CONFIG2_OFFSET = 488
HEADER_SIZE = 500
DATA_OFFSET = HEADER_SIZE + 8
UNDEFINED_VALUE = 1000001.0
TYPE_TOPOGRAPHY = 3
AREA_COORDINATES = 6
INVALID_RULE = "height == 1000001 -> NaN"

_TYPES = {0: "image", 1: "profile", 2: "multiple profile", 3: "topography",
          4: "coordinates", 5: "thickness", 6: "custom"}  # fmt: skip
_ALGORITHMS = {0: "confocal intensity", 1: "confocal gradient", 2: "interferometric PSI",
               3: "interferometric VSI/ePSI", 4: "confocal thickness",
               5: "interferometric thickness"}  # fmt: skip
_HARDWARE = {0: "PLu", 1: "PLu 2300 XGA", 2: "PLu 2300 XGA T5", 3: "PLu 2300 SXGA",
             4: "PLu 3300", 5: "DCM 3D", 6: "PLu neox", 7: "DCM 3D rev. 2",
             8: "PLu Apex (prototype)", 9: "S neox", 10: "DCM8", 11: "PLu Apex"}  # fmt: skip
# Objective ids as listed by SurfaceTopography's PLU reader (Sensofar's numbering).
_N, _L = "Nikon CFI", "Leica"
_OBJECTIVES = {
    1: f"{_N} Fluor Plan EPI SLWD 20X", 2: f"{_N} Fluor Plan EPI SLWD 50X",
    3: f"{_N} Fluor Plan EPI SLWD 100X", 4: f"{_N} Fluor Plan EPI 20X",
    5: f"{_N} Fluor Plan EPI 50X", 6: f"{_N} Fluor Plan EPI 10X", 7: f"{_N} Fluor Plan EPI 100X",
    8: f"{_N} Fluor Plan EPI ELWD 10X", 9: f"{_N} Fluor Plan EPI ELWD 20X",
    10: f"{_N} Fluor Plan EPI ELWD 50X", 11: f"{_N} Fluor Plan EPI ELWD 100X",
    12: f"{_N} Plan Interferential 2.5X", 13: f"{_N} Plan Interferential 5X T",
    14: f"{_N} Plan Interferential 10X", 15: f"{_N} Plan Interferential 20X",
    16: f"{_N} Plan Interferential 50X", 17: f"{_N} Fluor Plan EPI 5X",
    18: f"{_N} Fluor Plan EPI 150X", 19: f"{_N} Fluor Plan Apo EPI 50X",
    20: f"{_N} Fluor Plan EPI 1.5X", 21: f"{_N} Fluor Plan EPI 2.5X",
    22: f"{_N} Fluor Plan Apo EPI 100X", 23: f"{_N} Fluor Plan EPI 200X",
    24: f"{_N} Plan Water Immersion 10X", 25: f"{_N} Plan Water Immersion 20X",
    26: f"{_N} Plan Water Immersion 150X", 27: f"{_N} Plan EPI CR ELWD 10X",
    28: f"{_N} Plan EPI CR 20X", 29: f"{_N} Plan EPI CR 50X", 30: f"{_N} Plan EPI CR 100X A",
    31: f"{_N} Plan EPI CR 100X B", 32: f"{_L} HCX FL Plan 2.5X",
    33: f"{_L} HC PL Fluotar EPI 5X", 34: f"{_L} HC PL Fluotar EPI 10X",
    35: f"{_L} HC PL Fluotar EPI 20X", 36: f"{_L} HC PL Fluotar EPI 50X",
    37: f"{_L} HC PL Fluotar EPI 50X HNA", 38: f"{_L} HC PL Fluotar EPI 100X",
    39: f"{_L} HC PL Fluotar EPI 50X", 40: f"{_L} N Plan EPI LWD 10X",
    41: f"{_L} N Plan EPI LWD 20X", 42: f"{_L} HCX PL Fluotar LWD 50X",
    43: f"{_L} HCX PL Fluotar LWD 100X", 44: f"{_L} HC PL Fluotar Interferential Michelson MR 5X",
    45: f"{_L} HC PL Fluotar Interferential Mirau MR 10X",
    46: f"{_L} N PLAN H Interferential Mirau MR 20X",
    47: f"{_L} N PLAN H Interferential Mirau MR 50X", 48: "Nikon Interferential Linnik EPI 20X",
    49: f"{_N} Plan Interferential 100X DI", 50: f"{_L} HCX PL FLUOTAR 1.25X",
    51: f"{_L} N PLAN EPI 20X", 52: f"{_L} N PLAN EPI 40X", 53: f"{_L} N PLAN L 50X",
    54: f"{_L} PL APO 100X", 55: f"{_L} HCX APO L U-V-I 20X", 56: f"{_L} HCX APO L U-V-I 40X",
    57: f"{_L} HCX APO L U-V-I 63X", 58: f"{_L} HCX PL FLUOTAR 20X", 59: f"{_L} N PLAN L 40X",
    60: f"{_L} Interferential Mirau SR 5X", 61: f"{_L} Interferential Mirau SR 10X",
    62: f"{_L} Interferential Mirau SR 20X", 63: f"{_L} Interferential Mirau SR 50X",
    64: f"{_L} Interferential Mirau SR 100X", 72: f"{_L} HC PL Fluotar EPI 50X 0.8",
    73: f"{_L} HC PL Fluotar EPI 100X 0.9", 74: f"{_N} T Plan EPI 1X",
    75: f"{_N} T Plan EPI 2.5X", 76: f"{_N} TU Plan Fluor EPI 5X",
    77: f"{_N} TU Plan Fluor EPI 10X", 78: f"{_N} TU Plan Fluor EPI 20X",
    79: f"{_N} LU Plan Fluor EPI 50X", 80: f"{_N} TU Plan Fluor EPI 100X",
    81: f"{_N} EPI Plan Apo 150X", 82: f"{_N} T Plan EPI ELWD 20X",
    83: f"{_N} T Plan EPI ELWD 50X", 84: f"{_N} T Plan EPI ELWD 100X",
    85: f"{_N} T Plan EPI SLWD 10X", 86: f"{_N} T Plan EPI SLWD 20X",
    87: f"{_N} T Plan EPI SLWD 50X", 88: f"{_N} T Plan EPI SLWD 100X",
    89: f"{_N} Fluor Water Immersion 63X", 90: f"{_N} TU Plan Fluor EPI 50X",
    91: f"{_N} TU Plan Apo EPI 100X", 92: f"{_N} TU Plan Apo EPI 150X",
}  # fmt: skip

# A date such as "Mon Apr 19 11:40:13 2021": some letters/digits, a clock time and a year.
_DATE_RE = re.compile(rb"^[\x20-\x7e]{0,40}\d{1,2}:\d{2}(:\d{2})?[\x20-\x7e]{0,40}\d{4}[\x20-\x7e]*$")


def _date_block_ok(head: bytes) -> bool:
    block = head[:DATE_SIZE]
    text, _, pad = block.partition(b"\x00")
    return bool(_DATE_RE.match(text.strip())) and not pad.strip(b"\x00")


def _format_version(v: int) -> str:
    known = {0x00: "2000", 0xFF: "2006", 0xFB: "2012", 0xFA: "2013"}
    return known.get(v, f"byte 0x{v:02X}")


def parse_plu(path: str | Path, buf: bytes) -> tuple[np.ndarray, float, float, dict]:
    """Parse the first topography layer of a PLU file.

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN where the file holds 1000001.
    dx_um, dy_um : float
        Pixel sizes in micrometres.
    header : dict
        Header fields worth showing.
    """
    need(path, buf, 0, DATA_OFFSET, "PLU header (508 bytes)")
    if not _date_block_ok(buf):
        raise UnreadableInput(path, "not a Sensofar PLU file: the first 128 bytes are not a date")
    cal = struct.unpack_from("<3I7f", buf, CALIBRATION_OFFSET)
    cal_rows, cal_cols, n_tall, dy_multip, mppx, mppy, x0, y0, mpp_z, z0 = cal
    mtype, algorithm, method, objective, area = struct.unpack_from("<5I", buf, CONFIG_OFFSET)
    restore, n_layers, version, hardware, n_images, factor = struct.unpack_from("<5B3xI", buf, CONFIG2_OFFSET)
    if mtype != TYPE_TOPOGRAPHY:
        raise UnreadableInput(
            path,
            f"PLU measurement type {mtype} ({_TYPES.get(mtype, 'unknown')}) is not a topography "
            "(only type 3 holds a height map)",
        )
    if n_layers < 1:
        raise UnreadableInput(path, "PLU header declares 0 data layers: the file holds no height map")
    rows, cols = struct.unpack_from("<2I", buf, HEADER_SIZE)
    rows, cols = check_shape(path, rows, cols, what="PLU height layer")
    if (rows, cols) != (cal_rows, cal_cols):
        raise UnreadableInput(
            path,
            f"PLU layer is {cols} x {rows} points but the calibration block says "
            f"{cal_cols} x {cal_rows} (corrupt header)",
        )
    for axis, v in (("x", mppx), ("y", mppy)):
        if not finite_positive(v):
            raise UnreadableInput(
                path,
                f"PLU calibration gives {v!r} um per pixel in {axis}; a pixel size must be "
                "finite and positive (corrupt header)",
            )
    data = array_from_buffer(path, buf, DATA_OFFSET, "<f4", (rows, cols), "PLU height data")
    z_um = data.astype(np.float64)
    z_um[data == np.float32(UNDEFINED_VALUE)] = np.nan

    date_text = fixed_string(buf[:DATE_SIZE])
    header = {
        "date": _iso_date(date_text),
        "time_unix_s": struct.unpack_from("<I", buf, DATE_SIZE)[0],
        "comment": fixed_string(buf[COMMENT_OFFSET : COMMENT_OFFSET + COMMENT_SIZE]),
        "measurement_type": _TYPES.get(mtype, str(mtype)),
        "algorithm": _ALGORITHMS.get(algorithm, str(algorithm)),
        "method": method,
        "objective_id": objective,
        "objective": _OBJECTIVES.get(objective, "unknown"),
        "area_type": area,
        "format_version": _format_version(version),
        "hardware_id": hardware,
        "layers": n_layers,
        "images_per_layer": n_images,
        "um_per_pixel_x": mppx,
        "um_per_pixel_y": mppy,
        "um_per_z_step": mpp_z,
        "offset_x_um": x0,
        "offset_y_um": y0,
        "offset_z_um": z0,
        "dy_multip": dy_multip,
        "n_tall": n_tall,
        "restore": restore,
        "factor_delmacio": factor,
        "invalid_rule": INVALID_RULE,
    }
    if area != AREA_COORDINATES:
        na, incr_z, z_range, n_planes = struct.unpack_from("<4xIdfI", buf, SCAN_OFFSET + 12)
        header.update(numerical_aperture_raw=na, z_increment=incr_z, z_range=z_range, n_planes=n_planes)
    hw = _HARDWARE.get(hardware) if version != 0 and version <= 0xFB else None
    if hw:
        header["instrument"] = hw
    return z_um, float(mppx), float(mppy), {k: v for k, v in header.items() if v != ""}


def _iso_date(text: str) -> str:
    try:
        return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").isoformat(sep=" ")
    except ValueError:
        return text


class PluReader:
    """Sensofar PLU, first topography layer."""

    name = "plu"
    kind = "height"
    suffixes = (".plu", ".apx")
    description = "Sensofar PLU confocal / interferometric profiler height map"
    expects = (
        "a NUL-padded date text in bytes 0..128 and matching dimensions at bytes 388 and 500 "
        "(PLU has no magic number)"
    )
    priority = 30

    def can_open(self, head: bytes, path: Path) -> bool:
        """A date block, then (when the head is long enough) the same dimensions twice."""
        if len(head) < DATE_SIZE or not _date_block_ok(head):
            return False
        if len(head) < DATA_OFFSET:
            return True  # a date block and too short for a header: let open() say "truncated"
        cal = struct.unpack_from("<2I", head, CALIBRATION_OFFSET)
        layer = struct.unpack_from("<2I", head, HEADER_SIZE)
        return cal == layer or struct.unpack_from("<I", head, CONFIG_OFFSET)[0] <= 6

    def open(self, path: Path):
        path = Path(path)
        z_um, dx, dy, header = parse_plu(path, read_file_bytes(path))
        return height_dataarray(
            z_um,
            path=path,
            dx_um=dx,
            dy_um=dy,
            pixel_size_source="Sensofar PLU calibration block um-per-pixel x/y (mppx, mppy)",
            vendor="Sensofar",
            instrument=header.get("instrument", ""),
            fmt="plu",
            header=header,
        )
