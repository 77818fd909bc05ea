"""ISO 25178-2 hybrid parameters Sdq and Sdr (the autocorrelation, Sal and Str: `acf`).

Every function takes a height map ``z : (M, N) float64 ndarray`` in micrometres that is
already levelled and filtered, NaN where unmeasured, and the pixel sizes ``dx_um`` (along a
row, the x axis, column index) and ``dy_um`` (down a column, the y axis, row index).
Non-square pixels are handled everywhere.

Discretisation (ISO 25178-2 defines the parameters on the continuous surface):

* **Cells and triangles.** A cell is the rectangle between four neighbouring points. Each
  cell is split into two triangles along one diagonal *and* along the other, and the two
  triangulated areas are averaged. Equivalently, a cell's area is half the sum of its four
  corner triangles; the triangle at a corner spans the two cell edges that meet there, so
  its slope is (x difference of that edge / dx, y difference of that edge / dy). Both
  triangulations are exact for planes, and their average has no preferred diagonal: a
  mirror image or a transposed map (with dx and dy swapped) gives the same Sdr.
* **Sdr** is the area of those triangles over their projected area, minus 1, in percent.
* **Sdq** uses the same four triangles: Sdq² is the mean over valid cells of the mean
  squared gradient of the four triangles, i.e. forward differences in x and in y, each x
  difference shared by the two cells above and below it (half weight on the first and last
  row), each y difference by the cells left and right of it. For small slopes
  Sdr ≈ 50 · Sdq² (percent), exactly to first order.
* A cell is valid when its four corners are finite; invalid cells are left out of both the
  triangle area and the projected area.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pipeline.errors import MeasurementError

__all__ = ["check_height_map", "sdq", "sdr"]

logger = logging.getLogger(__name__)

# Rows of cells processed at a time in Sdq/Sdr: the temporaries then stay in cache
# (32 rows of a 2048-wide map are 0.5 MB per buffer).
_BLOCK_ROWS = 32


def check_height_map(z, dx_um: float, dy_um: float) -> np.ndarray:
    """Validate a height map and its pixel sizes; return it as a float64 array (no copy if
    it already is one).

    Raises
    ------
    ValueError
        ``z`` is not two-dimensional or a pixel size is not a finite positive number.
    MeasurementError
        The map has fewer than 2 x 2 points.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"height map must be two-dimensional (M, N); got shape {z.shape}")
    for name, value in (("dx_um", dx_um), ("dy_um", dy_um)):
        if not (isinstance(value, (int, float, np.floating, np.integer))
                and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite pixel size > 0 um; got {value!r}")
    if z.shape[0] < 2 or z.shape[1] < 2:
        raise MeasurementError(None, f"height map of shape {z.shape} is too small: "
                                     "at least 2 x 2 points are needed")
    return z


def _no_cells(z: np.ndarray, what: str) -> MeasurementError:
    return MeasurementError(None, f"{what}: no cell of the {z.shape[0]} x {z.shape[1]} "
                                  "height map has four valid corners")


def sdq(z, dx_um: float, dy_um: float) -> float:
    """Root mean square gradient Sdq (ISO 25178-2), dimensionless.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres, levelled and filtered; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.

    Returns
    -------
    float
        Sdq = sqrt(mean over valid cells of the squared gradient), where a cell's squared
        gradient is the mean over its four corner triangles (module docstring):
        ((dz_top/dx)² + (dz_bottom/dx)²)/2 + ((dz_left/dy)² + (dz_right/dy)²)/2, with the
        forward differences of the cell's edges.

    Raises
    ------
    MeasurementError
        No cell has four valid corners.
    """
    z = check_height_map(z, dx_um, dy_um)
    m, n = z.shape
    sx, sy = 1.0 / dx_um, 1.0 / dy_um
    if np.isfinite(z).all():
        # Each x difference counts for the cells above and below it: weight 2, half on the
        # first and last rows; likewise y differences with the first and last columns.
        total = 0.0
        for r0 in range(0, m, 4 * _BLOCK_ROWS):
            r1 = min(r0 + 4 * _BLOCK_ROWS, m)
            gx = np.subtract(z[r0:r1, 1:], z[r0:r1, :-1])
            gx *= sx
            np.square(gx, out=gx)  # not a BLAS dot: one call per block would wake its threads
            total += 2.0 * float(gx.sum())
            edge_rows = [i - r0 for i in (0, m - 1) if r0 <= i < r1]
            total -= float(np.sum(gx[edge_rows]))
            if r1 < m:
                r1 += 1  # y differences across the block boundary
            gy = np.subtract(z[r0 + 1:r1], z[r0:r1 - 1])
            gy *= sy
            np.square(gy, out=gy)
            total += 2.0 * float(gy.sum())
            total -= float(np.sum(gy[:, 0]) + np.sum(gy[:, -1]))
        return math.sqrt(total / (2.0 * (m - 1) * (n - 1)))
    total, count = 0.0, 0
    for r0 in range(0, m - 1, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, m - 1)
        gx = np.subtract(z[r0:r1 + 1, 1:], z[r0:r1 + 1, :-1])
        gx *= sx
        np.multiply(gx, gx, out=gx)
        gy = np.subtract(z[r0 + 1:r1 + 1], z[r0:r1])
        gy *= sy
        np.multiply(gy, gy, out=gy)
        q = np.add(gx[:-1], gx[1:])
        q += gy[:, :-1]
        q += gy[:, 1:]
        ok = np.isfinite(q)
        total += float(q.sum(where=ok))
        count += int(np.count_nonzero(ok))
    if count == 0:
        raise _no_cells(z, "Sdq")
    return math.sqrt(total / (2.0 * count))


def sdr(z, dx_um: float, dy_um: float) -> float:
    """Developed interfacial area ratio Sdr (ISO 25178-2), in percent.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres, levelled and filtered; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.

    Returns
    -------
    float
        100 · (area of the triangulated surface / projected area − 1), both over the cells
        whose four corners are valid. Each cell is triangulated along both diagonals and
        the two areas averaged (module docstring); exact for any plane:
        a plane z = a·x + b·y gives 100 · (sqrt(1 + a² + b²) − 1).

    Raises
    ------
    MeasurementError
        No cell has four valid corners.

    Notes
    -----
    The area of a corner triangle over its projected area is
    sqrt(1 + (Δz_x/dx)² + (Δz_y/dy)²), evaluated here as
    sqrt(dy² + (Δz_x·dy/dx)² + Δz_y²) / dy to save one pass over the data.
    """
    z = check_height_map(z, dx_um, dy_um)
    m, n = z.shape
    ratio = dy_um / dx_um
    dy2 = dy_um * dy_um
    all_finite = bool(np.isfinite(z).all())
    rows = min(_BLOCK_ROWS, m - 1)
    a_buf = np.empty((rows + 1, n - 1))
    b_buf = np.empty((rows, n))
    t_buf = np.empty((rows, n - 1))
    s_buf = np.empty((rows, n - 1))
    total, count = 0.0, 0
    for r0 in range(0, m - 1, rows):
        r1 = min(r0 + rows, m - 1)
        k = r1 - r0
        a, b, t, s = a_buf[:k + 1], b_buf[:k], t_buf[:k], s_buf[:k]
        np.subtract(z[r0:r1 + 1, 1:], z[r0:r1 + 1, :-1], out=a)  # x differences
        if ratio != 1.0:
            a *= ratio
        np.multiply(a, a, out=a)
        a += dy2
        np.subtract(z[r0 + 1:r1 + 1], z[r0:r1], out=b)  # y differences
        np.multiply(b, b, out=b)
        top, bottom, left, right = a[:-1], a[1:], b[:, :-1], b[:, 1:]
        np.add(top, left, out=t)
        np.sqrt(t, out=s)
        for xs, ys in ((top, right), (bottom, left), (bottom, right)):
            np.add(xs, ys, out=t)
            np.sqrt(t, out=t)
            s += t
        if all_finite:
            total += float(s.sum())
            count += s.size
        else:
            ok = np.isfinite(s)
            total += float(s.sum(where=ok))
            count += int(np.count_nonzero(ok))
    if count == 0:
        raise _no_cells(z, "Sdr")
    return (total / (4.0 * dy_um * count) - 1.0) * 100.0
