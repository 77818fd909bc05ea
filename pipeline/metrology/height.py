"""ISO 25178-2 height parameters on the valid points of a surface.

Sa, Sq, Sp, Sv, Sz, Ssk, Sku are computed about the mean of the valid points of the
(already levelled and filtered) scale-limited surface. One pass computes the mean; a
second, blocked pass (cache-sized blocks) accumulates |d|, d^2, d^3, d^4, max and min of
``d = z - mean``, so the cost stays near that of a bare numpy mean/abs/max/min.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["height_parameters", "valid_values"]

_BLOCK = 1 << 13


def valid_values(z: np.ndarray) -> tuple[np.ndarray, float]:
    """The finite values of `z` as a contiguous 1-D float64 array, and their sum.

    No copy is made when every point is valid: a finite sum proves it, so the reduction
    that the mean needs anyway doubles as the validity check.
    """
    flat = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
    total = float(flat.sum())
    if math.isfinite(total):
        return flat, total
    flat = flat[np.isfinite(flat)]
    return flat, float(flat.sum())


def height_parameters(z: np.ndarray) -> dict[str, float]:
    """Height parameters of the valid points of `z`.

    Parameters
    ----------
    z : ndarray
        Heights in micrometres (any shape), NaN where invalid.

    Returns
    -------
    dict
        ``Sa_um, Sq_um, Sp_um, Sv_um, Sz_um, Ssk, Sku, mean_um, n_valid``. Sp and Sv are
        positive: Sp = max - mean, Sv = mean - min, Sz = Sp + Sv. Sku is the kurtosis
        (3 for a Gaussian surface), not the excess. Ssk and Sku are NaN when Sq is 0.

    Raises
    ------
    ValueError
        When `z` has no valid point.
    """
    v, total = valid_values(z)
    n = v.size
    if n == 0:
        raise ValueError("the surface has no valid point")
    mean = total / n
    sa = s2 = s3 = s4 = 0.0
    vmax, vmin = -math.inf, math.inf
    size = min(_BLOCK, n)
    buf = np.empty(size)
    sq = np.empty(size)
    ones = np.ones(size)
    for i in range(0, n, _BLOCK):
        chunk = v[i : i + _BLOCK]
        m = chunk.size
        d = np.subtract(chunk, mean, out=buf[:m])
        hi, lo = d.max(), d.min()
        vmax = hi if hi > vmax else vmax
        vmin = lo if lo < vmin else vmin
        s2 += float(d @ d)
        d2 = np.multiply(d, d, out=sq[:m])
        s3 += float(d2 @ d)
        s4 += float(d2 @ d2)
        sa += float(np.abs(d, out=d) @ ones[:m])
    sq_um = math.sqrt(s2 / n)
    if sq_um > 0:
        ssk = (s3 / n) / sq_um**3
        sku = (s4 / n) / sq_um**4
    else:
        ssk = sku = math.nan
    sp, sv = float(vmax), float(-vmin)
    return {
        "Sa_um": sa / n,
        "Sq_um": sq_um,
        "Sp_um": sp,
        "Sv_um": sv,
        "Sz_um": sp + sv,
        "Ssk": ssk,
        "Sku": sku,
        "mean_um": mean,
        "n_valid": int(n),
    }
