"""F-operators: least-squares form removal on valid points only.

All functions take `z : (M, N) float64 ndarray` (NaN = invalid) and the pixel sizes, and
return the residual surface (same shape, NaN kept) or the fitted form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_plane", "level", "plane_terms", "remove_plane", "remove_polynomial"]


def _centred_axes(shape: tuple[int, int], dx: float, dy: float):
    ny, nx = shape
    x = (np.arange(nx) - (nx - 1) / 2.0) * dx
    y = (np.arange(ny) - (ny - 1) / 2.0) * dy
    return x, y


def fit_plane(z: np.ndarray, dx_um: float = 1.0, dy_um: float = 1.0) -> tuple[float, float, float]:
    """Least-squares plane ``z = c + a*x + b*y`` through the valid points, in closed form.

    x and y are measured from the centre of the field in micrometres, so `c` is the plane's
    height at the centre and `a`, `b` are slopes (um/um). The normal equations are assembled
    from row and column sums, so a full map costs two passes.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights; NaN points are left out of the fit.
    dx_um, dy_um : float
        Pixel sizes.

    Returns
    -------
    c, a, b : float
    """
    x, y = _centred_axes(z.shape, dx_um, dy_um)
    valid = np.isfinite(z)
    if valid.all():
        zc = z
        wx = np.full(z.shape[1], z.shape[0], dtype=np.float64)  # valid count per column
        wy = np.full(z.shape[0], z.shape[1], dtype=np.float64)  # valid count per row
        sxy = 0.0  # symmetric full grid: sum x*y == 0
        n = float(z.size)
    else:
        zc = np.where(valid, z, 0.0)
        vf = valid.astype(np.float64)
        wx = vf.sum(axis=0)
        wy = vf.sum(axis=1)
        sxy = float(y @ vf @ x)
        n = float(wx.sum())
    if n < 3:
        raise ValueError("fewer than 3 valid points: no plane can be fitted")
    col = zc.sum(axis=0)  # sum over rows, per column
    row = zc.sum(axis=1)
    sz = float(col.sum())
    sx, sy = float(wx @ x), float(wy @ y)
    sxx, syy = float(wx @ (x * x)), float(wy @ (y * y))
    sxz, syz = float(col @ x), float(row @ y)
    m = np.array([[n, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]])
    rhs = np.array([sz, sxz, syz])
    if np.linalg.matrix_rank(m, tol=1e-9 * np.abs(m).max()) < 3:
        raise ValueError(
            "the valid points lie on one line (a single row, column or diagonal): no plane "
            "can be fitted; use level none"
        )
    c, a, b = np.linalg.solve(m, rhs)
    return float(c), float(a), float(b)


def plane_terms(
    z: np.ndarray, dx_um: float = 1.0, dy_um: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares plane as (per-row terms, per-column terms): plane = row + column."""
    c, a, b = fit_plane(z, dx_um, dy_um)
    x, y = _centred_axes(z.shape, dx_um, dy_um)
    return b * y + c, a * x


def remove_plane(z: np.ndarray, dx_um: float = 1.0, dy_um: float = 1.0) -> np.ndarray:
    """`z` minus its least-squares plane (valid points only); NaN stays NaN."""
    per_row, per_col = plane_terms(z, dx_um, dy_um)
    out = z - per_row[:, None]
    out -= per_col[None, :]
    return out


def remove_polynomial(
    z: np.ndarray, degree: int, dx_um: float = 1.0, dy_um: float = 1.0
) -> np.ndarray:
    """`z` minus its least-squares bivariate polynomial of total degree `degree`.

    Uses Legendre polynomials on [-1, 1] for conditioning; valid points only.
    """
    degree = int(degree)
    if degree < 0:
        raise ValueError(f"polynomial degree must be >= 0, got {degree}")
    if degree == 1:
        return remove_plane(z, dx_um, dy_um)
    ny, nx = z.shape
    u = np.linspace(-1.0, 1.0, nx) if nx > 1 else np.zeros(1)
    v = np.linspace(-1.0, 1.0, ny) if ny > 1 else np.zeros(1)
    from numpy.polynomial import legendre as L

    pu = [L.legval(u, np.eye(degree + 1)[i]) for i in range(degree + 1)]
    pv = [L.legval(v, np.eye(degree + 1)[j]) for j in range(degree + 1)]
    terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    valid = np.isfinite(z)
    iy, ix = np.nonzero(valid)
    if iy.size < len(terms):
        raise ValueError(f"fewer valid points ({iy.size}) than polynomial terms ({len(terms)})")
    a = np.empty((iy.size, len(terms)))
    for k, (i, j) in enumerate(terms):
        a[:, k] = pu[i][ix] * pv[j][iy]
    coef, *_ = np.linalg.lstsq(a, z[valid], rcond=None)
    form = np.zeros(z.shape)
    for k, (i, j) in enumerate(terms):
        form += coef[k] * np.outer(pv[j], pu[i])
    return z - form


def level(z: np.ndarray, how: str, dx_um: float = 1.0, dy_um: float = 1.0) -> np.ndarray:
    """Apply the F-operator named `how`: ``"none"``, ``"plane"`` or ``"poly:N"``."""
    how = (how or "none").strip().lower()
    if how == "none":
        return z
    if how == "plane":
        return remove_plane(z, dx_um, dy_um)
    if how.startswith("poly:"):
        try:
            n = int(how.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"level {how!r}: expected poly:N with an integer N") from None
        return remove_polynomial(z, n, dx_um, dy_um)
    raise ValueError(f"unknown levelling {how!r}; expected none, plane or poly:N")
