"""Porosity, thickness and refusals of a porous layer in an SEM cross-section.

`porosity_from_cross_section` finds the layer (between its top surface and the current
collector or substrate), refuses what is not a measurable layer, and measures the pore area
fraction of the section plane inside it with an uncertainty.

Layer geometry (``_geometry``). A *dense band* is a run of rows (at least ``max(3, rows /
100)``) with almost no dark pixel (``DENSE_DARK_MAX``) and a 5th percentile above the
whole-image Otsu threshold. The collector (or substrate) is a dense band with a porous layer
next to it that is brighter than the layer's solid by at least ``COLLECTOR_MARGIN`` of the
solid/pore contrast (a metal foil; a protective cap, an electrolyte or the milled face of a
trench is not); among several, the brightest. The image is then oriented with the collector
at the foot. Pores and solid are told apart by the local threshold below, only where the
local contrast is at least half the layer's (vacuum and a uniform cap hold neither phase).
Coming out from the collector, full-width rows keep both phases up to the top surface;
beyond it the solid ends (vacuum) or the pores do (a dense cover: cap, electrolyte; a
uniform region brighter than the pores counts as one too), which says what lies above.
The top is then found from the far side as the first row where both phases reach
``TOP_LEVEL`` of their shares in the layer for ``TOP_RUN`` rows: in vertical strips of
``STRIP_PX`` columns first (rows averaged over many particles), then per column within
``TALL_ROWS`` rows of the strips' line, on windows of 3 rows x ``2 TOP_WINDOW + 1`` columns,
median-filtered over ``TOP_WINDOW`` columns. So a tilted or uneven top, a cap on it and
debris beyond a gap are followed. Masked rows take their neighbours' shares; masked columns
take the top of their neighbours and leave the thickness alone. Under a cap darker than
the solid, the cap's pixels next to the layer can fall under the local threshold and read
as pores, and the top then reads high (up to 16 rows, 5 % of the thickness, on the model).
The top found without pixels at the cap's own grey level estimates that shift and the
thickness's U carries it; on the model's covered layers U then holds the thickness error
in 11 of 15 scenes, not all (``covered_layer`` flags such layers).

Phases (``_phases``). A secondary-electron image is brighter near every edge (the edge
effect), darker with depth in a trench, shaded, and shows the particles behind the plane
through the pores ("pore-back", dimmer than the plane's solid). A single threshold between
two global levels reads the solid too large (rims) or pore-back as solid. The threshold here
is local: half-way between the local pore level and the local solid level, both from
normalised Gaussian convolutions (sigma ``LOCAL_SIGMA_PX``) of the pixels on each side of
the previous threshold, iterated from Otsu. Shading and depth darkening, which scale both
levels, cancel; pore-back raises the local pore level where it is.

Rim correction. The remaining bias is the rim: the half-height of a blurred step with a
bright rim lies outside the true edge. The profile of the image across the layer's phase
boundary (grey levels normalised by the local levels, binned by signed distance to the
boundary) is fitted, once per image, with a step blurred by a Gaussian PSF plus an
exponential rim inside it (`pipeline.segmentation.edgefit.rim_offset`); the fitted edge
offset times the boundary length (Cauchy-Crofton) corrects the pore area. On the model's
cross-sections without rims it moves the porosity by at most 0.2 point; with rims it
removes about half of the bias.

Uncertainty (``u_porosity_frac``, k = 1), in quadrature: the method's worst bias on the
realistic model for the particle size found (`METHOD_BIAS`, from
``benchmarks/porosity_accuracy.py``, as a rectangular distribution, so U = 2u is never
smaller than it), and the top surface (the porosities with the top found at half and at
twice ``TOP_LEVEL``, rectangular). The spread between fields of view is added when a sample
is aggregated. ``band`` is the porosity at the local threshold -/+ ``THRESHOLD_STEP`` of the
local contrast: the threshold's leverage, reported (and flagged above 10 points), not an
uncertainty (the bias term covers where the threshold truly sits). Thickness: the mean rows from the top to the collector, its U
from the top's two detection levels, its spread along the layer and half a row at the
collector.

Refusals (MeasurementError, exit 3): no contrast; the whole image, every column of the
layer or the rows next to the collector masked; no collector or substrate, or no porous
layer next to a dense band; a layer under 3 rows; a layer whose grey levels show no two phases (the histogram of the locally normalised grey levels has no
valley between the pore and solid peaks deeper than ``VALLEY_MAX``, or the contrast is under
``MIN_CONTRAST_NOISE`` x the pixel noise); a layer thinner than ``MIN_LAYER_FEATURES``
particle diameters. Particles under ``RESOLVED_PX`` (median
inscribed radius of the solid) are flagged ``under_resolved`` and the uncertainty widened
by ``UNDER_RESOLVED_U``; finer structures have no histogram valley and are refused.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import numpy as np

from pipeline.errors import MeasurementError
from pipeline.ingest.dataarray import refuse_blank, valid_mask
from pipeline.numerics import mad_sigma
from pipeline.resultdict import CrossSectionPorosity
from pipeline.segmentation.edgefit import rim_offset
from pipeline.segmentation.sublayers import inscribed_peaks, sublayers

__all__ = ["METHODS", "porosity_from_cross_section"]

log = logging.getLogger(__name__)

METHODS = ("rim-aware", "mid-median")
DENSE_DARK_MAX = 0.02     # a dense band's rows: at most 2 % of pixels at or below Otsu
COLLECTOR_MARGIN = 0.25   # collector median >= solid median + 0.25 (solid - pore)
TOP_LEVEL = 0.2           # the top surface: where both phases reach 0.2 of their shares in the layer
TOP_WINDOW = 63           # the top surface: windows of 2 x 63 + 1 columns, median over 63
TOP_RUN = 5               # rows the layer's character must hold to start the layer
TALL_ROWS = 15            # the per-column top is looked for within 15 rows of the strips' line
END_LEVEL = 0.05          # beyond the top, full-width rows hold under 5 % of a phase's share
STRIP_PX = 96             # the layer's extent is found in vertical strips this wide
LOCAL_SIGMA_PX = 20.0     # the local pore and solid levels (normalised convolution)
THRESHOLD_STEP = 0.10     # the band: local threshold -/+ 10 % of the local contrast
VALLEY_MAX = 0.75         # two phases: a histogram valley at most 0.75 of the lower peak
VALLEY_SIGMA_PX = 1.5     # the smoothing the valley is looked for on
MIN_CONTRAST_NOISE = 4.0  # solid - pore levels in units of the pixel noise
MIN_LAYER_FEATURES = 3.0  # layer thickness in particle diameters (twice the solid's radius)
RESOLVED_PX = 4.5         # median inscribed radius of the solid under which it is under-resolved
                          # (particles of 2-3.5 px radius, touching, measure 3.6-4.1 px)
UNDER_RESOLVED_U = 0.05   # added to u (k = 1) for under-resolved features
# |bias| of the method on the realistic model (benchmarks/porosity_accuracy.py: worst case
# 1.6 points for particle radii 3-8 px, which measure 6-8 px here, and 1.5 for 8-20 px,
# which measure 13-14 px; scenes of 4-10 px measure 8-10 px and err by up to 1.4 points),
# in porosity fraction, by the median inscribed radius of the solid (px): U is never smaller.
METHOD_BIAS = ((11.0, 0.020), (float("inf"), 0.015))


# --------------------------------------------------------------------------- helpers


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) runs of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def _normconv(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local mean of `values` over the pixels where `weight` is True."""
    import cv2

    w = weight.astype(np.float32)
    num = cv2.GaussianBlur(values.astype(np.float32) * w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return num / np.maximum(den, 1e-6)


def _mean_chord(mask: np.ndarray, region: np.ndarray) -> float:
    """Mean length (px) of the runs of `mask` inside `region`, along rows and columns."""
    total, count = 0, 0
    for a, r in ((mask, region), (mask.T, region.T)):
        m = (a & r).astype(np.int8)
        starts = np.count_nonzero(np.diff(np.pad(m, ((0, 0), (1, 0))), axis=1) == 1)
        total += int(m.sum())
        count += starts
    return total / count if count else float("nan")


def _feature_radius(phase: np.ndarray, region: np.ndarray) -> float:
    """Median inscribed radius (px) of a phase: the median of the maxima of its Euclidean
    distance transform over 7 x 7 neighbourhoods inside `region` (a disc of radius r gives
    r; the 7 px neighbourhood keeps the ridges of overlapping particles from adding small
    values, and specks under 2 px are not particles)."""
    if not (phase & region).any():
        return 0.0
    d, peaks = inscribed_peaks(phase & region, 7, 2.0)
    peaks &= region
    return float(np.median(d[peaks])) if peaks.any() else 0.0


def _crofton(mask: np.ndarray, region: np.ndarray) -> float:
    """Cauchy-Crofton length (px) of the boundary of `mask` inside `region`."""
    p = 0.0
    for s1, s2, w in (((slice(None), slice(1, None)), (slice(None), slice(None, -1)), 1.0),
                      ((slice(1, None), slice(None)), (slice(None, -1), slice(None)), 1.0),
                      ((slice(1, None), slice(1, None)), (slice(None, -1), slice(None, -1)),
                       1 / math.sqrt(2)),
                      ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None)),
                       1 / math.sqrt(2))):
        p += w * np.count_nonzero((mask[s1] != mask[s2]) & region[s1] & region[s2])
    return math.pi / 8.0 * p


