"""Build the DataArrays that readers return, in the one shape docs/design.md fixes.

dims ("y", "x"); coords in micrometres at pixel centres, origin top-left, y down.

Inside `as_rasters()` the builders return a `Raster` instead: the same values, coords and
attrs without xarray, which (with pandas, and dask.array when dask is installed) takes
most of a second to import. `pipeline.read(..., as_xarray=False)` uses it for commands
that only look at a file (``inspect``); `Raster.to_xarray()` gives the DataArray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import MeasurementError, MissingCalibration, UnreadableInput
from pipeline.ingest.limits import check_pixel_size, check_shape
from pipeline.ingest.rasters import as_rasters, rasters_wanted

__all__ = [
    "CONSTANT_HEIGHTS",
    "NO_VALID_POINT",
    "Raster",
    "as_rasters",
    "height_dataarray",
    "refuse_blank",
    "require_pixel_size",
    "sem_dataarray",
    "valid_mask",
]

NO_VALID_POINT = "height map has no valid point (every height is NaN or infinite)"
CONSTANT_HEIGHTS = "no height data (the block is constant: an interrupted copy?)"
# An SEM image with at least this share of its analysed pixels at one grey value is blank.
BLANK_SHARE = 0.99


@dataclass
class Raster:
    """An image as the readers build it, without xarray: ``values`` (M, N), ``coords``
    ({"y": (dim, array, attrs), "x": ...}), ``attrs`` and ``name``; dims are ("y", "x").
    Enough for looking at a file (shape, dtype, attrs, values); `to_xarray` for the rest."""

    values: np.ndarray
    coords: dict[str, tuple]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    dims: tuple[str, str] = ("y", "x")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.dims, self.values.shape, strict=True))

    def to_xarray(self):
        """The `xarray.DataArray` that the reader builds outside `as_rasters`."""
        import xarray as xr

        return xr.DataArray(self.values, dims=self.dims, coords=self.coords, attrs=self.attrs,
                            name=self.name)


def _build(values: np.ndarray, coords: dict[str, tuple], attrs: dict[str, Any], name: str):
    raster = Raster(values, coords, attrs, name)
    return raster if rasters_wanted() else raster.to_xarray()


def _refuse_constant(path: str | Path, z: np.ndarray, *, all_finite: bool) -> None:
    """UnreadableInput when every valid height of `z` (NaN = invalid) is one value.

    No instrument measures a surface as exactly flat: its noise alone varies the heights.
    A constant block is a file whose data was never written (an interrupted copy, a
    pre-allocated export) or was zeroed.
    """
    if all_finite:
        lo, hi = float(z.min()), float(z.max())
    else:
        lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    if lo == hi:
        raise UnreadableInput(path, CONSTANT_HEIGHTS)


def height_dataarray(
    z_um: np.ndarray,
    *,
    path: str | Path,
    dx_um: float,
    dy_um: float,
    pixel_size_source: str,
    vendor: str,
    instrument: str = "",
    fmt: str,
    header: dict[str, Any] | None = None,
    **attrs: Any,
):
    """Wrap a height map as an `xarray.DataArray`.

    Parameters
    ----------
    z_um : (M, N) ndarray
        Heights in micrometres; NaN where the instrument measured nothing. Converted to
        float64. Row 0 is the top of the image (y grows downwards).
    path : str or Path
        The source file, for error messages and provenance.
    dx_um, dy_um : float
        Lateral pixel sizes in micrometres (x: along a row, y: down a column).
    pixel_size_source : str
        Where the pixel size came from (e.g. ``"x3p Record3 CX.Increment"``).
    vendor, instrument : str
        Maker and model as far as the file says.
    fmt : str
        The file format's name (``"x3p"``, ``"sur"``, ...).
    header : dict, optional
        Raw header fields worth showing in ``inspect`` (plain scalars and strings).
    **attrs
        Further attrs to set.

    Returns
    -------
    xarray.DataArray
        float64, ``attrs["units"] == "um"``, ``attrs["kind"] == "height"`` (a `Raster`
        inside `as_rasters`).

    Raises
    ------
    UnreadableInput
        Not 2-D, too large, a pixel size that is not positive or is absurd (corrupt
        calibration), no valid point (`NO_VALID_POINT`), or every valid point at one value
        (`CONSTANT_HEIGHTS`): data that cannot be a real measurement is refused here, where
        every height reader passes, rather than measured as a perfectly flat surface.
    """
    z = np.asarray(z_um)
    if z.ndim != 2:
        raise UnreadableInput(path, f"height data has {z.ndim} dimensions; expected 2")
    check_shape(path, *z.shape, what="height map")
    dx, dy = check_pixel_size(path, dx_um, dy_um)
    z = np.ascontiguousarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    n_valid = int(np.count_nonzero(finite))
    if n_valid != z.size:
        # +/-inf is as unmeasured as NaN: one marker for "nothing measured".
        if n_valid == 0:
            raise UnreadableInput(path, NO_VALID_POINT)
        inf = np.isinf(z)
        if inf.any():
            z = np.where(inf, np.nan, z)
    _refuse_constant(path, z, all_finite=n_valid == z.size)
    ny, nx = z.shape
    coords = {
        "y": ("y", (np.arange(ny) + 0.5) * dy, {"units": "um"}),
        "x": ("x", (np.arange(nx) + 0.5) * dx, {"units": "um"}),
    }
    a = {
        "kind": "height",
        "units": "um",
        "format": fmt,
        "pixel_size_um": {"x": dx, "y": dy},
        "pixel_size_source": pixel_size_source,
        "vendor": vendor,
        "instrument": instrument,
        "invalid_fraction": 1.0 - n_valid / z.size,
        "header": dict(header or {}),
        "source_path": str(path),
    }
    a.update(attrs)
    return _build(z, coords, a, "height")


def sem_dataarray(
    image: np.ndarray,
    *,
    path: str | Path,
    pixel_size_um: tuple[float, float] | None,
    pixel_size_source: str | None,
    vendor: str,
    instrument: str = "",
    fmt: str,
    databar_rows: int = 0,
    databar_method: str = "none",
    magnification: float | None = None,
    kv: float | None = None,
    detector: str | None = None,
    header: dict[str, Any] | None = None,
    masked_regions: list[dict[str, int]] | None = None,
    **attrs: Any,
):
    """Wrap an SEM image (data bar already cropped) as an `xarray.DataArray`.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 ndarray
        Grey values as recorded, data bar removed. Row 0 is the top of the image.
    path : str or Path
        The source file.
    pixel_size_um : (dx, dy) or None
        Pixel size in micrometres. None when nothing in the file gives it: the image is
        then uncalibrated (``attrs["calibration"] == "missing"``), with coordinates in
        pixels, and every measurement refuses it (`require_pixel_size`).
    pixel_size_source : str or None
        Where the pixel size came from (e.g. ``"FEI [Scan] PixelWidth"``).
    databar_rows, databar_method : int, str
        Rows cropped (or masked) as the instrument's data bar, and how they were found
        (``"metadata: ..."``, ``"detected: ..."``, ``"none"``).
    magnification, kv, detector : optional
        As the instrument recorded them.
    masked_regions : list of dict, optional
        Regions inside the image to leave out of analysis (burned-in text, scale bars), as
        ``{"row0", "row1", "col0", "col1", "reason"}`` (half-open pixel ranges).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise UnreadableInput(path, f"SEM image has {img.ndim} dimensions; expected 2")
    if img.dtype not in (np.uint8, np.uint16):
        raise UnreadableInput(path, f"SEM image has sample type {img.dtype}; expected uint8 or uint16")
    check_shape(path, *img.shape, what="SEM image")
    ny, nx = img.shape
    a: dict[str, Any] = {
        "kind": "sem",
        "units": "counts",
        "format": fmt,
        "vendor": vendor,
        "instrument": instrument,
        "databar_rows": int(databar_rows),
        "databar_method": databar_method,
        "magnification": magnification,
        "kv": kv,
        "detector": detector,
        "header": dict(header or {}),
        "masked_regions": list(masked_regions or []),
        "source_path": str(path),
    }
    if pixel_size_um is None:
        a.update(pixel_size_um=None, pixel_size_source=None, calibration="missing")
        coords = {
            "y": ("y", np.arange(ny, dtype=np.float64), {"units": "pixel"}),
            "x": ("x", np.arange(nx, dtype=np.float64), {"units": "pixel"}),
        }
    else:
        dx, dy = check_pixel_size(path, *pixel_size_um)
        a.update(pixel_size_um={"x": dx, "y": dy}, pixel_size_source=pixel_size_source,
                 calibration="ok")
        coords = {
            "y": ("y", (np.arange(ny) + 0.5) * dy, {"units": "um"}),
            "x": ("x", (np.arange(nx) + 0.5) * dx, {"units": "um"}),
        }
    a.update(attrs)
    return _build(np.ascontiguousarray(img), coords, a, "sem")


