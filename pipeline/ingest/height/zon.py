"""Keyence ``.zon`` height maps (VR-series one-shot 3D / structured-light profilers).

Layout facts (SurfaceTopography's ``IO/ZON.py``, MIT, after the reverse engineering discussed
in gabeguss/Keyence issue 2; checked on a VR-6100 file; our own code):

- bytes 0..4: magic ``KPK0`` or ``KPK1``; bytes 4..8: uint32 size of the BMP preview that
  starts at byte 8 (``BM``); then a zip archive (Python's zipfile finds it from the end).
- zip members are named by GUIDs. Fixed GUIDs hold: the height data, a per-pixel validity
  mask (optional), the calibration XML (``Calibration/XYCalibration/MeterPerPixel`` and
  ``Calibration/ZCalibration/MeterPerUnit``), device XML (``DeviceModelName``,
  ``DeviceSerialId``) and scan XML (``ScanDateTime``). A ``DataMap`` XML indexes member
  types. In ``KPK1`` files each member is itself a zstd frame (magic ``28 B5 2F FD``).
- binary members: a 16-byte header of int32 columns, rows, bytes per element, bytes per row,
  then the rows (row 0 at the top), each padded to the row size. Heights are int32 counts,
  ``height_m = count * MeterPerUnit``; the mask is uint8.

Invalid points: a mask value with either of its two low bits set (0x01 no measurement /
out of range, 0x02 excluded by the operator) -> NaN. Higher bits (0x40, 0x80 are seen) flag
quality on pixels whose heights are plausible, so those are kept (SurfaceTopography's rule).
surfalize drops every non-zero mask value; on the VR-6100 file both rules give the same
2048 pixels (0.26 %).
"""

from __future__ import annotations

import logging
import struct
import zipfile
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import array_from_buffer, finite_positive
from pipeline.ingest.limits import (
    MAX_PIXELS,
    MAX_ZIP_RATIO,
    check_shape,
    need,
    open_zip,
    read_zip_member,
)

__all__ = ["INVALID_BITS", "MAGICS", "MEMBERS", "ZSTD_MAGIC", "ZonReader"]

log = logging.getLogger(__name__)

MAGICS = (b"KPK0", b"KPK1")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MEMBERS = {
    "height": "4cdb0c75-5706-48cc-a9a1-adf395d609ae",
    "mask": "9e7ca6dd-0e6a-4d7b-8986-f0a7b773c916",
    "calibration": "686613b8-27b5-4a29-8ffc-438c2780873e",
    "device": "cbc1d39b-215f-4d56-a20e-cf8e5f570755",
    "scan": "1d35862b-3b48-4df2-9235-833ef590b043",
}
ARRAY_HEADER = 16
XML_MAX_BYTES = 16 * 1024 * 1024
INVALID_BITS = 0x03
INVALID_RULE = "validity mask & 0x03 != 0 (no measurement / excluded) -> NaN; 0x40/0x80 kept"


def _member(path, zf: zipfile.ZipFile, guid: str, what: str, cap: int, *, required: bool,
            ratio_capped: bool = False):
    """A member's bytes, zstd-inflated when it is a zstd frame; None if absent and optional."""
    try:
        zf.getinfo(guid)
    except KeyError:
        if required:
            raise UnreadableInput(path, f"ZON archive has no {what} member {guid}") from None
        return None
    data = read_zip_member(path, zf, guid)
    if data[:4] != ZSTD_MAGIC:
        return data
    import imagecodecs

    if ratio_capped:
        # Height counts never compress far: cap a frame's output at the expansion limit too.
        cap = min(cap, MAX_ZIP_RATIO * len(data))
    try:
        return bytes(imagecodecs.zstd_decode(data, out=cap))
    except Exception as exc:  # imagecodecs raises its own ZstdError
        too_big = "too small" in str(exc)
        raise UnreadableInput(
            path,
            f"ZON {what} member {guid} "
            + (f"inflates beyond {cap} bytes (refused)" if too_big else f"is a corrupt zstd frame ({exc})"),
        ) from None


