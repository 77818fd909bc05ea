"""Gwyddion native ``.gwy`` files (magic ``GWYP``): the first image channel as a height map.

Layout (Gwyddion user guide, "Gwyddion native file format"): after the 4-byte magic comes
one serialised object, a ``GwyContainer``. A serialised object is its type name (NUL
terminated), a little-endian uint32 byte count, then that many bytes of components. A
component is a name (NUL terminated), a one-character type and the value:

====  =====================  ====  ==============================================
b, c  1 byte                 s     NUL-terminated UTF-8 string
i     int32                  o     nested serialised object
q, d  int64, float64         C I Q D S O   arrays: uint32 count, then the items
====  =====================  ====  ==============================================

Channel ``N`` is the component ``/N/data`` (a ``GwyDataField``: ``xres``, ``yres``,
``xreal``, ``yreal``, optional ``xoff``/``yoff``, ``si_unit_xy`` and ``si_unit_z``
(``GwySIUnit`` objects with a ``unitstr``) and ``data``, ``xres*yres`` doubles row by row,
row 0 at the top); its title is ``/N/data/title``. Values are in the units named, normally
the base unit ``m``.

Every declared size and count is checked against the bytes that remain before anything is
allocated, so a corrupt or hostile file cannot make the parser allocate or loop without
bound.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.height.binary import length_unit_to_um as binary_length_unit_to_um
from pipeline.ingest.limits import check_shape, need, unpack_from

__all__ = ["GwyReader", "length_unit_to_um"]

log = logging.getLogger(__name__)

MAGIC = b"GWYP"
_MAX_DEPTH = 32
_SCALAR_SIZES = {"b": 1, "c": 1, "i": 4, "q": 8, "d": 8}
_ARRAY_ITEM_SIZES = {"C": 1, "I": 4, "Q": 8, "D": 8}
_CHANNEL = re.compile(r"^/(\d+)/data$")
_TITLE = re.compile(r"^/(\d+)/data/title$")


def length_unit_to_um(unit: str) -> float | None:
    """Micrometres per one GwySIUnit `unit` ("m", "mm", "um", "µm", "nm", "Å"); None if the
    unit is empty or not a length. Gwyddion units are SI, so "A" is the ampere of a current
    channel, never an angstrom."""
    if unit.strip() in ("A", "a"):
        return None
    return binary_length_unit_to_um(unit)


class _Parser:
    """Bounds-checked walk over one serialised GWY buffer."""

    def __init__(self, path: Path, buf: bytes):
        self.path, self.buf = path, buf

    def cstring(self, pos: int, end: int, what: str) -> tuple[str, int]:
        nul = self.buf.find(b"\0", pos, end)
        if nul < 0:
            raise UnreadableInput(
                self.path, f"file is truncated: {what} has no terminating NUL before byte {end}"
            )
        try:
            return self.buf[pos:nul].decode("utf-8"), nul + 1
        except UnicodeDecodeError:
            raise UnreadableInput(self.path, f"{what} is not UTF-8 text") from None

    def object(self, pos: int, end: int, what: str) -> tuple[str, int, int]:
        """(type name, first component byte, end byte) of the object serialised at `pos`."""
        name, pos = self.cstring(pos, end, f"{what} type name")
        (size,) = unpack_from(self.path, "<I", self.buf, pos, f"{what} size")
        start = pos + 4
        if start + size > end:
            raise UnreadableInput(
                self.path,
                f"file is truncated: {what} ({name}) declares {size} bytes but only "
                f"{end - start} remain",
            )
        return name, start, start + size

    def components(self, start: int, end: int, what: str, depth: int = 0):
        """Yield (name, type char, value position) and step over every value."""
        if depth > _MAX_DEPTH:
            raise UnreadableInput(self.path, f"objects nested deeper than {_MAX_DEPTH} levels")
        pos = start
        while pos < end:
            name, pos = self.cstring(pos, end, f"component name in {what}")
            need(self.path, self.buf, pos, 1, f"type of component {name!r}")
            if pos >= end:
                raise UnreadableInput(self.path, f"component {name!r} of {what} has no type")
            kind = chr(self.buf[pos])
            pos += 1
            yield name, kind, pos
            pos = self.skip(kind, pos, end, f"component {name!r}", depth)

    def skip(self, kind: str, pos: int, end: int, what: str, depth: int) -> int:
        """Position after a value of type `kind` at `pos`, checked against `end`."""
        if kind in _SCALAR_SIZES:
            stop = pos + _SCALAR_SIZES[kind]
        elif kind == "s":
            return self.cstring(pos, end, what)[1]
        elif kind == "o":
            return self.object(pos, end, what)[2]
        elif kind in _ARRAY_ITEM_SIZES or kind in "SO":
            count, pos = self.count(kind, pos, end, what)
            if kind in _ARRAY_ITEM_SIZES:
                stop = pos + count * _ARRAY_ITEM_SIZES[kind]
            else:
                for i in range(count):
                    pos = self.skip(kind.lower(), pos, end, f"{what}[{i}]", depth + 1)
                return pos
        else:
            raise UnreadableInput(self.path, f"{what} has unknown type {kind!r}")
        if stop > end:
            raise UnreadableInput(self.path, f"file is truncated: {what} runs past its object")
        return stop

    def count(self, kind: str, pos: int, end: int, what: str) -> tuple[int, int]:
        """Array length, refused when the items cannot fit in the bytes that remain."""
        (n,) = unpack_from(self.path, "<I", self.buf, pos, f"{what} length")
        pos += 4
        least = _ARRAY_ITEM_SIZES.get(kind, 1 if kind == "S" else 5)
        if n * least > end - pos:
            raise UnreadableInput(
                self.path,
                f"file is truncated or corrupt: {what} declares {n} items "
                f"({n * least} bytes at least) but only {end - pos} bytes remain",
            )
        return n, pos

    def scalar(self, kind: str, pos: int, what: str):
        fmt = {"b": "<?", "c": "<c", "i": "<i", "q": "<q", "d": "<d"}[kind]
        return unpack_from(self.path, fmt, self.buf, pos, what)[0]

    def unit(self, pos: int, end: int, what: str) -> str:
        name, start, stop = self.object(pos, end, what)
        if name != "GwySIUnit":
            raise UnreadableInput(self.path, f"{what} is a {name}, not a GwySIUnit")
        for cname, kind, vpos in self.components(start, stop, what, 1):
            if cname == "unitstr" and kind == "s":
                return self.cstring(vpos, stop, f"{what} unitstr")[0]
        return ""


class GwyReader:
    """Reader for Gwyddion ``.gwy`` files: the first image channel, which must be heights."""

    name = "gwy"
    kind = "height"
    suffixes = (".gwy",)
    description = "Gwyddion native .gwy (first image channel, z unit must be a length)"
    expects = "the magic GWYP followed by a GwyContainer"
    priority = 10

    def can_open(self, head: bytes, path: Path) -> bool:
        return head.startswith(MAGIC + b"GwyContainer\0")

    def open(self, path: Path):
        """Read the first channel.

        Raises
        ------
        UnreadableInput
            Wrong magic, truncated or corrupt serialisation, no image channel, bad sizes.
        MissingCalibration
            The channel's z unit or lateral unit is empty or not a length.
        """
        path = Path(path)
        buf = path.read_bytes()
        if not buf.startswith(MAGIC):
            hint = " (GWYO is the Gwyddion 1 format, not supported)" if buf[:4] == b"GWYO" else ""
            raise UnreadableInput(path, f"not a Gwyddion file: magic {buf[:4]!r}, expected "
                                        f"{MAGIC!r}{hint}")
        p = _Parser(path, buf)
        name, start, end = p.object(len(MAGIC), len(buf), "top-level object")
        if name != "GwyContainer":
            raise UnreadableInput(path, f"top-level object is a {name!r}, not a GwyContainer")
        fields: dict[int, int] = {}
        titles: dict[int, str] = {}
        for cname, kind, vpos in p.components(start, end, "GwyContainer"):
            if kind == "o" and (m := _CHANNEL.match(cname)):
                fields[int(m.group(1))] = vpos
            elif kind == "s" and (m := _TITLE.match(cname)):
                titles[int(m.group(1))] = p.cstring(vpos, end, cname)[0]
        if not fields:
            raise UnreadableInput(path, "the file holds no image channel (/N/data)")
        ids = sorted(fields)
        cid = ids[0]
        title = titles.get(cid, "")
        label = f"{title!r} (/{cid}/data)" if title else f"/{cid}/data"
        header = {"software": "Gwyddion", "channel": f"/{cid}/data", "title": title,
                  "n_channels": len(ids)}
        if len(ids) > 1:
            others = ", ".join(f"/{i}/data {titles.get(i, '')!r}" for i in ids[1:])
            header["other_channels"] = others
            log.info("%s: reading channel %s; not read: %s", path, label, others)
        f = _datafield(p, fields[cid], end, cid)
        header.update({k: f[k] for k in ("xres", "yres", "xreal", "yreal", "xoff", "yoff",
                                          "si_unit_xy", "si_unit_z")})
        z_scale = _length_scale(path, f["si_unit_z"], f"channel {label}: the z unit",
                                "so its values are not heights; a height map needs a length "
                                "unit (m, mm, um, nm)")
        xy_scale = _length_scale(path, f["si_unit_xy"], f"channel {label}: the lateral (xy) "
                                 "unit", "so the pixel size is unknown")
        xres, yres = f["xres"], f["yres"]
        raw = np.frombuffer(buf, dtype="<f8", count=xres * yres, offset=f["data_pos"])
        z_um = np.multiply(raw, z_scale, dtype=np.float64).reshape(yres, xres)
        return height_dataarray(
            z_um,
            path=path,
            dx_um=f["xreal"] / xres * xy_scale,
            dy_um=f["yreal"] / yres * xy_scale,
            pixel_size_source=f"gwy /{cid}/data xreal/xres, yreal/yres ({f['si_unit_xy']})",
            vendor="",  # a .gwy file does not name the instrument's maker
            instrument="",
            fmt="gwy",
            header=header,
        )


def _length_scale(path: Path, unit: str, what: str, consequence: str) -> float:
    """Micrometres per `unit`, or MissingCalibration saying it is empty / not a length."""
    scale = length_unit_to_um(unit)
    if scale is None:
        problem = "is empty" if not unit.strip() else f"{unit!r} is not a length"
        raise MissingCalibration(path, f"{what} {problem}, {consequence}")
    return scale


def _datafield(p: _Parser, pos: int, end: int, cid: int) -> dict:
    """Sizes, units and the data offset of the GwyDataField serialised at `pos`."""
    what = f"/{cid}/data"
    name, start, stop = p.object(pos, end, what)
    if name != "GwyDataField":
        raise UnreadableInput(p.path, f"{what} is a {name!r}, not a GwyDataField")
    f: dict = {"xoff": 0.0, "yoff": 0.0, "si_unit_xy": "", "si_unit_z": ""}
    data = None
    for cname, kind, vpos in p.components(start, stop, what, 1):
        if cname in ("xres", "yres") and kind == "i" or cname in ("xreal", "yreal", "xoff", "yoff") and kind == "d":
            f[cname] = p.scalar(kind, vpos, f"{what} {cname}")
        elif cname in ("si_unit_xy", "si_unit_z") and kind == "o":
            f[cname] = p.unit(vpos, stop, f"{what} {cname}")
        elif cname == "data" and kind == "D":
            data = p.count(kind, vpos, stop, f"{what} data")
    for key in ("xres", "yres", "xreal", "yreal"):
        if key not in f:
            raise UnreadableInput(p.path, f"{what} has no {key}")
    check_shape(p.path, f["yres"], f["xres"], what=f"{what} image")
    for key in ("xreal", "yreal"):
        if not (math.isfinite(f[key]) and f[key] > 0):
            raise UnreadableInput(p.path, f"{what} {key} is {f[key]!r}; it must be positive")
    if data is None:
        raise UnreadableInput(p.path, f"{what} has no data array")
    count, f["data_pos"] = data
    if count != f["xres"] * f["yres"]:
        raise UnreadableInput(
            p.path, f"{what} data holds {count} values; xres*yres = "
            f"{f['xres']}*{f['yres']} = {f['xres'] * f['yres']}")
    return f
