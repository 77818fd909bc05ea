"""PNG pictures for the HTML report: SEM previews with overlays, height maps, size histograms.

Every picture comes back as PNG bytes no larger than `max_bytes` (the picture is scaled
down until it fits) so that the self-contained report stays small. SEM previews and height
maps are palette PNGs drawn with numpy and OpenCV (fast, one byte a pixel); only the size
histogram uses matplotlib, through its Agg canvas directly (no pyplot, no global backend).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "OVERLAY_COLOURS",
    "colour_stops",
    "data_uri",
    "height_png",
    "histogram_png",
    "mode_curves",
    "png_size",
    "sem_png",
]

MAX_BYTES = 200_000
GREY_LEVELS = 128  # SEM grey quantised to 7 bits: palette entries 0..127
_OVERLAY_INDEX = {"carbon": 128, "silver": 129, "other": 130, "protrusion": 131, "layer": 132}
OVERLAY_COLOURS = {  # name -> (r, g, b); the report's legend uses the same colours
    "carbon": (0, 200, 255),
    "silver": (255, 140, 0),
    "other": (255, 230, 0),
    "protrusion": (255, 40, 80),
    "layer": (60, 230, 60),
}
NAN_RGB = (200, 200, 200)  # unmeasured points of a height map
CMAP = "viridis"


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG (no PNG signature and IHDR chunk)")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _encode(index: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _fit(draw: Callable[[float], np.ndarray], palette, max_bytes: int) -> tuple[bytes, tuple[int, int]]:
    """Encode ``draw(scale)`` (an index image) at scale 1, or smaller until it fits.

    The size at scale 1 is first estimated from a band of rows across the middle (a quarter
    of the picture), so that a picture far over the budget is encoded about once, not twice.
    """
    index = draw(1.0)
    scale = 1.0
    if index.size > max_bytes:  # over one byte a pixel it may not fit
        h = index.shape[0]
        band = max(h // 4, min(h, 32))
        top = (h - band) // 2
        estimate = len(_encode(index[top:top + band], palette)) * h / band
        if estimate > max_bytes:
            scale = 0.92 * math.sqrt(max_bytes / estimate)
    for _ in range(6):
        if scale != 1.0:
            index = draw(scale)
        png = _encode(index, palette)
        if len(png) <= max_bytes or min(index.shape) <= 32:
            return png, (index.shape[1], index.shape[0])
        scale *= 0.9 * math.sqrt(max_bytes / len(png))
    return png, (index.shape[1], index.shape[0])


def _resized_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _sem_palette() -> list[tuple[int, int, int]]:
    greys = [(round(i * 255 / (GREY_LEVELS - 1)),) * 3 for i in range(GREY_LEVELS)]
    extra = [OVERLAY_COLOURS[name] for name in sorted(_OVERLAY_INDEX, key=_OVERLAY_INDEX.get)]
    return greys + extra


def _inner_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled region that have a 4-neighbour with another label."""
    lab = labels
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    dy = lab[1:, :] != lab[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge & (lab > 0)


def _phase_index(labels: np.ndarray, phase_of_label: dict[int, str] | None) -> np.ndarray:
    """Palette index of each label's boundary colour (carbon, silver, other)."""
    top = int(labels.max()) if labels.size else 0
    lut = np.full(top + 1, _OVERLAY_INDEX["other"], np.uint8)
    for label, phase in (phase_of_label or {}).items():
        if 0 <= int(label) <= top and phase in ("carbon", "silver"):
            lut[int(label)] = _OVERLAY_INDEX[phase]
    return lut[np.clip(labels, 0, top)]


def sem_png(image: np.ndarray, *, labels: np.ndarray | None = None,
            phase_of_label: dict[int, str] | None = None,
            points: Sequence[Sequence[float]] | None = None,
            layer_rows: Sequence[float] | None = None,
            max_bytes: int = MAX_BYTES) -> tuple[bytes, tuple[int, int]]:
    """An SEM preview with its segmentation drawn on it, as a palette PNG.

    Parameters
    ----------
    image : (M, N) uint8 ndarray
        The preview (other dtypes are scaled by their range to 0-255).
    labels : (M, N) int ndarray, optional
        Particle labels at preview scale (0 = pore); each particle's inner boundary is drawn
        in its phase's colour from `phase_of_label` ({label: "carbon" | "silver"}).
    points : sequence of (x_px, y_px, r_px), optional
        Protrusions at preview scale, drawn as circles.
    layer_rows : (top, bottom), optional
        Rows of the cross-section layer, drawn as horizontal lines.
    max_bytes : int
        Largest PNG; the picture is scaled down until it fits.

    Returns
    -------
    png : bytes
    size : (width, height) of the encoded picture in pixels
    """
    import cv2

    grey = _as_uint8(image)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != grey.shape:
            labels = cv2.resize(labels.astype(np.int32), (grey.shape[1], grey.shape[0]),
                                interpolation=cv2.INTER_NEAREST)

    def draw(scale: float) -> np.ndarray:
        h, w = _resized_shape(grey.shape, scale)
        g = grey if scale == 1.0 else cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
        index = (g >> 1).astype(np.uint8)
        if labels is not None:
            lab = labels if scale == 1.0 else cv2.resize(labels.astype(np.int32), (w, h),
                                                         interpolation=cv2.INTER_NEAREST)
            edge = _inner_boundaries(lab)
            index[edge] = _phase_index(lab[edge], phase_of_label)
        index = np.ascontiguousarray(index)
        for x, y, r in points or ():
            if all(math.isfinite(v) for v in (x, y, r)):
                cv2.circle(index, (round(x * scale), round(y * scale)), max(2, round(r * scale)),
                           _OVERLAY_INDEX["protrusion"], thickness=2 if w >= 400 else 1)
        for row in layer_rows or ():
            if row is not None and math.isfinite(row):
                r0 = min(max(round(row * scale), 0), h - 1)
                index[max(r0 - 1, 0):r0 + 1, :] = _OVERLAY_INDEX["layer"]
        return index

    return _fit(draw, _sem_palette(), max_bytes)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3:  # RGB(A) given: its mean as grey
        a = a[..., :3].mean(axis=2)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    out = np.zeros(a.shape, np.float64)
    if hi > lo:
        out[finite] = (a[finite] - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def _cmap_rgb(n: int = 255) -> np.ndarray:
    from matplotlib import colormaps

    return np.round(colormaps[CMAP](np.linspace(0.0, 1.0, n))[:, :3] * 255).astype(np.uint8)


def colour_stops(n: int = 9) -> list[str]:
    """``n`` CSS colours evenly along the height-map colour map, for a colour bar."""
    rgb = _cmap_rgb(255)[np.round(np.linspace(0, 254, n)).astype(int)]
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]


def height_png(z_um: np.ndarray, *, percentiles: tuple[float, float] = (0.5, 99.5),
               max_bytes: int = MAX_BYTES) -> tuple[bytes, tuple[int, int], tuple[float, float] | None]:
    """A height map in false colour (viridis; unmeasured points light grey).

    The colour scale spans the given percentiles of the valid heights, so that a few spikes
    do not flatten the rest; heights outside it take the end colours.

    Returns
    -------
    png : bytes
    size : (width, height) in pixels
    limits : (low, high) heights in um at the two ends of the colour scale, or None when the
        map has no valid point
    """
    import cv2

    z = np.asarray(z_um, dtype=np.float32)
    valid = np.isfinite(z)
    if valid.any():
        lo, hi = (float(v) for v in np.percentile(z[valid], percentiles))
        if not hi > lo:
            hi = lo + 1e-6
        limits: tuple[float, float] | None = (lo, hi)
    else:
        lo, hi, limits = 0.0, 1.0, None
    palette = [tuple(int(c) for c in rgb) for rgb in _cmap_rgb(255)] + [NAN_RGB]

    def draw(scale: float) -> np.ndarray:
        h, w = _resized_shape(z.shape, scale)
        zz = z if scale == 1.0 else cv2.resize(z, (w, h), interpolation=cv2.INTER_AREA)
        ok = np.isfinite(zz)
        index = np.full(zz.shape, 255, np.uint8)
        index[ok] = np.clip(np.round((zz[ok] - lo) * (254.0 / (hi - lo))), 0, 254).astype(np.uint8)
        return index

    png, size = _fit(draw, palette, max_bytes)
    return png, size, limits


def _sigma_ln(mode: dict[str, Any]) -> float | None:
    """sigma of ln d of one log-normal mode, from its ``gsd`` or from ``sd_nm`` and the
    geometric mean ``mean_nm`` (sd^2 = m^2 u (u - 1) with u = exp(sigma^2))."""
    gsd = mode.get("gsd")
    if isinstance(gsd, int | float) and math.isfinite(gsd) and gsd > 1.0:
        return math.log(gsd)
    m, sd = mode.get("mean_nm"), mode.get("sd_nm")
    if not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in (m, sd)):
        return None
    u = (1.0 + math.sqrt(1.0 + 4.0 * (sd / m) ** 2)) / 2.0
    return math.sqrt(math.log(u))


