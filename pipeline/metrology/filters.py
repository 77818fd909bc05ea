"""Areal Gaussian filters per ISO 16610-61, tolerant of invalid (NaN) points.

The weighting function is the Gaussian with ``sigma = lambda * sqrt(ln 2 / 2) / pi``
(about 0.18739 * lambda): its transmission is exactly 50 % at the nesting index `lambda`.

Invalid points and end effects
-------------------------------
Both are handled by normalised convolution: the filter is applied to ``z * w`` and to the
weights ``w`` (1 at valid points, 0 at invalid points and outside the field), and the
mean surface is their ratio. At every valid point the filter is therefore the Gaussian
weighted mean of the valid points within reach, its weights renormalised to sum to one.
Near the field's edges this is the "renormalisation" end-effect correction: no data is
invented beyond the edge, no border is cut away, and a plane stays a plane's mean only
in the interior (a tilted plane is bent within about one nesting index of the edge, as
with every zero-order correction; level with the F-operator first). Invalid points stay
invalid in the output.

Engines
-------
Small kernels (sigma up to a few pixels) are applied directly as separable convolutions
with zero padding (OpenCV). Large kernels (the L-filter) run on a Gaussian pyramid: the
signal is reduced k times by the 5-tap binomial filter, convolved with the remaining
Gaussian of variance ``sigma**2 - 2 * (4**k - 1) / 3`` pixels (the reduction and the
expansion each contribute ``(4**k - 1) / 3``), and expanded back. Composite variance is
exactly sigma**2; the shape differs from a Gaussian by less than 1e-6 in transmission, and
the tests compare it with an exact FFT convolution. Numerator and weights always go
through the same (separable) operator, so a constant is reproduced exactly.

Precision
---------
The mean of the valid points is taken out before filtering and put back after, and the
convolutions run in float32 on what remains: their rounding is about 1e-7 of the
surface's height range (sub-picometre on a micrometre-scale surface), far below any
instrument's resolution, and halves the memory traffic. The output is float64.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "SIGMA_PER_LAMBDA",
    "band_pass",
    "gaussian_lowpass",
    "l_filter",
    "s_filter",
    "sigma_um",
]

SIGMA_PER_LAMBDA = math.sqrt(math.log(2.0) / 2.0) / math.pi  # 0.18739...
_TRUNCATE = 5.0  # kernel half-width in sigmas for direct convolution
_MIN_COARSE_SIGMA = 3.0  # the pyramid stops while the remaining Gaussian spans >= 3 px


def sigma_um(nesting_index_um: float) -> float:
    """The Gaussian's standard deviation for a cut-off (nesting index) in micrometres."""
    return SIGMA_PER_LAMBDA * float(nesting_index_um)


def _kernel(sigma_px: float, max_radius: int) -> np.ndarray:
    # Taps further out than the array is long only ever meet the zero padding.
    r = max(1, min(math.ceil(_TRUNCATE * sigma_px), max_radius))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2)
    return (k / k.sum()).astype(np.float32).reshape(-1, 1)


_IDENTITY = np.ones((1, 1), dtype=np.float32)


def _sep(a: np.ndarray, sx: float, sy: float, rx: int, ry: int) -> np.ndarray:
    """Separable Gaussian with zero padding beyond the array (sigmas in pixels), float32.

    `rx`, `ry` cap the kernel radii: the field's extent, as taps further out only ever
    meet the zero padding. They depend on the field, never on the array blurred, so the
    data and its weights (see `_ones_blur`) always meet the same kernel.
    """
    import cv2

    kx = _kernel(sx, rx) if sx > 0 else _IDENTITY
    ky = _kernel(sy, ry) if sy > 0 else _IDENTITY
    return cv2.sepFilter2D(a, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_CONSTANT)


def _levels(sx: float, sy: float, shape: tuple[int, int]) -> int:
    """How many pyramid reductions the smaller of the two sigmas allows.

    The reduction factor also stays below an eighth of the field's larger side, so that the
    zero margin (four times the factor) never makes the work array more than twice as wide
    as the field, however long the nesting index.
    """
    s = min(sx, sy)
    limit = max(shape) / 8.0
    k = 0
    while True:
        nxt = k + 1
        rest = s * s - 2.0 * (4.0**nxt - 1.0) / 3.0
        if 2.0**nxt > limit or rest <= 0 or math.sqrt(rest) / 2.0**nxt < _MIN_COARSE_SIGMA:
            return k
        k = nxt


