"""ISO 25178-72 / ISO 5436-2 X3P height maps (OpenGPS container).

An X3P file is a zip archive holding ``main.xml`` (the description) and, usually,
``bindata/data.bin`` (the heights, little-endian, x index fastest) plus an optional
``bindata/valid.bin`` (one bit per point, least-significant bit first, 1 = valid).
All lengths in the file are metres; this reader returns micrometres.

Row orientation: row 0 of the returned array is the first stored row (y index v = 0),
shown at the top. That is how Gwyddion, SurfaceTopography (after its x/y transpose),
surfalize and x3ptools read X3P, and it is confirmed on a real file: the ``mask.png``
annotation image that x3ptools stores in ``x3ptools_sample-land.x3p`` lines up with the
file's missing points only in this orientation. A strict reading of the right-handed
coordinate system of ISO 25178-72:2017 (y up, seen from above) would show the same data
mirrored top to bottom; height parameters do not depend on it, direction-dependent ones
(Std, profile directions) change sign. ``header["row_order"]`` records the choice.

Real files demand leniency: ``main.xml`` inside a sub-folder of the zip (with ``__MACOSX``
and ``.DS_Store`` entries), no ``md5checksum.hex``, an empty ``<Offset/>`` (read as 0),
extra vendor elements (x3ptools ``<Mask>``), non-square pixels.
"""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath
import zipfile
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.limits import MAX_XML_BYTES, check_shape, open_zip, read_zip_member

__all__ = ["X3PReader"]

log = logging.getLogger(__name__)

_M_TO_UM = 1e6
# ISO 5436-2 data types: I = int16, L = int32, F = float32, D = float64, all little-endian.
_DTYPES = {"I": np.dtype("<i2"), "L": np.dtype("<i4"), "F": np.dtype("<f4"), "D": np.dtype("<f8")}
_ROW_ORDER = "first stored row (y index 0) at the top; x index fastest"


def _local(tag: object) -> str:
    """Element tag without its namespace (``{uri}name`` or ``p:name``)."""
    if not isinstance(tag, str):  # comments, processing instructions
        return ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _child(el, name: str):
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _path(el, *names: str):
    for n in names:
        el = _child(el, n)
    return el


def _text(el, *names: str) -> str | None:
    """Stripped text at a child path; None when the element is absent, "" when empty."""
    el = _path(el, *names)
    if el is None:
        return None
    return (el.text or "").strip()


def _number(path: Path, text: str | None, what: str, default: float | None = None) -> float | None:
    """Parse a number; absent or empty gives `default` (an empty ``<Offset/>`` is 0)."""
    if text is None or text == "":
        return default
    try:
        v = float(text)
    except ValueError:
        raise UnreadableInput(path, f"main.xml {what} is not a number: {text!r}") from None
    if not math.isfinite(v):
        raise UnreadableInput(path, f"main.xml {what} is {text!r}; it must be finite")
    return v


def _integer(path: Path, text: str | None, what: str) -> int:
    if not text:
        raise UnreadableInput(path, f"main.xml has no {what}")
    try:
        return int(text)
    except ValueError:
        raise UnreadableInput(path, f"main.xml {what} is not an integer: {text!r}") from None


def _candidates(names: list[str]) -> list[str]:
    """Members called main.xml, leaving out macOS resource forks (__MACOSX/, ._*)."""
    out = []
    for n in names:
        parts = n.split("/")
        if parts[-1] != "main.xml" or parts[0] == "__MACOSX":
            continue
        out.append(n)
    return out


def _find_main(path: Path, names: list[str]) -> str:
    found = _candidates(names)
    if not found:
        raise UnreadableInput(path, "zip archive has no main.xml; not an X3P (ISO 5436-2) file")
    if "main.xml" in found:
        return "main.xml"
    found.sort(key=lambda n: n.count("/"))
    if len(found) > 1 and found[0].count("/") == found[1].count("/"):
        raise UnreadableInput(
            path, f"zip archive holds several main.xml at the same depth: {found[:4]}"
        )
    return found[0]


