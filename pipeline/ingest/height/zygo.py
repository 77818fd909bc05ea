"""Zygo MetroPro ``.dat`` height maps (NewView, Maxim, GPI interferometers).

Layout facts (Zygo's MetroPro Reference Guide, Gwyddion's ``metropro.c`` documentation and
SurfaceTopography's ``IO/MetroPro.py``, MIT; our own code). Big-endian header:

- magic ``0x881B036F`` / ``0x881B0370`` / ``0x881B0371`` for header formats 1 / 2 / 3, then
  header format (uint16) and header size (uint32): 834 bytes for formats 1 and 2, 4096 for 3.
- intensity block ("ac"): origin, width, height, number of buckets, range, byte count; phase
  block ("cn"): origin, width, height, byte count; time stamp (Unix seconds), comment,
  source, ``intf_scale_factor``, ``wavelength_in`` (m), numerical aperture, obliquity factor,
  magnification, ``lateral_res`` (m per pixel, 0 = unknown), ..., ``phase_res`` (byte 218),
  ``sign`` (232), camera size, system type and serial, objective name (246), part name, ...
- data: the intensity block (uint16, ``2 * buckets * w * h`` bytes) right after the header,
  then the phase block (int32 big-endian, ``cn_height`` rows of ``cn_width``, row 0 at top).
- ``height_m = phase * intf_scale_factor * obliquity_factor * wavelength_in / R`` with
  ``R = 4096, 32768, 131072`` for ``phase_res = 0, 1, 2``, negated when ``sign`` is set.
  Phase values ``>= 2147483640`` mark points without data (-> NaN).

(surfalize 0.19 maps ``phase_res = 1`` to R = 4096, off by one place from the reference guide,
Gwyddion, SurfaceTopography and itom; its heights are then 8 times ours.)
"""

from __future__ import annotations

import logging
import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import array_from_buffer, fixed_string, read_file_bytes
from pipeline.ingest.limits import check_shape, need

__all__ = ["INVALID_PHASE", "MAGICS", "PHASE_RESOLUTION", "ZygoDatReader", "parse_metropro"]

log = logging.getLogger(__name__)

MAGICS = {b"\x88\x1b\x03\x6f": 1, b"\x88\x1b\x03\x70": 2, b"\x88\x1b\x03\x71": 3}
HEADER_SIZES = {1: 834, 2: 834, 3: 4096}
INVALID_PHASE = 2147483640
PHASE_RESOLUTION = {0: 4096, 1: 32768, 2: 131072}
INVALID_RULE = "phase >= 2147483640 -> NaN"

# name: (byte offset, struct code), big-endian.
_FIELDS = {
    "header_format": (4, ">H"), "header_size": (6, ">I"), "software_type": (10, ">h"),
    "software_date": (12, "30s"), "version_major": (42, ">h"), "version_minor": (44, ">h"),
    "version_bug": (46, ">h"), "ac_width": (52, ">H"), "ac_height": (54, ">H"),
    "ac_n_buckets": (56, ">H"), "ac_range": (58, ">h"), "ac_n_bytes": (60, ">I"),
    "cn_org_x": (64, ">h"), "cn_org_y": (66, ">h"), "cn_width": (68, ">H"),
    "cn_height": (70, ">H"), "cn_n_bytes": (72, ">I"), "time_stamp": (76, ">i"),
    "comment": (80, "82s"), "source": (162, ">h"), "intf_scale_factor": (164, ">f"),
    "wavelength_in": (168, ">f"), "num_aperture": (172, ">f"), "obliquity_factor": (176, ">f"),
    "magnification": (180, ">f"), "lateral_res": (184, ">f"), "acq_type": (188, ">h"),
    "phase_res": (218, ">h"), "sign": (232, ">h"), "camera_width": (234, ">h"),
    "camera_height": (236, ">h"), "sys_type": (238, ">h"), "sys_serial": (242, ">H"),
    "obj_name": (246, "12s"), "part_name": (258, "40s"), "part_ser_num": (320, "40s"),
    "scan_descr": (408, "20s"), "light_level_pct": (498, ">f"),
}  # fmt: skip
_SYSTEMS = {0: "software-generated data", 1: "Mark IVxp", 2: "Maxim 3D", 3: "Maxim NT",
            4: "GPI-XP", 5: "NewView", 6: "Maxim GP", 7: "NewView/GP",
            8: "Mark to GPI conversion"}  # fmt: skip
_SOFTWARE = {1: "MetroPro", 2: "MetroBasic", 3: "dbug"}


def _fields(buf: bytes) -> dict:
    h = {}
    for name, (off, code) in _FIELDS.items():
        (v,) = struct.unpack_from(code, buf, off)
        h[name] = fixed_string(v) if isinstance(v, bytes) else v
    return h


