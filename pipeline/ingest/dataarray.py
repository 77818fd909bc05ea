"""Build the DataArrays that readers return, in the one shape DESIGN.md fixes.

dims ("y", "x"); coords in micrometres at pixel centres, origin top-left, y down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.limits import check_pixel_size, check_shape

__all__ = ["height_dataarray", "require_pixel_size", "sem_dataarray"]


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
        float64, ``attrs["units"] == "um"``, ``attrs["kind"] == "height"``.
    """
    import xarray as xr

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
            raise UnreadableInput(path, "height map has no valid (finite) point")
        inf = np.isinf(z)
        if inf.any():
            z = np.where(inf, np.nan, z)
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
    return xr.DataArray(z, dims=("y", "x"), coords=coords, attrs=a, name="height")


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
    import xarray as xr

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
    return xr.DataArray(np.ascontiguousarray(img), dims=("y", "x"), coords=coords, attrs=a,
                        name="sem")


def require_pixel_size(da) -> tuple[float, float]:
    """The (dx, dy) pixel size in micrometres, or MissingCalibration naming the file."""
    from pipeline.errors import MissingCalibration

    ps = da.attrs.get("pixel_size_um")
    if not ps:
        raise MissingCalibration(
            da.attrs.get("source_path"),
            "no pixel size: the file does not give one and no instrument profile or sample "
            "manifest supplies it",
        )
    return float(ps["x"]), float(ps["y"])


def valid_mask(da) -> np.ndarray:
    """(M, N) bool, True where an image is analysed: outside its ``attrs["masked_regions"]``."""
    valid = np.ones(da.shape, dtype=bool)
    for r in da.attrs.get("masked_regions") or []:
        valid[max(int(r["row0"]), 0):max(int(r["row1"]), 0),
              max(int(r["col0"]), 0):max(int(r["col1"]), 0)] = False
    return valid