def _parse_xml(path: Path, data: bytes):
    """main.xml through defusedxml: no DTD, no entities, no external references."""
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        return DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise UnreadableInput(
            path, f"main.xml uses XML that is refused as unsafe ({type(exc).__name__}: {exc})"
        ) from None
    except ParseError as exc:
        raise UnreadableInput(path, f"main.xml is not well-formed XML ({exc})") from None


def _axis(path: Path, axes, name: str) -> dict:
    el = _child(axes, name)
    if el is None:
        raise UnreadableInput(path, f"main.xml Record1/Axes has no {name} axis")
    return {
        "AxisType": _text(el, "AxisType") or "",
        "DataType": _text(el, "DataType") or "",
        "Increment": _number(path, _text(el, "Increment"), f"{name} Increment"),
        "Offset": _number(path, _text(el, "Offset"), f"{name} Offset", 0.0),
    }


def _lateral_um(path: Path, ax: dict, name: str, feature: str) -> float:
    if ax["AxisType"] != "I":
        raise UnreadableInput(
            path,
            f"{name} AxisType is {ax['AxisType']!r}: absolute (A) lateral axes store an irregular "
            f"grid of {feature} points; only incremental (I) x and y axes make a height map",
        )
    if ax["Increment"] is None:
        raise MissingCalibration(
            path, f"{name} axis is incremental but gives no Increment; the pixel size is unknown"
        )
    return ax["Increment"] * _M_TO_UM


def _header(root, cx: dict, cy: dict, cz: dict, sizes: tuple[int, int, int]) -> dict:
    r1, r2 = _child(root, "Record1"), _child(root, "Record2")
    h: dict = {"revision": _text(r1, "Revision"), "feature_type": _text(r1, "FeatureType")}
    for name, ax in (("CX", cx), ("CY", cy), ("CZ", cz)):
        for k, v in ax.items():
            h[f"{name}.{k}"] = v
    h["size_x"], h["size_y"], h["size_z"] = sizes
    for key, names in (
        ("date", ("Date",)),
        ("creator", ("Creator",)),
        ("instrument.manufacturer", ("Instrument", "Manufacturer")),
        ("instrument.model", ("Instrument", "Model")),
        ("instrument.serial", ("Instrument", "Serial")),
        ("instrument.version", ("Instrument", "Version")),
        ("calibration_date", ("CalibrationDate",)),
        ("probing_system.type", ("ProbingSystem", "Type")),
        ("probing_system.identification", ("ProbingSystem", "Identification")),
        ("comment", ("Comment",)),
    ):
        v = _text(r2, *names)
        if v:
            h[key] = v
    h["row_order"] = _ROW_ORDER
    return {k: v for k, v in h.items() if v is not None}