def _pyramid_blur(
    a: np.ndarray, sx: float, sy: float, k: int, field: tuple[int, int]
) -> np.ndarray:
    """Gaussian blur (sigmas in pixels) with zero padding, through k pyramid levels."""
    import cv2

    ny, nx = a.shape
    f = 2**k
    # Zero margin wide enough that the pyramid's reflecting borders only ever see zeros.
    m = 4 * f
    py = (-(ny + 2 * m)) % f
    px = (-(nx + 2 * m)) % f
    big = np.zeros((ny + 2 * m + py, nx + 2 * m + px), dtype=np.float32)
    big[m : m + ny, m : m + nx] = a
    sizes = []
    for _ in range(k):
        sizes.append(big.shape)
        big = cv2.pyrDown(big)
    spent = 2.0 * (4.0**k - 1.0) / 3.0
    csx = math.sqrt(sx * sx - spent) / f
    csy = math.sqrt(sy * sy - spent) / f
    big = _sep(big, csx, csy, field[1] // f + 8, field[0] // f + 8)
    for shape in reversed(sizes):
        big = cv2.pyrUp(big, dstsize=(shape[1], shape[0]))
    return big[m : m + ny, m : m + nx]


def _blur(a: np.ndarray, sx: float, sy: float, k: int, field: tuple[int, int]) -> np.ndarray:
    """The blur operator of a field of shape `field`, with k pyramid levels (0: direct)."""
    a = np.asarray(a, dtype=np.float32)
    if k == 0:
        return _sep(a, sx, sy, field[1], field[0])
    return _pyramid_blur(a, sx, sy, k, field)


def _ones_blur(
    shape: tuple[int, int], sx: float, sy: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The blurred weight of a field with no invalid point, as the factors of an outer product.

    The operator is separable (zero padding, binomial reductions and expansions and the
    Gaussian all act on each axis alone), so its response to ones is the outer product of
    its responses to a column and to a row of ones, divided by its response to one point.

    Returns
    -------
    col : (M,) ndarray and row : (N,) ndarray
        ``np.outer(col, row)`` is the blurred weight.
    """
    ny, nx = shape
    row = _blur(np.ones((1, nx)), sx, sy, k, shape)[0].astype(np.float64)
    col = _blur(np.ones((ny, 1)), sx, sy, k, shape)[:, 0].astype(np.float64)
    one = float(_blur(np.ones((1, 1)), sx, sy, k, shape)[0, 0])
    return col / one, row


def _to_float32(a: np.ndarray, ref: float) -> np.ndarray:
    """``a - ref`` computed in float64 and stored as float32, in one pass."""
    out = np.empty(a.shape, dtype=np.float32)
    np.subtract(a, ref, out=out, casting="same_kind")
    return out


class _Field:
    """A height map prepared for filtering: float32 offsets from a reference level, weights.

    ``a`` holds ``z - ref`` at valid points and 0 elsewhere; ``valid`` is None when every
    point is valid (the weights are then separable and never materialised).
    """

    def __init__(self, z: np.ndarray, form: tuple[np.ndarray, np.ndarray] | None = None):
        self.shape = z.shape
        if form is not None:
            # z minus a separable form (per-row + per-column terms, e.g. a least-squares
            # plane), written straight into float32: the residual's mean is the reference.
            per_row, per_col = form
            a = np.empty(z.shape, dtype=np.float32)
            tmp = np.empty((min(64, z.shape[0]), z.shape[1]))
            for r0 in range(0, z.shape[0], 64):  # float64 in cache, float32 out
                t = tmp[: min(64, z.shape[0] - r0)]
                np.subtract(z[r0 : r0 + 64], per_row[r0 : r0 + 64, None], out=t)
                np.subtract(t, per_col[None, :], out=a[r0 : r0 + 64], casting="same_kind")
            self.ref = 0.0
            total = float(a.sum(dtype=np.float64))
            self.valid = None if math.isfinite(total) else np.isfinite(a)
        else:
            ref = float(z.mean())
            self.valid = None if math.isfinite(ref) else np.isfinite(z)
            if self.valid is not None:
                ref = float(z[self.valid].mean())
            self.ref = ref
            a = _to_float32(z, ref)
        self.w = None
        if self.valid is not None:
            self.w = self.valid.astype(np.float32)
            a[~self.valid] = 0.0
        self.a = a

    def lowpass(self, a: np.ndarray, sx: float, sy: float) -> np.ndarray:
        """The normalised Gaussian mean of `a` (float32, 0 at invalid points)."""
        k = _levels(sx, sy, self.shape)
        if self.valid is None:
            num = _blur(a, sx, sy, k, self.shape)
            col, row = _ones_blur(self.shape, sx, sy, k)
            num *= (1.0 / col).astype(np.float32)[:, None]
            num *= (1.0 / row).astype(np.float32)[None, :]
            return num
        num = _blur(a * self.w, sx, sy, k, self.shape)
        den = _blur(self.w, sx, sy, k, self.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            num /= den
        num[~self.valid] = 0.0
        return num

    def result(self, a: np.ndarray, *, add_ref: bool) -> np.ndarray:
        """`a` back in float64 micrometres (plus the reference level), NaN where invalid."""
        out = np.add(a, self.ref if add_ref else 0.0, dtype=np.float64)
        if self.valid is not None:
            out[~self.valid] = np.nan
        return out


def _sigmas(nesting_index_um: float, dx_um: float, dy_um: float) -> tuple[float, float]:
    s = sigma_um(nesting_index_um)
    return s / dx_um, s / dy_um


def gaussian_lowpass(
    z: np.ndarray, dx_um: float, dy_um: float, nesting_index_um: float
) -> np.ndarray:
    """The ISO 16610-61 Gaussian mean surface of `z` at the given nesting index.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres, NaN where invalid.
    dx_um, dy_um : float
        Pixel sizes in micrometres.
    nesting_index_um : float
        The cut-off wavelength (50 % transmission), micrometres.

    Returns
    -------
    (M, N) ndarray
        The low-pass (mean) surface; NaN where `z` is NaN.
    """
    f = _Field(z)
    return f.result(f.lowpass(f.a, *_sigmas(nesting_index_um, dx_um, dy_um)), add_ref=True)


def s_filter(z: np.ndarray, dx_um: float, dy_um: float, lambda_s_um: float) -> np.ndarray:
    """Remove wavelengths shorter than `lambda_s_um` (the S-filter): the low-pass surface."""
    return gaussian_lowpass(z, dx_um, dy_um, lambda_s_um)


def l_filter(z: np.ndarray, dx_um: float, dy_um: float, lambda_c_um: float) -> np.ndarray:
    """Remove wavelengths longer than `lambda_c_um` (the L-filter): `z` minus its mean surface."""
    return band_pass(z, dx_um, dy_um, None, lambda_c_um)


def band_pass(
    z: np.ndarray,
    dx_um: float,
    dy_um: float,
    lambda_s_um: float | None,
    lambda_c_um: float | None,
    *,
    form: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """S-filter then L-filter (the S-L surface); either may be None to skip it.

    Both filters work on one float32 field, so the S-filtered surface is never converted
    back and forth between the two. `form`, (per-row terms, per-column terms), is a
    separable F-operator form (a plane) subtracted on the way in, saving a pass.
    """
    if lambda_s_um and lambda_c_um and lambda_s_um >= lambda_c_um:
        raise ValueError(
            f"lambda_s ({lambda_s_um} um) must be shorter than lambda_c ({lambda_c_um} um)"
        )
    if not lambda_s_um and not lambda_c_um:
        return z if form is None else z - form[0][:, None] - form[1][None, :]
    f = _Field(z, form)
    a = f.a
    if lambda_s_um:
        a = f.lowpass(a, *_sigmas(lambda_s_um, dx_um, dy_um))
    if lambda_c_um:
        a = a - f.lowpass(a, *_sigmas(lambda_c_um, dx_um, dy_um))
    return f.result(a, add_ref=not lambda_c_um)
