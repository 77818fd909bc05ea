"""Build the DataArrays that readers return, in the one shape DESIGN.md fixes.

dims ("y", "x"); coords in micrometres at pixel centres, origin top-left, y down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UnreadableInput
from pipeline.ingest.limits import check_pixel_size, check_shape

__all__ = ["height_dataarray"]


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
