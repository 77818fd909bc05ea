"""Independent references for reader tests: plain-numpy statistics and SurfaceTopography."""

from __future__ import annotations

import warnings

import numpy as np

#: SurfaceTopography unit names -> micrometres.
UM = {"m": 1e6, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3}


def raw_stats(z: np.ndarray) -> dict[str, float]:
    """Sa, Sq, Sp, Sv, Sz of the finite points, plain numpy, no levelling."""
    v = z[np.isfinite(z)]
    m = v.mean()
    sp, sv = v.max() - m, m - v.min()
    return {"Sa": np.abs(v - m).mean(), "Sq": np.sqrt(((v - m) ** 2).mean()), "Sp": sp, "Sv": sv, "Sz": sp + sv}


def st_topography(path):
    """SurfaceTopography's reading of a file (its own, independent reader)."""
    with warnings.catch_warnings():  # NuMPI warns that mpi4py is absent
        warnings.simplefilter("ignore", ImportWarning)
        from SurfaceTopography import open_topography
    return open_topography(str(path)).topography()


def st_heights_um(t) -> np.ndarray:
    """SurfaceTopography heights as our (y, x) array in um: ST indexes [x, y], so transpose."""
    h = np.ma.filled(np.ma.asarray(t.heights(), dtype=float), np.nan)
    return h.T * UM[t.unit]