# --------------------------------------------------------------------------- geometry


def _dense_bands(g: np.ndarray, valid: np.ndarray, t0: float) -> list[tuple[int, int]]:
    """Runs of rows that are uniformly bright: no pores, 5th percentile above `t0`."""
    ny = g.shape[0]
    n = valid.sum(axis=1)
    dark = ((g <= t0) & valid).sum(axis=1) / np.maximum(n, 1)
    gv = np.where(valid, g, np.nan)
    ok = n > 0
    p5 = np.full(ny, -np.inf)
    p5[ok] = np.nanpercentile(gv[ok], 5, axis=1)
    dense = ok & (dark <= DENSE_DARK_MAX) & (p5 > t0)
    return [r for r in _runs(dense) if r[1] - r[0] >= max(3, ny // 100)]


def _layer_rows(solid_frac: np.ndarray) -> int:
    """Rows of porous layer next to a band (`solid_frac` ordered outward from it): up to
    where the smoothed row solid fraction falls below `TOP_LEVEL` of its median over the
    layer (short rises, debris, ignored); 0 without a layer."""
    from scipy.ndimage import binary_opening, uniform_filter1d

    if solid_frac.size < 3:
        return 0
    fs = uniform_filter1d(solid_frac, min(9, solid_frac.size), mode="nearest")
    fmax = float(np.percentile(fs, 95))
    if fmax < 0.05:
        return 0
    span = max(5, solid_frac.size // 40)

    def extent(level: float) -> int:
        high = binary_opening(fs >= level, np.ones(span, bool)) if fs.size > span else fs >= level
        idx = np.flatnonzero(high)
        return int(idx[-1]) + 1 if idx.size else 0

    n = extent(0.5 * fmax)
    if n < 3:
        return 0
    return extent(TOP_LEVEL * float(np.median(solid_frac[:n])))


def _row_share(phase: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Share of each row's valid pixels in `phase`; rows with none take their neighbours'
    (a masked band, a scale bar, does not end the layer)."""
    n = valid.sum(axis=1)
    share = (phase & valid).sum(axis=1) / np.maximum(n, 1)
    ok = np.flatnonzero(n > 0)
    if 0 < ok.size < n.size:
        share = np.interp(np.arange(n.size), ok, share[ok])
    return share.astype(float)


def _window_share(phase: np.ndarray, valid: np.ndarray, size) -> np.ndarray:
    """Share of the valid pixels of each window (`size`, rows x columns) in `phase`; 0 where
    a window holds no valid pixel."""
    from scipy.ndimage import uniform_filter

    num = uniform_filter((phase & valid).astype(np.float32), size, mode="nearest")
    den = uniform_filter(valid.astype(np.float32), size, mode="nearest")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)


def _first_from_far(char: np.ndarray, approx: np.ndarray, far: int, stop: int,
                    level: float, reach: int = TALL_ROWS, smooth: bool = True) -> np.ndarray:
    """Per column, the first row from ``approx - TALL_ROWS`` (not before `far`) to
    ``approx + reach`` where `char` reaches `level` for `TOP_RUN` rows (`approx` where it
    never does), median-filtered over `TOP_WINDOW` columns when `smooth`."""
    from scipy.ndimage import binary_opening, median_filter

    nx = char.shape[1]
    offs = np.arange(-TALL_ROWS, reach + 1)
    rows = np.clip(approx[None, :] + offs[:, None], far, max(stop - 1, far))
    hit = binary_opening(char[rows, np.arange(nx)[None, :]] >= level, np.ones((TOP_RUN, 1), bool))
    first = np.where(hit.any(axis=0), rows[hit.argmax(axis=0), np.arange(nx)], approx)
    return median_filter(first, size=min(TOP_WINDOW, first.size), mode="nearest") if smooth else first


def _layer_candidates(g: np.ndarray, valid: np.ndarray, bands: list[tuple[int, int]], t0: float,
                      path) -> tuple[float, list[dict[str, Any]]]:
    """(the solid/pore threshold of the image without its dense bands, the porous layers next
    to the bands): each candidate a dict of ``band``, ``side`` ("above"/"below"), ``n``
    (rows) and ``rows`` (a slice). Raises MeasurementError when no band has a layer."""
    ny = g.shape[0]
    rest = ~np.zeros(ny, bool)
    for b0, b1 in bands:
        rest[b0:b1] = False
    t_rest = _otsu(g[rest[:, None] & valid]) if (rest[:, None] & valid).any() else t0
    solid_rows = _row_share(g > t_rest, valid)
    candidates = []
    for b0, b1 in bands:
        for side in ("above", "below"):
            frac = solid_rows[:b0][::-1] if side == "above" else solid_rows[b1:]
            n = _layer_rows(frac)
            if n >= 3:
                rows = slice(b0 - n, b0) if side == "above" else slice(b1, b1 + n)
                candidates.append({"band": (b0, b1), "side": side, "n": n, "rows": rows})
    if not candidates:
        raise MeasurementError(path, f"no porous layer next to the dense band(s) at rows "
                               f"{', '.join(f'{a}-{b - 1}' for a, b in bands)}: no current "
                               "collector with a layer on it")
    return t_rest, candidates


def _collector(g: np.ndarray, valid: np.ndarray, bands: list[tuple[int, int]],
               candidates: list[dict[str, Any]], t_rest: float, path) -> dict[str, Any]:
    """The candidate whose band is the collector: a band brighter than the solid of the layer
    next to it by `COLLECTOR_MARGIN` of the solid/pore contrast, the brightest (then the
    thickest layer) among several. Raises MeasurementError when no band is."""
    band_level = {b: float(np.median(g[b[0]:b[1]][valid[b[0]:b[1]]])) for b in bands}
    good = []
    for c in candidates:
        vals = g[c["rows"]][valid[c["rows"]]]
        solid_med = float(np.median(vals[vals > t_rest])) if (vals > t_rest).any() else t_rest
        pore_med = float(np.median(vals[vals <= t_rest])) if (vals <= t_rest).any() else t_rest
        c["solid_level"], c["pore_level"] = solid_med, pore_med
        if band_level[c["band"]] >= solid_med + COLLECTOR_MARGIN * (solid_med - pore_med):
            good.append(c)
    if not good:
        c = max(candidates, key=lambda c: c["n"])
        raise MeasurementError(path, f"no current collector or substrate: the dense band at rows "
                               f"{c['band'][0]}-{c['band'][1] - 1} (median grey "
                               f"{band_level[c['band']]:.0f}) is not brighter than the solid "
                               f"next to it ({c['solid_level']:.0f}); it is not a metal foil "
                               "(a cap, an electrolyte or a milled face?)")
    return max(good, key=lambda c: (band_level[c["band"]], c["n"]))


def _orient(g: np.ndarray, valid: np.ndarray, bands: list[tuple[int, int]],
            best: dict[str, Any]) -> tuple[bool, np.ndarray, np.ndarray, int, int, bool]:
    """(flip, oriented image, oriented valid mask, the collector's first oriented row, the far
    row, whether a dense band lies beyond the layer): the image turned so that the collector
    lies at the foot, and the far side of the layer (the next dense band beyond it, a cover,
    or the image's edge)."""
    ny = g.shape[0]
    b0, b1 = best["band"]
    flip = best["side"] == "below"   # orient: collector at the foot (layer above it)
    go = g[::-1] if flip else g
    vo = valid[::-1] if flip else valid
    c0 = ny - b1 if flip else b0      # the collector's first row in the oriented image
    # the far side: the next dense band beyond the layer (a cover), or the image's edge
    covers = [((ny - e) if flip else s, (ny - s) if flip else e) for s, e in bands if (s, e) != (b0, b1)]
    far = max((c[1] for c in covers if c[1] <= c0), default=0)
    band_beyond = any(c[1] <= c0 for c in covers)
    return flip, go, vo, c0, far, band_beyond


def _local_phases(go: np.ndarray, vo: np.ndarray, far: int, c0: int, n_layer: int, path):
    """(region, local pore level, local solid level, core rows, solid, pore) of the oriented
    image between the far row and the collector: pores and solid only where the local
    contrast is at least half the layer's next to the collector (the core rows). Raises
    MeasurementError when the core rows are all masked."""
    region = np.zeros_like(vo)
    region[far:c0] = vo[far:c0]
    # local pores / solid threshold (shading cancels), where the local contrast is that of
    # the layer: a uniform region (vacuum, a cap) has none and holds neither phase
    _, t_loc, p_loc, s_loc = _phases(go, region)
    n_core = max(10, n_layer // 3)
    core = slice(max(c0 - n_core, far), c0)
    if not region[core].any():
        raise MeasurementError(path, f"the rows next to the collector (rows {core.start}-"
                               f"{core.stop - 1} from it) are all masked: no layer to measure")
    contrast = s_loc - p_loc
    zone = region & (contrast >= 0.5 * float(np.median(contrast[core][region[core]])))
    solid = (go > t_loc) & zone
    pore = (go <= t_loc) & zone
    return region, p_loc, s_loc, core, solid, pore


def _phase_shares(solid: np.ndarray, pore: np.ndarray, vo: np.ndarray,
                  extent: slice) -> tuple[float, float]:
    """(pore share, solid share) of the valid pixels of the layer's rows `extent`, each at
    least 1e-3: the references the phases' shares elsewhere are measured against."""
    p_ref = max(float(pore[extent].sum()) / max(float(vo[extent].sum()), 1.0), 1e-3)
    s_ref = max(float(solid[extent].sum()) / max(float(vo[extent].sum()), 1.0), 1e-3)
    return p_ref, s_ref


def _layer_end(solid: np.ndarray, pore: np.ndarray, vo: np.ndarray, far: int, c0: int,
               s_ref: float, p_ref: float) -> tuple[int, str]:
    """(the layer's highest row, about; the cover: "dense" when the pores end before the
    solid, else "none"): coming out from the collector, where full-width rows lose a phase
    (under `END_LEVEL` of its share for `TOP_RUN` rows)."""
    from scipy.ndimage import uniform_filter

    rows_o = slice(far, c0)
    s_row = uniform_filter(_row_share(solid[rows_o], vo[rows_o]), 5, mode="nearest")[::-1] / s_ref
    p_row = uniform_filter(_row_share(pore[rows_o], vo[rows_o]), 5, mode="nearest")[::-1] / p_ref
    run = np.ones(TOP_RUN)
    no_solid = np.convolve(s_row < END_LEVEL, run, "valid") == TOP_RUN
    no_pore = np.convolve(p_row < END_LEVEL, run, "valid") == TOP_RUN
    end_s = int(np.argmax(no_solid)) if no_solid.any() else c0 - far
    end_p = int(np.argmax(no_pore)) if no_pore.any() else c0 - far
    cover = "dense" if end_p < end_s else "none"
    end = c0 - min(end_s, end_p)                   # the layer's highest row, about
    return end, cover


def _dense_beyond(go: np.ndarray, vo: np.ndarray, p_loc: np.ndarray, s_loc: np.ndarray,
                  region: np.ndarray, core: slice, far: int, end: int, band_beyond: bool) -> bool:
    """True when a dense cover lies beyond the layer's end: the layer reaches the dense band
    beyond it, or the region beyond is uniform and brighter than the pores."""
    if band_beyond and end - far <= TALL_ROWS:
        return True   # the layer reaches the dense band beyond it
    if end - TOP_RUN > far:
        # a uniform region beyond (no local contrast, or read as pores): a cover is brighter
        # than the pores, vacuum is not
        beyond = go[max(end - 3 * TOP_RUN, far):end - TOP_RUN][vo[max(end - 3 * TOP_RUN, far):end - TOP_RUN]]
        lp = float(np.median(p_loc[core][region[core]]))
        ls = float(np.median(s_loc[core][region[core]]))
        if beyond.size and float(np.median(beyond)) > lp + 0.3 * (ls - lp):
            return True
    return False


def _both_phases(solid: np.ndarray, pores: np.ndarray, vo: np.ndarray, s_ref: float, p_ref: float,
                 edges: np.ndarray | None, rows: int, cols: int | None) -> np.ndarray:
    """Per window (rows x cols valid pixels, or, when `cols` is None, rows x a strip's between
    `edges`), the lesser of the solid and pore shares relative to the layer's: 0 where either
    phase is missing."""
    out = []
    for phase, ref in ((solid, s_ref), (pores, p_ref)):
        if cols is None:
            sh = np.stack([_window_share(phase[:, a:b], vo[:, a:b], (rows, b - a))[:, (b - a) // 2]
                           for a, b in itertools.pairwise(edges)], 1)
        else:
            sh = _window_share(phase, vo, (rows, cols))
        out.append(sh / ref)
    return np.minimum(*out)


def _top_surface(solid: np.ndarray, pore: np.ndarray, vo: np.ndarray, s_ref: float, p_ref: float,
                 start: int, c0: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top rows, top rows at half the level, top rows at twice the level) per column of the
    oriented image: first in vertical strips, then per column near the strips' line."""
    nx = solid.shape[1]
    # the top: coming from the far side, where both phases reach TOP_LEVEL of their shares in
    # the layer (vacuum lacks solid, a cover lacks pores or reads as pores throughout), first
    # in vertical strips (rows averaged over many particles), then per column near it
    n_strips = max(1, nx // STRIP_PX)
    edges = np.linspace(0, nx, n_strips + 1).astype(int)
    strip_top = _first_from_far(_both_phases(solid, pore, vo, s_ref, p_ref, edges, 5, None),
                                np.full(n_strips, start + TALL_ROWS), start, c0,
                                TOP_LEVEL, reach=c0 - start, smooth=False)
    centres = 0.5 * (edges[:-1] + edges[1:])
    approx = np.rint(np.interp(np.arange(nx), centres, strip_top)).astype(int)
    thin = _both_phases(solid, pore, vo, s_ref, p_ref, edges, 3, 2 * w + 1)
    top_o = _first_from_far(thin, approx, start, c0, TOP_LEVEL)
    top_lo = _first_from_far(thin, approx, start, c0, 0.5 * TOP_LEVEL)
    top_hi = _first_from_far(thin, approx, start, c0, 2.0 * TOP_LEVEL)
    return top_o, top_lo, top_hi


def _cover_shift(go: np.ndarray, vo: np.ndarray, solid: np.ndarray, pore: np.ndarray,
                 s_ref: float, p_ref: float, top_o: np.ndarray, far: int, end: int, start: int,
                 c0: int, w: int) -> np.ndarray:
    """Per column, the rows (0 to 2 `TALL_ROWS`) by which the top may sit too high under a
    dense cover; zeros when the cover's own grey level cannot be sampled."""
    nx = go.shape[1]
    cover_shift = np.zeros(nx)
    # a cover darker than the solid can read as pores next to the layer and lift the top
    # into it: the top found without pixels at the cover's own grey level (well beyond
    # the top) estimates that shift, up to 2 TALL_ROWS rows (it also drops real pores of
    # that level, so it widens U rather than moving the top)
    deep = slice(max(end - 2 * TALL_ROWS - 4 * TOP_RUN, far), max(end - 2 * TALL_ROWS, far))
    cv = go[deep][vo[deep]]
    if cv.size >= 100:
        med = float(np.median(cv))
        spread = 3.0 * mad_sigma(cv)
        strict = _first_from_far(_both_phases(solid, pore & (np.abs(go - med) > spread), vo, s_ref,
                                              p_ref, None, 3, 2 * w + 1),
                                 top_o, start, c0, TOP_LEVEL, reach=2 * TALL_ROWS)
        cover_shift = np.clip(strict - top_o, 0, 2 * TALL_ROWS).astype(float)
    return cover_shift


def _analysed_columns(top_o: np.ndarray, top_lo: np.ndarray, top_hi: np.ndarray, vo: np.ndarray,
                      c0: int, path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(columns with valid pixels in the layer, top rows, top rows at half and at twice the
    level), the masked columns' tops interpolated from their neighbours'. Raises
    MeasurementError when every column is masked."""
    ny, nx = vo.shape
    # columns with no valid pixel between the top and the collector say nothing of the top
    rows = np.arange(ny)[:, None]
    columns = ((rows >= top_o[None, :]) & (rows < c0) & vo).any(axis=0)
    if not columns.any():
        raise MeasurementError(path, "every column of the layer is masked")
    if not columns.all():
        idx = np.flatnonzero(columns)
        top_o, top_lo, top_hi = (np.rint(np.interp(np.arange(nx), idx, t[idx])).astype(int)
                                 for t in (top_o, top_lo, top_hi))
    return columns, top_o, top_lo, top_hi


def _geometry(g: np.ndarray, valid: np.ndarray, path) -> dict[str, Any]:
    """The layer of an oriented-or-not image: collector band, side, per-column top rows
    (in the image's own rows), cover band. Raises MeasurementError without a collector."""
    ny, nx = g.shape
    t0 = _otsu(g[valid])
    bands = _dense_bands(g, valid, t0)
    if not bands:
        raise MeasurementError(path, "no current collector or substrate: no band of >= "
                               f"{max(3, ny // 100)} rows across the image that is uniformly "
                               "bright, without pores")
    t_rest, candidates = _layer_candidates(g, valid, bands, t0, path)
    best = _collector(g, valid, bands, candidates, t_rest, path)
    b0, b1 = best["band"]
    flip, go, vo, c0, far, band_beyond = _orient(g, valid, bands, best)
    # the layer is where both phases are seen: above it lies vacuum (no solid) or a dense
    # cover (no pores)
    w = min(TOP_WINDOW, nx)
    region, p_loc, s_loc, core, solid, pore = _local_phases(go, vo, far, c0, best["n"], path)
    # from the collector outward, full-width rows keep both phases up to the top; beyond it
    # the solid ends (vacuum) or the pores do (a dense cover: cap, electrolyte)
    extent = slice(max(c0 - best["n"], far), c0)
    p_ref, s_ref = _phase_shares(solid, pore, vo, extent)
    end, cover = _layer_end(solid, pore, vo, far, c0, s_ref, p_ref)
    if _dense_beyond(go, vo, p_loc, s_loc, region, core, far, end, band_beyond):
        cover = "dense"
    start = max(end - TOP_RUN, far)
    top_o, top_lo, top_hi = _top_surface(solid, pore, vo, s_ref, p_ref, start, c0, w)
    cover_shift = np.zeros(nx)
    if cover == "dense":
        cover_shift = _cover_shift(go, vo, solid, pore, s_ref, p_ref, top_o, far, end, start, c0, w)
    columns, top_o, top_lo, top_hi = _analysed_columns(top_o, top_lo, top_hi, vo, c0, path)
    top = (ny - 1 - top_o) if flip else top_o    # the layer's far edge in image rows
    return {"collector": (b0, b1), "side": "top" if flip else "bottom", "flip": flip,
            "c0": c0, "top_o": top_o, "cover": cover, "top_rows": top, "top_lo": top_lo,
            "top_hi": top_hi, "columns": columns, "cover_shift": cover_shift}


def _layer_mask(geo: dict[str, Any], shape) -> np.ndarray:
    """The layer's pixels in image rows: from each column's top row to the collector."""
    ny, _ = shape
    rows = np.arange(ny)[:, None]
    inside = (rows >= geo["top_o"][None, :]) & (rows < geo["c0"])
    return inside[::-1] if geo["flip"] else inside


# --------------------------------------------------------------------------- phases


def _phases(g: np.ndarray, layer: np.ndarray):
    """(solid mask, local threshold, local pore level, local solid level) in the layer."""
    t = np.full(g.shape, _otsu(g[layer]), np.float32)
    for _ in range(4):
        solid = (g > t) & layer
        pore = (g <= t) & layer
        s_loc = _normconv(g, solid, LOCAL_SIGMA_PX)
        p_loc = _normconv(g, pore, LOCAL_SIGMA_PX)
        t = 0.5 * (s_loc + p_loc)
    return (g > t) & layer, t, p_loc, s_loc


def _valley_ratio(z: np.ndarray) -> float:
    """How deep the valley between the pore and solid peaks of the locally normalised grey
    levels `z` (0 pores, 1 solid) is: the lowest histogram density between the two peaks
    over the lower peak (60 bins over -1..2, smoothed over 3). A two-phase layer has a clear
    valley (< 0.6 on the realistic model with features of 3 px radius and more); a unimodal
    field has none (1)."""
    h, e = np.histogram(z, bins=60, range=(-1.0, 2.0))
    h = np.convolve(h.astype(float), np.ones(3) / 3.0, mode="same")
    c = 0.5 * (e[1:] + e[:-1])
    i0 = int(np.argmax(np.where(c < 0.5, h, -1.0)))
    i1 = int(np.argmax(np.where(c >= 0.5, h, -1.0)))
    low = min(h[i0], h[i1])
    if low <= 0:
        return 1.0
    return float(h[i0:i1 + 1].min() / low)


def _noise_sigma(img: np.ndarray, region: np.ndarray) -> float:
    """Pixel noise from the cross difference of 2 x 2 blocks inside `region`."""
    a = img.astype(np.float64)
    d = (a[:-1, :-1] - a[:-1, 1:] - a[1:, :-1] + a[1:, 1:]) / 2.0
    r = region[:-1, :-1] & region[1:, 1:] & region[:-1, 1:] & region[1:, :-1]
    v = d[r]
    if v.size < 16:
        return 0.0
    return mad_sigma(v)


def _method_bias(radius_px: float) -> float:
    for limit, bias in METHOD_BIAS:
        if radius_px < limit:
            return bias
    return METHOD_BIAS[-1][1]


# --------------------------------------------------------------------------- entry point


def _checked(sem):
    """(source path, image, grey scale: 257 for 16-bit) of a 2-D uint8/uint16 image that is
    not blank; MeasurementError or UnreadableInput otherwise."""
    src = sem.attrs.get("source_path")
    img = np.asarray(sem.values)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise MeasurementError(src, f"cross-section must be a 2-D uint8/uint16 image, got "
                                    f"{img.dtype} with shape {img.shape}")
    refuse_blank(sem)
    return src, img, 257.0 if img.dtype == np.uint16 else 1.0


def porosity_from_cross_section(sem, *, method: str = "rim-aware",
                                smooth_sigma_px: float = 1.0) -> dict[str, Any]:
    """Pore area fraction of a porous layer on a current collector in an SEM cross-section.

    Parameters
    ----------
    sem : xarray.DataArray
        uint8/uint16 SEM image, dims ("y", "x"). A pixel size is not needed for the
        porosity (a ratio); the thickness is reported only when it is known.
    method : {"rim-aware", "mid-median"}
        The method of the module docstring (default), or "mid-median" for comparison:
        collector as the longest uniformly bright band, top surface by rows, one iterated
        mid-median threshold (`_porosity_mid_median`).
    smooth_sigma_px : float
        Gaussian smoothing (px) of the image the layer and the phases are found on.

    Returns
    -------
    dict
        ``porosity_frac``, ``u_porosity_frac`` (k = 1) and ``U_porosity_frac`` (k = 2),
        ``uncertainty`` (its components), ``band`` [lo, hi] (the threshold band),
        ``layer_top_row``, ``layer_bottom_row`` (inclusive image rows of the layer's mean top
        and its last row at the collector, top < bottom), ``collector_side``
        ("top"/"bottom": where the collector lies), ``collector_rows``, ``thickness_px``,
        ``thickness_um`` and ``U_thickness_um`` (None without pixel size), ``feature_px``
        (median inscribed radii and mean chords of solid and pores), ``rim`` (the fitted edge
        model), ``sublayers`` (`pipeline.segmentation.sublayers.sublayers`), ``threshold``
        (median local threshold, grey levels), ``method``, ``flags``.

    Raises
    ------
    UnreadableInput
        A blank image (`pipeline.ingest.dataarray.refuse_blank`).
    MeasurementError
        No contrast; no collector or substrate; no layer on it; a layer without two phases;
        a layer thinner than `MIN_LAYER_FEATURES` particle diameters.

    Examples
    --------
    >>> import pipeline
    >>> r = porosity_from_cross_section(pipeline.read("sample_images/embodiment-1/xsec-01.tif"))
    >>> round(r["porosity_frac"], 2), r["U_porosity_frac"] < 0.05
    (0.36, True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if method == "mid-median":
        return _porosity_mid_median(sem, smooth_sigma_px=smooth_sigma_px)
    src, raw, g, valid = _smoothed_image(sem, smooth_sigma_px)
    flags: list[str] = []
    geo = _geometry(g, valid, src)
    layer = _layer_mask(geo, g.shape) & valid
    cols = geo["columns"]   # the columns with valid pixels in the layer
    n_rows = (geo["c0"] - geo["top_o"])[cols].astype(float)
    if layer.sum() < 100 or np.median(n_rows) < 3:
        raise MeasurementError(src, "the layer on the collector is less than 3 rows thick")
    solid, t, p_loc, s_loc = _phases(g, layer)
    contrast = np.maximum(s_loc - p_loc, 1e-6)
    _refuse_single_phase(raw, layer, p_loc, contrast, src)
    chord_solid, chord_pore, r_solid, r_pore = _feature_sizes(solid, layer)
    thickness_px = float(np.mean(n_rows))
    _refuse_few_features(thickness_px, r_solid, src)
    area = float(layer.sum())
    porosity0 = 1.0 - float(solid.sum()) / area

    rim = rim_offset(raw, solid, layer, p_loc, s_loc)
    perimeter = _crofton(solid, layer)
    porosity = float(np.clip(porosity0 - rim["offset_px"] * perimeter / area, 0.0, 1.0))
    if abs(rim["offset_px"]) >= rim["offset_limit_px"]:
        flags.append("rim_fit_at_limit")
    band = _threshold_band(g, t, contrast, layer, area, porosity, porosity0)
    if band[1] - band[0] > 0.10:
        flags.append("threshold_sensitive")
    comps, u = _porosity_uncertainty(g > t, valid, geo, r_solid, flags)
    u_top_px = _top_position_u_px(geo, n_rows)

    orient = (lambda a: a[::-1]) if geo["flip"] else (lambda a: a)
    layers = sublayers(orient(solid), geo["top_o"], geo["c0"], valid=orient(valid),
                       columns=cols, u_top_px=u_top_px)
    if porosity < 0.01 or porosity > 0.99:
        flags.append("porosity_at_limit")
    if geo["cover"] == "dense":
        flags.append("covered_layer")
    thickness_um, U_thickness_um = _thickness_um(sem, thickness_px, u_top_px, flags)
    if not valid.all():
        flags.append("masked_regions_excluded")
    top_i, bottom_i = _layer_image_rows(geo)
    log.debug("cross-section: collector %s, layer %d-%d, porosity %.4f (rim offset %.3f px)",
              geo["collector"], top_i, bottom_i, porosity, rim["offset_px"])
    return CrossSectionPorosity({
        "porosity_frac": float(porosity),
        "u_porosity_frac": float(u),
        "U_porosity_frac": float(2.0 * u),
        "uncertainty": {k: float(v) for k, v in comps.items()},
        "band": [float(b) for b in band],
        "layer_top_row": int(top_i),
        "layer_bottom_row": int(bottom_i),
        "collector_side": geo["side"],
        "collector_rows": [int(geo["collector"][0]), int(geo["collector"][1] - 1)],
        "thickness_px": thickness_px,
        "thickness_um": thickness_um,
        "U_thickness_um": U_thickness_um,
        "feature_px": {"solid_radius": r_solid, "pore_radius": r_pore,
                       "solid_chord": float(chord_solid), "pore_chord": float(chord_pore)},
        "rim": rim,
        "sublayers": layers,
        "threshold": float(np.median(t[layer])),
        "method": "rim-aware: collector = bright dense band, top surface per column, local "
                  "half-height threshold, rim offset fitted on the edge profile",
        "flags": flags,
    })


def _smoothed_image(sem, smooth_sigma_px: float):
    """(source path, image as float32, the image smoothed by a Gaussian of `smooth_sigma_px`,
    valid mask) of a cross-section with contrast. Raises MeasurementError for an image wholly
    masked or without contrast (UnreadableInput for a blank one)."""
    import cv2

    src, img, scale = _checked(sem)
    raw = img.astype(np.float32)
    g = cv2.GaussianBlur(raw, (0, 0), smooth_sigma_px) if smooth_sigma_px > 0 else raw
    valid = valid_mask(sem)
    if not valid.any():
        raise MeasurementError(src, "the whole cross-section is masked")
    p_lo, p_hi = np.percentile(g[valid], [0.5, 99.5])
    if p_hi - p_lo < 5 * scale:
        raise MeasurementError(src, f"cross-section has no contrast (grey levels {p_lo:.0f}-"
                                    f"{p_hi:.0f}); no layer or current collector is visible")
    return src, raw, g, valid


def _refuse_single_phase(raw: np.ndarray, layer: np.ndarray, p_loc: np.ndarray,
                         contrast: np.ndarray, src) -> None:
    """Returns None when the layer shows two phases; raises MeasurementError when its locally
    normalised grey levels have no histogram valley deeper than `VALLEY_MAX` or its contrast
    is under `MIN_CONTRAST_NOISE` x the pixel noise."""
    import cv2

    gv = cv2.GaussianBlur(raw, (0, 0), VALLEY_SIGMA_PX)
    valley = _valley_ratio(((gv - p_loc) / contrast)[layer])
    noise = _noise_sigma(raw, layer)
    c_med = float(np.median(contrast[layer]))
    if valley > VALLEY_MAX or (noise > 0 and c_med < MIN_CONTRAST_NOISE * noise):
        raise MeasurementError(src, "the layer's grey levels show no two phases (pores and "
                               f"solid): histogram valley {valley:.2f} of its lower peak (> "
                               f"{VALLEY_MAX}) or contrast {c_med:.1f} < {MIN_CONTRAST_NOISE:g} x "
                               f"noise {noise:.1f}; not a porous layer, or its pores and "
                               "particles are finer than the image resolves")


def _feature_sizes(solid: np.ndarray, layer: np.ndarray) -> tuple[float, float, float, float]:
    """(mean chord of the solid, mean chord of the pores, median inscribed radius of the
    solid, of the pores), in pixels, inside the layer."""
    chord_solid = _mean_chord(solid, layer)
    chord_pore = _mean_chord(~solid & layer, layer)
    r_solid = _feature_radius(solid, layer)
    r_pore = _feature_radius(~solid & layer, layer)
    return chord_solid, chord_pore, r_solid, r_pore


def _refuse_few_features(thickness_px: float, r_solid: float, src) -> None:
    """Returns None when the layer is at least `MIN_LAYER_FEATURES` particle diameters thick;
    raises MeasurementError otherwise."""
    if thickness_px < MIN_LAYER_FEATURES * 2.0 * r_solid:
        raise MeasurementError(src, f"the layer ({thickness_px:.0f} px) is thinner than "
                               f"{MIN_LAYER_FEATURES:g} particle diameters (median particle "
                               f"section {2 * r_solid:.1f} px); its porosity would be that of a "
                               "few particles")


def _threshold_band(g: np.ndarray, t: np.ndarray, contrast: np.ndarray, layer: np.ndarray,
                    area: float, porosity: float, porosity0: float) -> list[float]:
    """[lo, hi]: the porosities at the local threshold -/+ `THRESHOLD_STEP` of the local
    contrast, moved by the rim correction (`porosity` - `porosity0`, the porosity with and
    without it) and clipped to 0..1."""
    band = [1.0 - float(((g > t + THRESHOLD_STEP * contrast) & layer).sum()) / area,
            1.0 - float(((g > t - THRESHOLD_STEP * contrast) & layer).sum()) / area]
    return sorted(float(np.clip(b + porosity - porosity0, 0.0, 1.0)) for b in band)


def _porosity_uncertainty(solid_all: np.ndarray, valid: np.ndarray, geo: dict[str, Any],
                          r_solid: float, flags: list[str]) -> tuple[dict[str, float], float]:
    """(the components of the porosity's standard uncertainty, their quadrature sum u, k = 1):
    the top surface, the method's bias and, for under-resolved features (flagged in
    `flags`), `UNDER_RESOLVED_U`."""
    # the top surface: its detection level halved and doubled
    u_top = _top_sensitivity(solid_all, valid, geo)
    # the method's worst bias on the realistic model, as a rectangular distribution, by the
    # particles' section size (pores between touching particles are crevices: not a size)
    u_bias = _method_bias(r_solid) / math.sqrt(3)
    comps = {"method_bias": u_bias, "top_surface": u_top}
    if r_solid < RESOLVED_PX:
        flags.append(f"under_resolved: median feature radius {r_solid:.1f} px < {RESOLVED_PX} px")
        comps["under_resolved"] = UNDER_RESOLVED_U
    u = math.sqrt(sum(v * v for v in comps.values()))
    return comps, u


def _top_position_u_px(geo: dict[str, Any], n_rows: np.ndarray) -> float:
    """Standard uncertainty (px) of the top surface's position: its detection level, its
    spread along the layer and, under a dense cover, its possible shift into the cover."""
    cols = geo["columns"]
    # the top surface's position (px): its detection (levels halved and doubled, a
    # rectangular distribution) and its spread along the layer (standard error over
    # independent windows of TOP_WINDOW columns)
    u_level = float(np.mean(np.abs(geo["top_hi"] - geo["top_lo"])[cols])) / (2 * math.sqrt(3))
    u_spread = float(np.std(n_rows)) / math.sqrt(max(n_rows.size / TOP_WINDOW, 1.0))
    # under a dense cover, the top may sit up to `cover_shift` rows too high (one-sided)
    u_cover = float(np.mean(geo["cover_shift"][cols])) / math.sqrt(3)
    return math.sqrt(u_level ** 2 + u_spread ** 2 + u_cover ** 2)


def _thickness_um(sem, thickness_px: float, u_top_px: float,
                  flags: list[str]) -> tuple[float | None, float | None]:
    """(thickness, its expanded uncertainty U, k = 2) in micrometres; (None, None) and a
    ``no_pixel_size`` flag in `flags` without a pixel size."""
    ps = sem.attrs.get("pixel_size_um")
    thickness_um = U_thickness_um = None
    if ps:
        py = float(ps["y"])
        thickness_um = thickness_px * py
        U_thickness_um = 2.0 * math.hypot(u_top_px, 0.5) * py   # half a row at the collector
    else:
        flags.append("no_pixel_size")
    return thickness_um, U_thickness_um


def _layer_image_rows(geo: dict[str, Any]) -> tuple[int, int]:
    """(first, last) image rows of the layer: its mean top row and its last row at the
    collector, top < bottom."""
    top_row = float(np.mean(geo["top_rows"][geo["columns"]]))
    if geo["flip"]:
        top_i, bottom_i = geo["collector"][1], round(top_row)
    else:
        top_i, bottom_i = round(top_row), geo["collector"][0] - 1
    return top_i, bottom_i


def _top_sensitivity(solid_all: np.ndarray, valid: np.ndarray, geo: dict[str, Any]) -> float:
    """Standard uncertainty of the porosity from the top surface's position: the porosities
    with the top found at half and at twice its detection level span a rectangular
    distribution."""
    ny = solid_all.shape[0]
    rows = np.arange(ny)[:, None]
    out = []
    for top_o in (geo["top_lo"], geo["top_hi"]):
        m = (rows >= top_o[None, :]) & (rows < geo["c0"])
        m = (m[::-1] if geo["flip"] else m) & valid
        if m.any():
            out.append(1.0 - float((solid_all & m).sum()) / float(m.sum()))
    return abs(out[1] - out[0]) / (2 * math.sqrt(3)) if len(out) == 2 else 0.0


# --------------------------------------------------------------------------- mid-median (comparison)


def _midpoint_threshold(values: np.ndarray, start: float) -> float:
    """Iterate T = (median below T + median above T) / 2 from `start` (an area-preserving
    threshold for blurred edges between two phases, unlike Otsu whose result shifts with
    the phases' area ratio)."""
    t = start
    for _ in range(20):
        lo, hi = values[values <= t], values[values > t]
        if lo.size == 0 or hi.size == 0:
            break
        new = 0.5 * (float(np.median(lo)) + float(np.median(hi)))
        if abs(new - t) < 1e-3:
            t = new
            break
        t = new
    return t


def _porosity_mid_median(sem, *, smooth_sigma_px: float = 1.0) -> dict[str, Any]:
    """``method="mid-median"``: one global threshold, for comparison.

    Method. The image is smoothed (Gaussian, `smooth_sigma_px`). The current collector is the
    longest run of >= 3 rows whose 5th percentile lies above the whole-image Otsu threshold
    (uniformly bright, no dark pores). On each side of it, the row solid fraction (pixels
    above the Otsu threshold of the image without the collector) is followed; the top
    surface is where it rises from the background, coming in from the far side, above
    `TOP_LEVEL` (0.2) of its median over the layer (short rises, debris, are ignored). The side with the thicker
    layer is measured.
    Inside the layer, pores are pixels at or below a threshold found by iterating
    T = (median of pores + median of solid) / 2 from Otsu within the layer, which keeps
    blurred edges in the right phase whatever the porosity. The band is the porosity at
    T -/+ 10 grey levels (x 257 for 16-bit images). Pixels in ``attrs["masked_regions"]``
    (burned-in text, scale bars) take no part; rows wholly masked take the solid fraction
    of their neighbours, so a masked band does not end the layer.

    Parameters
    ----------
    sem : xarray.DataArray
        uint8/uint16 SEM image, dims ("y", "x"), from `sem_dataarray`. A pixel size is not
        needed (porosity is a ratio); thickness is reported only when it is known.
    smooth_sigma_px : float
        Gaussian smoothing before thresholding, pixels.

    Returns
    -------
    dict
        ``porosity_frac``, ``band`` [lo, hi], ``layer_top_row``, ``layer_bottom_row``
        (inclusive image rows, top < bottom), ``collector_side`` ("top"/"bottom"),
        ``thickness_um`` (None without pixel size), ``threshold`` (grey level), ``method``,
        ``flags``.

    Raises
    ------
    UnreadableInput
        A blank image (all one grey value, or nearly;
        `pipeline.ingest.dataarray.refuse_blank`): its data cannot be a micrograph.
    MeasurementError
        An image without contrast, without a current collector or without a layer on it.
    """
    src, img, scale, g, valid = _mid_median_image(sem, smooth_sigma_px)
    flags: list[str] = []
    masked = not valid.all()
    c0, c1 = _brightest_band(g, valid, src)
    solid = _row_solid_fraction(g, valid, c0, c1, scale, src)
    n, top, bottom, side = _thicker_layer(solid, c0, c1, src, flags)
    if top == 0 and side == "bottom" or bottom == img.shape[0] - 1 and side == "top":
        flags.append("layer_reaches_image_edge")
    vals = g[top:bottom + 1][valid[top:bottom + 1]]
    if vals.size == 0:
        raise MeasurementError(src, f"the layer (rows {top}-{bottom}) is entirely masked")
    t_otsu = _otsu(vals)
    thr = _midpoint_threshold(vals, t_otsu)
    step = 10.0 * scale
    porosity = _pore_fraction(vals, thr)
    band = [_pore_fraction(vals, thr - step), _pore_fraction(vals, thr + step)]
    if band[1] - band[0] > 0.10:
        flags.append("threshold_sensitive")
    if porosity < 0.01 or porosity > 0.99:
        flags.append("porosity_at_limit")
    if n < 20:
        flags.append("thin_layer")
    ps = sem.attrs.get("pixel_size_um")
    thickness_um = float(n * ps["y"]) if ps else None
    if thickness_um is None:
        flags.append("no_pixel_size")
    if masked:
        flags.append("masked_regions_excluded")
    log.debug("cross-section: collector rows %d-%d, layer rows %d-%d, T=%.1f, porosity %.4f",
              c0, c1 - 1, top, bottom, thr, porosity)
    return CrossSectionPorosity({
        "porosity_frac": porosity,
        "band": band,
        "layer_top_row": int(top),
        "layer_bottom_row": int(bottom),
        "collector_side": side,
        "collector_rows": [int(c0), int(c1 - 1)],
        "thickness_um": thickness_um,
        "threshold": float(thr),
        "threshold_otsu": float(t_otsu),
        "method": "cross-section: collector = uniformly bright rows, top surface at 0.2 of the "
                  "layer's solid fraction, pores <= iterated mid-median threshold "
                  f"(Gaussian sigma {smooth_sigma_px:g} px)",
        "flags": flags,
    })


def _mid_median_image(sem, smooth_sigma_px: float):
    """(source path, image, grey scale: 257 for 16-bit, the image smoothed by a Gaussian of
    `smooth_sigma_px` as float64, valid mask). Raises MeasurementError for an image without
    contrast or wholly masked (UnreadableInput for a blank one)."""
    from scipy.ndimage import gaussian_filter

    src, img, scale = _checked(sem)
    g = gaussian_filter(img.astype(np.float64), smooth_sigma_px) if smooth_sigma_px > 0 \
        else img.astype(np.float64)
    p_lo, p_hi = np.percentile(g, [0.5, 99.5])
    if p_hi - p_lo < 5 * scale:
        raise MeasurementError(src, f"cross-section has no contrast (grey levels {p_lo:.0f}-{p_hi:.0f}); "
                                    "no layer or current collector is visible")
    valid = valid_mask(sem)
    if not valid.any():
        raise MeasurementError(src, "the whole cross-section is masked")
    return src, img, scale, g, valid


def _brightest_band(g: np.ndarray, valid: np.ndarray, src) -> tuple[int, int]:
    """(first row, end row, half-open) of the current collector: the longest run of >= 3 rows
    whose 5th percentile lies above the whole-image Otsu threshold. Raises MeasurementError
    when there is none."""
    rows_ok = valid.any(axis=1)  # rows with at least one analysed pixel
    masked = not valid.all()
    gv = np.where(valid, g, np.nan) if masked else g
    t0 = _otsu(g[valid] if masked else g)
    row_p5 = np.full(g.shape[0], -np.inf)
    row_p5[rows_ok] = (np.nanpercentile(gv[rows_ok], 5, axis=1) if masked
                       else np.percentile(g, 5, axis=1))
    runs = [r for r in _runs(row_p5 > t0) if r[1] - r[0] >= 3]
    if not runs:
        raise MeasurementError(src, "no current collector visible: no band of >= 3 rows that is "
                                    "uniformly brighter than the pore/solid threshold")
    return max(runs, key=lambda r: r[1] - r[0])


def _row_solid_fraction(g: np.ndarray, valid: np.ndarray, c0: int, c1: int, scale: float,
                        src) -> np.ndarray:
    """Per row, the share of its valid pixels above the Otsu threshold of the image without
    the collector (rows `c0`-`c1`); fully masked rows take their neighbours'. Raises
    MeasurementError when the image has no contrast outside the collector."""
    rows_ok = valid.any(axis=1)  # rows with at least one analysed pixel
    rest = np.concatenate([g[:c0][valid[:c0]], g[c1:][valid[c1:]]])
    if rest.size == 0 or np.ptp(rest) < 5 * scale:
        raise MeasurementError(src, f"no porous layer visible: outside the current collector "
                                    f"(rows {c0}-{c1 - 1}) the image has no contrast")
    t_solid = _otsu(rest)  # pores/background vs solid, collector left out
    n_row = valid.sum(axis=1)
    solid = ((g > t_solid) & valid).sum(axis=1) / np.maximum(n_row, 1)
    if not rows_ok.all():  # fully masked rows take their neighbours' fraction
        idx = np.flatnonzero(rows_ok)
        solid = np.interp(np.arange(solid.size), idx, solid[idx])
    return solid


def _thicker_layer(solid: np.ndarray, c0: int, c1: int, src,
                   flags: list[str]) -> tuple[int, int, int, str]:
    """(rows, first row, last row, collector side "top"/"bottom") of the thicker layer next
    to the collector (rows `c0`-`c1`), from the row solid fraction `solid`; a
    ``layers_on_both_sides`` flag in `flags`. Raises MeasurementError without a layer."""
    n_above = _layer_rows(solid[:c0][::-1])
    n_below = _layer_rows(solid[c1:])
    above = n_above if n_above >= 3 else None
    below = n_below if n_below >= 3 else None
    if above is None and below is None:
        raise MeasurementError(src, f"no porous layer visible on the current collector (rows "
                                    f"{c0}-{c1 - 1}): no rows with solid next to it on either side")
    if above is not None and below is not None:
        flags.append("layers_on_both_sides")
    if below is None or (above is not None and above >= below):
        n = above
        top, bottom, side = c0 - n, c0 - 1, "bottom"
    else:
        n = below
        top, bottom, side = c1, c1 + n - 1, "top"
    return n, top, bottom, side


def _pore_fraction(vals: np.ndarray, t: float) -> float:
    """Share of `vals` at or below the threshold `t`."""
    return float(np.count_nonzero(vals <= t)) / vals.size