class X3PReader:
    """Reader for ISO 25178-72 / ISO 5436-2 ``.x3p`` files (surface, or a single profile)."""

    name = "x3p"
    kind = "height"
    suffixes = (".x3p",)
    description = "ISO 25178-72 / ISO 5436-2 X3P (OpenGPS) height map"
    expects = "a zip archive (PK\\x03\\x04) holding an ISO 5436-2 main.xml"
    priority = 10

    def can_open(self, head: bytes, path: Path) -> bool:
        """A zip archive with a ``main.xml`` whose start names the ISO 5436 root element."""
        if not head.startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(path) as zf:
                found = _candidates(zf.namelist())
                if not found:
                    return False
                with zf.open(min(found, key=lambda n: n.count("/"))) as fh:
                    start = fh.read(4096)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, KeyError):
            return False
        return b"ISO5436" in start

    def open(self, path: Path):
        """Read the height map; see the module docstring for conventions.

        Raises
        ------
        UnreadableInput
            Not an X3P, unsafe or malformed XML, zip bomb, truncated or mis-sized data,
            unsupported variant (point cloud, absolute x/y axes, several layers).
        MissingCalibration
            An incremental x/y axis without Increment, integer heights without a z Increment.
        """
        path = Path(path)
        with open_zip(path) as zf:
            names = zf.namelist()
            main = _find_main(path, names)
            prefix = posixpath.dirname(main)
            xml = read_zip_member(path, zf, main, max_bytes=MAX_XML_BYTES)
            root = _parse_xml(path, xml)
            r1, r3 = _child(root, "Record1"), _child(root, "Record3")
            if r1 is None or r3 is None:
                raise UnreadableInput(path, "main.xml lacks Record1 or Record3")
            feature = (_text(r1, "FeatureType") or "").upper()
            if feature == "PCL":
                raise UnreadableInput(
                    path, "FeatureType PCL is a point cloud, not a gridded height map; unsupported"
                )
            if feature not in ("SUR", "PRF"):
                raise UnreadableInput(path, f"FeatureType {feature!r} is not SUR, PRF or PCL")
            axes = _child(r1, "Axes")
            cx, cy, cz = (_axis(path, axes, n) for n in ("CX", "CY", "CZ"))
            dx_um = _lateral_um(path, cx, "CX", feature)
            dy_um = _lateral_um(path, cy, "CY", feature)
            if cz["AxisType"] != "A":
                raise UnreadableInput(path, f"CZ AxisType is {cz['AxisType']!r}; expected A")
            dtype = _DTYPES.get(cz["DataType"])
            if dtype is None:
                raise UnreadableInput(
                    path, f"CZ DataType {cz['DataType']!r} is not one of I, L, F, D"
                )
            dims = _child(r3, "MatrixDimension")
            if dims is None:
                raise UnreadableInput(path, "main.xml Record3 has no MatrixDimension")
            nx = _integer(path, _text(dims, "SizeX"), "MatrixDimension SizeX")
            ny = _integer(path, _text(dims, "SizeY"), "MatrixDimension SizeY")
            nz = _integer(path, _text(dims, "SizeZ") or "1", "MatrixDimension SizeZ")
            check_shape(path, ny, nx, what="X3P matrix")
            if nz != 1:
                raise UnreadableInput(path, f"SizeZ is {nz}: layered X3P files are not supported")
            if dtype.kind == "i" and cz["Increment"] is None:
                raise MissingCalibration(
                    path,
                    f"CZ DataType {cz['DataType']} stores integer counts but CZ gives no "
                    "Increment (metres per count); the height scale is unknown",
                )
            scale_um = (1.0 if cz["Increment"] is None else cz["Increment"]) * _M_TO_UM
            if scale_um == 0.0:
                raise UnreadableInput(path, "CZ Increment is 0; every height would be equal")
            header = _header(root, cx, cy, cz, (nx, ny, nz))
            header["zip_prefix"] = prefix
            header["md5_main_xml"] = _md5_state(path, zf, names, prefix, xml)
            z_um = _heights(path, zf, names, prefix, r3, header, ny, nx, dtype, scale_um,
                            cz["Offset"] * _M_TO_UM)
        inst = header.get("instrument.model", "")
        return height_dataarray(
            z_um,
            path=path,
            dx_um=dx_um,
            dy_um=dy_um,
            pixel_size_source="x3p Record1 Axes CX.Increment / CY.Increment (m)",
            vendor=header.get("instrument.manufacturer", ""),
            instrument=inst,
            fmt="x3p",
            header=header,
        )


def _member(path: Path, names: list[str], prefix: str, link: str, what: str) -> str:
    """Resolve a link from main.xml relative to main.xml's folder, then to the zip root."""
    link = link.replace("\\", "/").lstrip("/")
    for cand in (posixpath.join(prefix, link) if prefix else link, link):
        if cand in names:
            return cand
    raise UnreadableInput(path, f"{what} {link!r} named in main.xml is not in the zip archive")