def require_pixel_size(da) -> tuple[float, float]:
    """The (dx, dy) pixel size in micrometres: MissingCalibration naming the file when there
    is none, MeasurementError when it is not a plausible length (`limits.check_pixel_size`:
    zero, negative, non-finite, under 0.1 nm or over 1 mm)."""
    src = da.attrs.get("source_path")
    ps = da.attrs.get("pixel_size_um")
    if not ps:
        raise MissingCalibration(
            src,
            "no pixel size: the file does not give one and no instrument profile or sample "
            "manifest supplies it",
        )
    try:
        return check_pixel_size(src, ps.get("x"), ps.get("y"))
    except UnreadableInput as exc:
        raise MeasurementError(src, exc.problem) from None


def valid_mask(da) -> np.ndarray:
    """(M, N) bool, True where an image is analysed: outside its ``attrs["masked_regions"]``."""
    valid = np.ones(da.shape, dtype=bool)
    for r in da.attrs.get("masked_regions") or []:
        valid[max(int(r["row0"]), 0):max(int(r["row1"]), 0),
              max(int(r["col0"]), 0):max(int(r["col1"]), 0)] = False
    return valid


def refuse_blank(da) -> None:
    """UnreadableInput naming the file when an SEM image is blank: nothing can be measured.

    Blank means that the analysed pixels (outside ``attrs["masked_regions"]``) all hold one
    grey value, or that at least `BLANK_SHARE` (99 %) of them do (a blank frame with a few
    stray pixels). A real micrograph always shows detector noise; an image without it is an
    empty or interrupted acquisition or export. Every SEM measurement calls this, so all of
    them refuse such an image alike. An image whose pixels are all masked is left to the
    caller.

    Parameters
    ----------
    da : xarray.DataArray, (M, N) uint8 or uint16
        An SEM image (`sem_dataarray`).

    Raises
    ------
    UnreadableInput
        The image is blank.
    """
    img = np.asarray(da.values)  # uint8 or uint16 (`sem_dataarray`)
    valid = valid_mask(da)
    pixels = img.ravel() if valid.all() else img[valid]
    n = pixels.size
    if n == 0:
        return
    counts = np.bincount(pixels)  # one bin per grey value, exact
    mode = int(np.argmax(counts))
    differ = n - int(counts[mode])
    if differ > (1.0 - BLANK_SHARE) * n:
        return
    full = np.iinfo(img.dtype).max
    what = "black" if mode == 0 else "white" if mode == full else "uniform grey"
    src = da.attrs.get("source_path")
    why = "nothing can be measured (an empty or interrupted acquisition or export?)"
    if differ == 0:
        raise UnreadableInput(src, f"the image is blank: every analysed pixel is {mode:g} "
                                   f"(all {what}); {why}")
    raise UnreadableInput(src, f"the image is nearly blank: only {differ} of its {n} analysed "
                               f"pixels differ from {mode:g} ({what}); {why}")
