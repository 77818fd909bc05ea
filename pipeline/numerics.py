"""Small numerical helpers that more than one measurement uses: a robust spread and an exact
distance map.

They sit below every other module of the package (they import numpy and OpenCV only), so
any layer may use them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_SIGMA", "exact_edt", "mad_sigma"]

MAD_TO_SIGMA = 1.482602218505602   # 1 / Phi^-1(3/4): the MAD of a normal sample -> its sigma


def mad_sigma(values: np.ndarray) -> float:
    """Standard deviation estimated as 1.4826 x the median absolute deviation from the median.

    >>> round(mad_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0])), 4)
    1.4826
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0
    return MAD_TO_SIGMA * float(np.median(np.abs(v - np.median(v))))


def exact_edt(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px, float32) of each True pixel of `mask` to the nearest False one.

    OpenCV's exact transform returns the square root of an integer squared distance, but its
    last bit depends on how many threads it ran on; comparisons of the map with itself (local
    maxima, plateaus) then change with the machine. The squared distance is rounded to its
    integer, so the map is the same everywhere (exactly so up to about 1400 px from the
    nearest False pixel, where float32 still tells neighbouring integers apart).

    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> float(exact_edt(m)[2, 2])
    2.0
    """
    import cv2

    d = cv2.distanceTransform(np.ascontiguousarray(mask, dtype=np.uint8), cv2.DIST_L2,
                              cv2.DIST_MASK_PRECISE).astype(np.float64)
    return np.sqrt(np.rint(d * d)).astype(np.float32)