def _md5_state(path: Path, zf, names: list[str], prefix: str, xml: bytes) -> str:
    """'ok', 'mismatch' or 'absent' for md5checksum.hex against main.xml (logged, not fatal)."""
    name = posixpath.join(prefix, "md5checksum.hex") if prefix else "md5checksum.hex"
    if name not in names:
        return "absent"
    if zf.getinfo(name).file_size > 4096:  # an MD5 line is under 100 bytes
        log.warning("%s: md5checksum.hex is implausibly large; not checked", path)
        return "mismatch"
    text = read_zip_member(path, zf, name)[:200].decode("ascii", "replace").strip()
    declared = text.split()[0].lower() if text else ""
    if declared == hashlib.md5(xml).hexdigest():
        return "ok"
    log.warning("%s: md5checksum.hex does not match main.xml", path)
    return "mismatch"


def _heights(path, zf, names, prefix, r3, header, ny, nx, dtype, scale_um, offset_um):
    """Heights in micrometres, (ny, nx) float64, NaN for unmeasured points."""
    n = nx * ny
    link = _text(r3, "DataLink", "PointDataLink")
    if link:
        member = _member(path, names, prefix, link, "PointDataLink")
        header["data_link"] = member
        expected = n * dtype.itemsize
        declared = zf.getinfo(member).file_size
        if declared != expected:
            raise UnreadableInput(
                path,
                f"data member {member!r} holds {declared} bytes; SizeX*SizeY*itemsize = "
                f"{nx}*{ny}*{dtype.itemsize} = {expected}",
            )
        # a member of exactly the grid's size may deflate any-fold (an all-NaN or constant
        # block does): its content is judged by height_dataarray, not by its ratio
        raw = np.frombuffer(read_zip_member(path, zf, member, grid_bytes=expected),
                            dtype=dtype, count=n)
    else:
        raw = _datalist(path, r3, n)
        header["data_link"] = "inline DataList"
    # One float64 allocation: scale (and cast) in one step, then the offset in place.
    z = np.multiply(raw, scale_um, dtype=np.float64)
    if offset_um:
        z += offset_um
    vlink = _text(r3, "DataLink", "ValidPointsLink")
    if link and vlink:
        vmember = _member(path, names, prefix, vlink, "ValidPointsLink")
        header["valid_points_link"] = vmember
        vb = read_zip_member(path, zf, vmember, grid_bytes=(n + 7) // 8)  # all-valid: 0xFF..
        if len(vb) < (n + 7) // 8:
            raise UnreadableInput(
                path, f"valid-points member {vmember!r} holds {len(vb)} bytes; "
                f"{n} points need {(n + 7) // 8}"
            )
        bits = np.unpackbits(np.frombuffer(vb, np.uint8), count=n, bitorder="little")
        z[bits == 0] = np.nan
    return z.reshape(ny, nx)


def _datalist(path: Path, r3, n: int) -> np.ndarray:
    """Inline ``<DataList><Datum>z</Datum>...``; an empty Datum is an unmeasured point."""
    dl = _child(r3, "DataList")
    if dl is None:
        raise UnreadableInput(path, "main.xml Record3 has neither DataLink nor DataList")
    texts = [(d.text or "").strip() for d in dl if _local(d.tag) == "Datum"]
    if len(texts) != n:
        raise UnreadableInput(
            path, f"DataList holds {len(texts)} Datum elements; SizeX*SizeY = {n}"
        )
    try:
        return np.array([float(t) if t else np.nan for t in texts], dtype=np.float64)
    except ValueError:
        bad = next(t for t in texts if t and not _is_float(t))
        raise UnreadableInput(
            path, f"DataList Datum {bad[:40]!r} is not a single number (absolute x/y in a "
            "DataList is not supported)"
        ) from None


def _is_float(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True