def _check(path, h: dict, fmt_from_magic: int) -> tuple[int, int, int]:
    if h["header_format"] != fmt_from_magic:
        raise UnreadableInput(
            path,
            f"MetroPro magic says header format {fmt_from_magic} but the header says "
            f"{h['header_format']} (corrupt header)",
        )
    if h["header_size"] != HEADER_SIZES[fmt_from_magic]:
        raise UnreadableInput(
            path,
            f"MetroPro header format {fmt_from_magic} has {HEADER_SIZES[fmt_from_magic]} bytes but "
            f"the header says {h['header_size']} (corrupt or unsupported header)",
        )
    if h["cn_width"] == 0 or h["cn_height"] == 0:
        raise UnreadableInput(
            path,
            f"MetroPro phase block is {h['cn_width']} x {h['cn_height']}: the file holds no "
            "height (phase) data",
        )
    rows, cols = check_shape(path, h["cn_height"], h["cn_width"], what="MetroPro phase data")
    if h["cn_n_bytes"] != 4 * rows * cols:
        raise UnreadableInput(
            path,
            f"MetroPro phase block declares {h['cn_n_bytes']} bytes but {cols} x {rows} int32 "
            f"values need {4 * rows * cols} (corrupt header)",
        )
    ac_expected = 2 * h["ac_width"] * h["ac_height"] * h["ac_n_buckets"]
    if h["ac_n_bytes"] != ac_expected:
        raise UnreadableInput(
            path,
            f"MetroPro intensity block declares {h['ac_n_bytes']} bytes but its size fields "
            f"give {ac_expected} (corrupt header)",
        )
    if h["phase_res"] not in PHASE_RESOLUTION:
        raise UnreadableInput(
            path, f"MetroPro phase_res is {h['phase_res']}; 0, 1 or 2 is expected (corrupt header)"
        )
    for k in ("intf_scale_factor", "wavelength_in", "obliquity_factor"):
        if not np.isfinite(h[k]) or h[k] == 0:
            raise UnreadableInput(
                path, f"MetroPro {k} is {h[k]!r}; the height scale needs a finite non-zero value"
            )
    res = h["lateral_res"]
    if not np.isfinite(res) or res < 0:
        raise UnreadableInput(
            path,
            f"MetroPro lateral_res is {res!r} m; a pixel size must be finite and positive "
            "(corrupt header)",
        )
    if res == 0:
        raise MissingCalibration(
            path,
            "MetroPro lateral_res is 0, which means the lateral calibration is unknown; supply "
            "the pixel size through an instrument profile or the sample manifest",
        )
    return rows, cols, PHASE_RESOLUTION[h["phase_res"]]


def parse_metropro(path: str | Path, buf: bytes) -> tuple[np.ndarray, float, dict]:
    """Parse a MetroPro DAT file.

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN where the phase is invalid.
    pixel_um : float
        Lateral pixel size (square) in micrometres.
    header : dict
        Header fields worth showing.
    """
    magic = bytes(buf[:4])
    if magic not in MAGICS:
        raise UnreadableInput(path, f"not a Zygo MetroPro file: magic is {magic.hex()}")
    need(path, buf, 0, HEADER_SIZES[MAGICS[magic]], f"MetroPro header format {MAGICS[magic]}")
    h = _fields(buf)
    rows, cols, resolution = _check(path, h, MAGICS[magic])
    start = h["header_size"] + h["ac_n_bytes"]
    phase = array_from_buffer(path, buf, start, ">i4", (rows, cols), "MetroPro phase data")
    scale_m = h["intf_scale_factor"] * h["obliquity_factor"] * h["wavelength_in"] / resolution
    if h["sign"]:
        scale_m = -scale_m
    z_um = phase.astype(np.float64) * (scale_m * 1e6)
    z_um[phase >= INVALID_PHASE] = np.nan
    return z_um, h["lateral_res"] * 1e6, _header_info(h, resolution)


def _header_info(h: dict, resolution: int) -> dict:
    info = {
        "header_format": h["header_format"],
        "software": _SOFTWARE.get(h["software_type"], str(h["software_type"])),
        "software_version": f"{h['version_major']}.{h['version_minor']}.{h['version_bug']}",
        "software_date": h["software_date"],
        "comment": h["comment"],
        "objective": h["obj_name"],
        "part_name": h["part_name"],
        "part_serial": h["part_ser_num"],
        "scan_description": h["scan_descr"],
        "wavelength_nm": h["wavelength_in"] * 1e9,
        "intf_scale_factor": h["intf_scale_factor"],
        "obliquity_factor": h["obliquity_factor"],
        "numerical_aperture": h["num_aperture"],
        "magnification": h["magnification"],
        "lateral_res_m": h["lateral_res"],
        "phase_res": h["phase_res"],
        "phase_counts_per_fringe": resolution,
        "sign_inverted": bool(h["sign"]),
        "phase_origin_px": f"{h['cn_org_x']},{h['cn_org_y']}",
        "camera_px": f"{h['camera_width']}x{h['camera_height']}",
        "system_type": h["sys_type"],
        "system_serial": h["sys_serial"],
        "intensity_buckets": h["ac_n_buckets"],
        "light_level_pct": h["light_level_pct"],
        "invalid_rule": INVALID_RULE,
    }
    if h["time_stamp"] > 0:
        info["date"] = datetime.fromtimestamp(h["time_stamp"], tz=UTC).isoformat(sep=" ")
    return {k: v for k, v in info.items() if v != ""}


class ZygoDatReader:
    """Zygo MetroPro DAT (header formats 1, 2 and 3): the phase block as heights."""

    name = "zygo_dat"
    kind = "height"
    suffixes = (".dat",)
    description = "Zygo MetroPro DAT interferometer height map"
    expects = "magic 0x881B036F, 0x881B0370 or 0x881B0371 at byte 0"
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        return head[:4] in MAGICS

    def open(self, path: Path):
        path = Path(path)
        z_um, pixel_um, header = parse_metropro(path, read_file_bytes(path))
        system = _SYSTEMS.get(header["system_type"], f"system type {header['system_type']}")
        return height_dataarray(
            z_um,
            path=path,
            dx_um=pixel_um,
            dy_um=pixel_um,
            pixel_size_source="Zygo MetroPro header lateral_res (camera_res, m per pixel)",
            vendor="Zygo",
            instrument=f"{system} (serial {header['system_serial']})",
            fmt="metropro_dat",
            header=header,
        )
