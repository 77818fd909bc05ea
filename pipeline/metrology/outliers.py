"""Outlier (spike) policies for height maps.

A few spike pixels can move Sz tenfold while Sa hardly changes, so the recipe names a
policy and every result reports Sz with and without the points it flags.
"""

from __future__ import annotations

import numpy as np

from pipeline.numerics import MAD_TO_SIGMA

__all__ = ["outlier_mask"]

_MEAN_AD_TO_SIGMA = 1.2533141373155001  # sqrt(pi / 2): mean |x - mu| of a normal -> its sigma


def outlier_mask(
    z: np.ndarray,
    policy: str,
    *,
    n_sigma: float = 6.0,
    sigma: str = "robust",
    material_ratio_pct: float = 0.01,
) -> np.ndarray:
    """Boolean mask of the valid points that `policy` calls outliers.

    Parameters
    ----------
    z : (M, N) ndarray
        Scale-limited surface, micrometres, NaN where invalid.
    policy : {"none", "n_sigma", "material_ratio"}
        ``n_sigma``: ``|z - centre| > n_sigma * s`` with centre and s the median and
        1.4826 * MAD (``sigma="robust"``, not inflated by the spikes themselves; where the
        MAD is 0, 1.2533 * the mean absolute deviation) or the mean and standard deviation
        (``sigma="std"``). ``material_ratio``: points above the
        height of areal material ratio `material_ratio_pct` % or below that of
        100 - `material_ratio_pct` % (the extreme tails of the Abbott curve).

    Returns
    -------
    (M, N) bool ndarray
        False at invalid points.
    """
    valid = np.isfinite(z)
    if policy == "none":
        return np.zeros(z.shape, dtype=bool)
    v = z[valid]  # a copy: the medians below may reorder it
    if policy == "n_sigma":
        if sigma == "robust":
            centre = float(np.median(v, overwrite_input=True))
            np.subtract(v, centre, out=v)
            dev = np.abs(v, out=v)
            s = MAD_TO_SIGMA * float(np.median(dev, overwrite_input=True))
            if s == 0:
                # More than half the points share one value (quantised counts, plateaus):
                # the mean absolute deviation, scaled to a normal sigma, still sees the rest.
                s = _MEAN_AD_TO_SIGMA * float(dev.mean())
        elif sigma == "std":
            centre, s = float(v.mean()), float(v.std())
        else:
            raise ValueError(f"sigma must be 'robust' or 'std', got {sigma!r}")
        del v
        if s == 0:
            return np.zeros(z.shape, dtype=bool)
        return _beyond(z, centre, n_sigma * s, valid)
    if policy == "material_ratio":
        p = float(material_ratio_pct)
        lo, hi = np.percentile(v, [p, 100.0 - p])
        with np.errstate(invalid="ignore"):
            return valid & ((z > hi) | (z < lo))
    raise ValueError(f"unknown outlier policy {policy!r}; expected none, n_sigma or material_ratio")


def _beyond(z: np.ndarray, centre: float, limit: float, valid: np.ndarray) -> np.ndarray:
    """``valid & (|z - centre| > limit)``, row block by row block (no map-sized temporary)."""
    out = np.empty(z.shape, dtype=bool)
    block = 256
    with np.errstate(invalid="ignore"):
        for r0 in range(0, z.shape[0], block):
            d = np.subtract(z[r0:r0 + block], centre)
            np.abs(d, out=d)
            np.greater(d, limit, out=out[r0:r0 + block])
            out[r0:r0 + block] &= valid[r0:r0 + block]
    return out
