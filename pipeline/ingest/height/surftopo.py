"""Fallback height reader through SurfaceTopography (MIT; the optional ``formats`` extra).

For formats we do not read natively: ISO 25178-71 SDF, Wyko OPD, Dektak OPDx, Zygo DATX,
Olympus LEXT/OIR, Sensofar PLUX, NT-MDT, Molecular Imaging, TrueMap, KLA Zeta, FRT, OmniSurf3D,
Nanosurf, BCR, WSxM, JPK, NetCDF. It has the lowest priority and, besides, only takes files
whose suffix is in `SUFFIX_FORMATS` *and* whose first bytes carry that format's signature,
so it never takes over a format a native reader handles (x3p, sur, plu, dat, al3d, zon, vk*,
gwy, csv, tiff are not in the list).

Conversions: SurfaceTopography gives heights as an (nx, ny) array indexed [x, y] in the
unit of the file, physical sizes as number of pixels x pixel size, and undefined points as a
mask. We return z[y, x] = heights[x, y] (no flip: y index 0 of SurfaceTopography is row 0,
the top, as it is for the native readers; checked on files both read), in micrometres,
masked points -> NaN. SurfaceTopography is imported inside the methods only.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray

__all__ = ["SUFFIX_FORMATS", "SurfaceTopographyReader"]

log = logging.getLogger(__name__)

_HDF5 = (0, b"\x89HDF\r\n\x1a\n")
_TIFF = ((0, b"II*\x00"), (0, b"MM\x00*"))
_ZIP = (0, b"PK\x03\x04")
_BCR = ((0, b"fileformat = bcr"), (0, b"f\x00i\x00l\x00e\x00"), (2, b"f\x00i\x00l\x00e\x00"))

# suffix -> (SurfaceTopography format id, signatures (offset, bytes) of which one must match)
SUFFIX_FORMATS: dict[str, tuple[str, tuple[tuple[int, bytes], ...]]] = {
    ".sdf": ("sdf", ((0, b"aISO-1.0"), (0, b"bISO-1.0"))),
    ".opd": ("opd", ((2, b"Directory"),)),
    ".opdx": ("opdx", ((0, b"VCA DATA"),)),
    ".datx": ("datx", (_HDF5,)),
    ".lext": ("lext", _TIFF),
    ".oir": ("oir", ((0, b"OLYMPUSRAWFORMAT"),)),
    ".poir": ("poir", (_ZIP,)),
    ".plux": ("plux", (_ZIP,)),
    ".mdt": ("mdt", ((0, b"\x01\xb0\x93\xff"),)),
    ".mi": ("mi", ((0, b"fileType"),)),
    ".tmd": ("tmd", ((0, b"Binary TrueMap Data File"),)),
    ".zmg": ("zmg", ((0, b"Zeta-Instruments"),)),
    ".frt": ("frt", ((0, b"FRTM_GLIDERV"),)),
    ".os3d": ("os3d", ((0, b"OmniSurf3D"),)),
    ".ezd": ("ezd", ((0, b"[DataSet]"),)),
    ".nid": ("ezd", ((0, b"[DataSet]"),)),
    ".bcr": ("bcr", _BCR),
    ".bcrf": ("bcr", _BCR),
    ".stp": ("wsxm", ((0, b"WSxM file copyright"),)),
    ".top": ("wsxm", ((0, b"WSxM file copyright"),)),
    ".jpk": ("jpk", _TIFF),
    ".nc": ("nc", ((0, b"CDF"), _HDF5)),
}  # fmt: skip

_UM_PER_UNIT = {"pm": 1e-6, "Å": 1e-4, "A": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0,
                "mm": 1e3, "m": 1e6}  # fmt: skip


def _import_surftopo() -> ModuleType | None:
    """SurfaceTopography, or None when it is not installed (or broken)."""
    try:
        with warnings.catch_warnings():  # NuMPI warns at import that mpi4py is absent
            warnings.simplefilter("ignore", ImportWarning)
            import SurfaceTopography
    except Exception as exc:  # ImportError, or a broken install: the reader is unavailable
        log.debug("SurfaceTopography not importable: %s", exc)
        return None
    return SurfaceTopography


def _um_per(unit) -> float | None:
    if isinstance(unit, (tuple, list)):  # (lateral, height) units: they must agree here
        return None
    return _UM_PER_UNIT.get(str(unit).strip()) if unit else None


class SurfaceTopographyReader:
    """Formats we do not read natively, through SurfaceTopography when it is installed."""

    name = "surftopo"
    kind = "height"
    suffixes = tuple(SUFFIX_FORMATS)
    description = "fallback through SurfaceTopography (if installed) for formats not read natively"
    priority = 90

    @property
    def available(self) -> bool:
        """Installed (found on the path, not imported: importing it takes seconds, and
        `electrode-qc formats` only lists; a broken install fails when a file is opened)."""
        import importlib.util

        return importlib.util.find_spec("SurfaceTopography") is not None

    @property
    def expects(self) -> str:
        if not self.available:
            return ("SurfaceTopography, which is not installed (unavailable; "
                    "pip install 'electrode-qc[formats]')")  # fmt: skip
        return "a suffix among " + " ".join(SUFFIX_FORMATS) + " and that format's signature"

    def can_open(self, head: bytes, path: Path) -> bool:
        entry = SUFFIX_FORMATS.get(Path(path).suffix.lower())
        if entry is None or not any(head[o : o + len(m)] == m for o, m in entry[1]):
            return False
        return self.available

    def open(self, path: Path):
        path = Path(path)
        st = _import_surftopo()
        if st is None:
            raise UnreadableInput(
                path, "SurfaceTopography is not installed; it is needed for this format"
            )
        fmt = SUFFIX_FORMATS[path.suffix.lower()][0]
        try:
            reader = st.open_topography(str(path), format=fmt)
            channel = reader.default_channel
            if channel.dim != 2:
                raise UnreadableInput(
                    path, f"{reader.name()} channel {channel.name!r} is a line scan, not a map"
                )
            if channel.is_uniform is False:
                raise UnreadableInput(
                    path, f"{reader.name()} channel {channel.name!r} is not on a uniform grid"
                )
            if channel.physical_sizes is None:
                raise MissingCalibration(
                    path, f"{reader.name()} gives no physical size: the pixel size is unknown"
                )
            if channel.unit is None:
                raise MissingCalibration(
                    path, f"{reader.name()} gives no length unit: the scale is unknown"
                )
            topo = reader.topography(channel_index=channel.index)
        except (UnreadableInput, MissingCalibration):
            raise
        except (
            Exception
        ) as exc:  # SurfaceTopography's own errors (CorruptFile, ...) and parse errors
            raise UnreadableInput(
                path, f"SurfaceTopography ({fmt}) cannot read it: {type(exc).__name__}: {exc}"
            ) from None
        return self._dataarray(path, reader, channel, topo)

    @staticmethod
    def _dataarray(path: Path, reader, channel, topo):
        factor = _um_per(topo.unit)
        if factor is None:
            raise MissingCalibration(
                path, f"{reader.name()} gives the unit {topo.unit!r}, not a length we know"
            )
        heights = topo.heights()
        mask = np.ma.getmaskarray(heights)
        z = np.ma.getdata(heights).astype(np.float64).T * factor  # [x, y] -> [row y, col x]
        z[mask.T] = np.nan
        px, py = (float(v) * factor for v in topo.pixel_size)
        info = topo.info if isinstance(topo.info, dict) else {}
        instrument = info.get("instrument", {}) if isinstance(info.get("instrument"), dict) else {}
        header = {
            "surftopo_format": reader.format(),
            "surftopo_reader": reader.name(),
            "channel": str(channel.name),
            "unit_in_file": str(topo.unit),
            "image_width_px": int(z.shape[1]),
            "image_height_px": int(z.shape[0]),
            "invalid_rule": "SurfaceTopography mask / NaN -> NaN",
        }
        if info.get("acquisition_time") is not None:
            header["date"] = str(info["acquisition_time"])
        return height_dataarray(
            z,
            path=path,
            dx_um=px,
            dy_um=py,
            pixel_size_source=f"SurfaceTopography {reader.name()}",
            vendor=str(instrument.get("vendor", "") or ""),
            instrument=str(instrument.get("name", "") or ""),
            fmt=reader.format(),
            header=header,
        )