def mode_curves(modes: Sequence[dict[str, Any]], n: int, edges: np.ndarray, x: np.ndarray,
                *, log_x: bool) -> list[tuple[int, np.ndarray]]:
    """Expected particle counts per histogram bin along `x` for each log-normal mode:
    ``n * number_share * pdf * bin width`` (pdf of ln d with log bins, of d with linear).

    Returns ``(index into modes, curve)`` for each mode with a usable mean, spread and share.
    """
    curves = []
    width = (np.log(edges[1]) - np.log(edges[0])) if log_x else (edges[1] - edges[0])
    for i, mode in enumerate(modes):
        s = _sigma_ln(mode)
        m, share = mode.get("mean_nm"), mode.get("number_share")
        if s is None or not isinstance(share, int | float) or not m or m <= 0:
            continue
        pdf_ln = np.exp(-0.5 * ((np.log(x) - math.log(m)) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        pdf = pdf_ln if log_x else pdf_ln / x
        curves.append((i, n * share * pdf * width))
    return curves


def histogram_png(ecd_nm: np.ndarray, modes: Sequence[dict[str, Any]] = (), *,
                  title: str = "", dpi: int = 90) -> bytes:
    """Number histogram of equivalent circle diameters with each mixture mode as a
    log-normal curve scaled by its number share, and their sum.

    The x axis is logarithmic (log-spaced bins) when the diameters span more than a factor
    of 3, else linear.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d = np.asarray(ecd_nm, dtype=float).ravel()
    d = d[np.isfinite(d) & (d > 0)]
    fig = Figure(figsize=(5.6, 3.3), dpi=dpi)
    FigureCanvasAgg(fig)
    # fixed margins: constrained layout would measure every tick label (3x the drawing time)
    ax = fig.add_axes((0.11, 0.15, 0.86, 0.76 if title else 0.82))
    if d.size:
        lo, hi = float(d.min()), float(d.max())
        hi = hi if hi > lo else lo * 1.01 + 1e-9
        log_x = hi / lo > 3.0
        nbins = int(np.clip(round(2 * d.size ** (1 / 3)), 10, 60))
        edges = np.geomspace(lo, hi, nbins + 1) if log_x else np.linspace(lo, hi, nbins + 1)
        counts, _ = np.histogram(d, bins=edges)
        ax.stairs(counts, edges, fill=True, color="#b7c9da", label=f"particles (n = {d.size})")
        ax.stairs(counts, edges, color="#5b7590", linewidth=0.6)
        x = np.geomspace(lo, hi, 300) if log_x else np.linspace(lo, hi, 300)
        curves = mode_curves(modes, d.size, edges, x, log_x=log_x)
        for i, y in curves:
            ax.plot(x, y, linewidth=1.4, label=f"mode {i + 1}: {modes[i]['mean_nm']:.0f} nm, "
                                               f"{modes[i]['number_share']:.0%} by number")
        if len(curves) > 1:
            ax.plot(x, np.sum([y for _, y in curves], axis=0), "k--", linewidth=1.0,
                    label="mixture")
        if log_x:
            _log_axis(ax, lo, hi)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1.4 * max(counts.max(), 1))  # head room for the legend
        ax.legend(fontsize=7, frameon=False, loc="upper center", ncols=2)
    else:
        ax.text(0.5, 0.5, "no particles", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("equivalent circle diameter (nm)", fontsize=8)
    ax.set_ylabel("particles per bin", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _log_axis(ax, lo: float, hi: float) -> None:
    """Log x axis labelled at 1-2-5 steps (finer within one decade); no minor labels (they
    are slow to lay out and crowd)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1, 2, 5) if hi / lo > 10 else (1, 1.5, 2, 3, 4, 5, 6, 8)
    ticks = [m * 10.0**e for e in decades for m in steps if lo <= m * 10.0**e <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