def _array(path, data: bytes, what: str, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    need(path, data, 0, ARRAY_HEADER, f"ZON {what} array header")
    cols, rows, item, row_bytes = struct.unpack_from("<4i", data, 0)
    if item != dt.itemsize:
        raise UnreadableInput(
            path, f"ZON {what} array has {item} bytes per element; {dt.itemsize} is expected"
        )
    rows, cols = check_shape(path, rows, cols, what=f"ZON {what} array")
    if row_bytes < cols * item or row_bytes % dt.itemsize:
        raise UnreadableInput(
            path,
            f"ZON {what} array has {row_bytes} bytes per row for {cols} columns of {item} bytes "
            "(corrupt header)",
        )
    values = array_from_buffer(
        path, data, ARRAY_HEADER, dt, (rows, row_bytes // dt.itemsize), f"ZON {what} array data"
    )
    return values[:, :cols]


def _xml(path, data: bytes | None, what: str):
    if data is None:
        return None
    import defusedxml.ElementTree as ET

    try:
        return ET.fromstring(data)
    except Exception as exc:  # ParseError and defusedxml's refusals (entities, DTDs)
        raise UnreadableInput(path, f"ZON {what} XML cannot be parsed ({exc})") from None


def _scale(path, root, key: str, tag: str) -> float:
    if root is None or root.findtext(key) is None:
        raise MissingCalibration(
            path, f"ZON calibration has no {key}; the {tag} is unknown (file lacks its calibration)"
        )
    text = root.findtext(key).strip()
    try:
        value = float(text)
    except ValueError:
        raise UnreadableInput(path, f"ZON calibration {key} is {text!r}, not a number") from None
    if not finite_positive(value):
        raise UnreadableInput(
            path, f"ZON calibration {key} is {value!r}; the {tag} must be finite and positive (corrupt)"
        )
    return value


def read_zon(path: str | Path) -> tuple[np.ndarray, float, dict]:
    """Read a ZON file.

    Returns
    -------
    z_um : (M, N) ndarray of float64
        Heights in micrometres, NaN at invalid points.
    pixel_um : float
        Lateral pixel size (square) in micrometres.
    header : dict
        Fields worth showing.
    """
    path = Path(path)
    with path.open("rb") as fh:
        prefix = fh.read(16)
    if prefix[:4] not in MAGICS:
        raise UnreadableInput(path, f"not a Keyence ZON file: magic is {prefix[:4]!r}")
    need(path, prefix, 0, 10, "ZON container header")
    (bmp_bytes,) = struct.unpack_from("<I", prefix, 4)
    size = path.stat().st_size
    if size < 8 + bmp_bytes:
        raise UnreadableInput(
            path,
            f"file is truncated: the BMP preview needs bytes 8..{8 + bmp_bytes} but the file "
            f"has {size}",
        )
    try:
        zf = open_zip(path)
    except UnreadableInput as exc:
        raise UnreadableInput(
            path,
            f"the ZON zip archive after the BMP preview cannot be read; the file is truncated "
            f"or corrupt ({exc.problem})",
        ) from None
    try:
        height_raw = _member(
            path, zf, MEMBERS["height"], "height", ARRAY_HEADER + 4 * MAX_PIXELS, required=True,
            ratio_capped=True,
        )
        counts = _array(path, height_raw, "height", "<i4")
        # A mask of mostly zeros compresses ten-thousand-fold: its cap is the height block's
        # size (one byte a point against four, row padding included).
        mask_raw = _member(
            path, zf, MEMBERS["mask"], "validity mask", len(height_raw), required=False
        )
        xml = {
            k: _xml(path, _member(path, zf, MEMBERS[k], k, XML_MAX_BYTES, required=False), k)
            for k in ("calibration", "device", "scan")
        }
    finally:
        zf.close()
    pixel_m = _scale(path, xml["calibration"], "XYCalibration/MeterPerPixel", "pixel size")
    z_m_per_count = _scale(path, xml["calibration"], "ZCalibration/MeterPerUnit", "z scale")
    z_um = counts.astype(np.float64) * (z_m_per_count * 1e6)

    header: dict = {
        "container": prefix[:4].decode("ascii"),
        "bmp_preview_bytes": int(bmp_bytes),
        "meter_per_pixel": pixel_m,
        "meter_per_unit": z_m_per_count,
        "z_um_per_count": z_m_per_count * 1e6,
        "invalid_rule": INVALID_RULE,
    }
    if mask_raw is not None:
        mask = _array(path, mask_raw, "validity mask", "u1")
        if mask.shape != counts.shape:
            raise UnreadableInput(
                path,
                f"ZON validity mask is {mask.shape[1]} x {mask.shape[0]} but the height data is "
                f"{counts.shape[1]} x {counts.shape[0]} (corrupt)",
            )
        invalid = (mask & INVALID_BITS) != 0
        z_um[invalid] = np.nan
        header.update(
            mask_no_measurement=int(np.count_nonzero(mask & 0x01)),
            mask_excluded=int(np.count_nonzero(mask & 0x02)),
            mask_quality_only_kept=int(np.count_nonzero((mask != 0) & ~invalid)),
        )
    else:
        header["validity_mask"] = "absent (no point marked invalid)"
    for key, root, tag in (("model", xml["device"], "DeviceModelName"),
                           ("serial", xml["device"], "DeviceSerialId"),
                           ("date", xml["scan"], "ScanDateTime")):  # fmt: skip
        text = root.findtext(tag) if root is not None else None
        if text and text.strip():
            header[key] = text.strip()
    return z_um, pixel_m * 1e6, header


class ZonReader:
    """Keyence ZON (VR series): KPK0/KPK1 container, BMP preview, zip of GUID members."""

    name = "keyence_zon"
    kind = "height"
    suffixes = (".zon",)
    description = "Keyence VR-series (structured light) ZON height map"
    expects = (
        f"magic 'KPK0'/'KPK1', a BMP preview at byte 8, and a zip holding member "
        f"{MEMBERS['height']} (height data)"
    )
    priority = 20

    def can_open(self, head: bytes, path: Path) -> bool:
        """Magic and BMP signature; then the height member in the zip. A zip that cannot be
        read at all is accepted so that `open` can say what is wrong (truncated, corrupt)."""
        if head[:4] not in MAGICS or head[8:10] != b"BM":
            return False
        try:
            with zipfile.ZipFile(path) as zf:
                return MEMBERS["height"] in zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return True

    def open(self, path: Path):
        path = Path(path)
        z_um, pixel_um, header = read_zon(path)
        model = header.get("model", "")
        serial = header.get("serial", "")
        return height_dataarray(
            z_um,
            path=path,
            dx_um=pixel_um,
            dy_um=pixel_um,
            pixel_size_source="Keyence ZON calibration XML XYCalibration/MeterPerPixel",
            vendor="Keyence",
            instrument=f"{model} (serial {serial})" if model and serial else model,
            fmt="zon",
            header=header,
        )
