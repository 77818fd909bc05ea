"""Pictures for the HTML report: SEM previews with overlays, height maps, size histograms.

Photos are lossy WebP: the grey image of an SEM preview and the colour rendering of a height
map. What needs exact pixels is PNG: an SEM preview's segmentation overlay (thin boundary
lines, circles, layer lines) is a palette PNG of the same size as its photo, transparent where
nothing is drawn, which the report lays over the photo; charts are palette PNGs. A photo is at
most `SEM_MAX_PX` or `HEIGHT_MAX_PX` pixels on its long side and at most `MAX_BYTES` bytes (it
is scaled down until it fits), so that the self-contained report stays small. Pictures are
drawn with numpy and OpenCV and encoded with Pillow; only the size histogram uses matplotlib,
through its Agg canvas directly (no pyplot, no global backend).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "OVERLAY_COLOURS",
    "SemPicture",
    "chart_png",
    "colour_stops",
    "data_uri",
    "height_picture",
    "histogram_png",
    "image_size",
    "mime_type",
    "mode_curves",
    "sem_picture",
]

MAX_BYTES = 150_000  # largest photo
SEM_MAX_PX = 768  # long side of an SEM photo: the report shows it 560 CSS pixels wide
HEIGHT_MAX_PX = 448  # long side of a height map: shown 380 CSS pixels wide
PHOTO_QUALITY = 75  # WebP quality of photos
CHART_COLOURS = 128  # palette size of charts (anti-aliased lines keep their look)
_OVERLAY_INDEX = {"carbon": 1, "silver": 2, "other": 3, "protrusion": 4, "layer": 5}
OVERLAY_COLOURS = {  # name -> (r, g, b); the report's legend uses the same colours
    "carbon": (0, 200, 255),
    "silver": (255, 140, 0),
    "other": (255, 230, 0),
    "protrusion": (255, 40, 80),
    "layer": (60, 230, 60),
}
NAN_RGB = (200, 200, 200)  # unmeasured points of a height map
CMAP = "viridis"


# ------------------------------------------------------------------------ bytes and URIs
def mime_type(data: bytes) -> str:
    """The MIME type of picture bytes the report embeds: ``image/png`` or ``image/webp``."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ValueError(f"not a PNG or WebP picture (starts {data[:12]!r})")


def data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` or ``data:image/webp;base64,...`` for picture bytes."""
    return f"data:{mime_type(data)};base64," + base64.b64encode(data).decode("ascii")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG (its IHDR chunk) or a WebP (its VP8, VP8L or VP8X chunk)."""
    kind = mime_type(data)
    if kind == "image/png":
        if data[12:16] != b"IHDR":
            raise ValueError("PNG without an IHDR chunk first")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: key frame header
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit width-1, height-1
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError(f"WebP without a VP8, VP8L or VP8X chunk first (found {chunk!r})")


def _webp(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # method 2 of 0-6: within 5 % of the smallest, in half the time of the default 4
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="WEBP", quality=quality,
                                                       method=2)
    return buf.getvalue()


def _palette_png(index: np.ndarray, palette: Sequence[tuple[int, int, int]], *,
                 transparent: int | None = None) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    # zlib level 6: level 9 saves a tenth of the bytes in 15 times the time
    if transparent is None:
        img.save(buf, format="PNG", compress_level=6)
    else:
        img.save(buf, format="PNG", compress_level=6, transparency=transparent)
    return buf.getvalue()


def _fit_photo(draw: Callable[[float], np.ndarray], scale: float, max_bytes: int,
               quality: int) -> tuple[bytes, float]:
    """Encode ``draw(scale)`` as WebP, and smaller until it fits `max_bytes`; returns the
    bytes and the scale used (the size of a lossy picture grows about with its area)."""
    for _ in range(8):
        pixels = draw(scale)
        data = _webp(pixels, quality)
        if len(data) <= max_bytes or min(pixels.shape[:2]) <= 32:
            break
        scale *= 0.95 * math.sqrt(max_bytes / len(data))
    return data, scale


def _resized_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


# ---------------------------------------------------------------------------- SEM previews
@dataclass(frozen=True)
class SemPicture:
    """An SEM preview for the report.

    Attributes
    ----------
    photo : bytes
        The grey image, WebP.
    overlay : bytes or None
        The segmentation at the photo's size, a palette PNG transparent where nothing is
        drawn; None when there is nothing to draw.
    size : (width, height)
        Pixels of both.
    """

    photo: bytes
    overlay: bytes | None
    size: tuple[int, int]


def _overlay_palette() -> list[tuple[int, int, int]]:
    return [(0, 0, 0)] + [OVERLAY_COLOURS[name]
                          for name in sorted(_OVERLAY_INDEX, key=_OVERLAY_INDEX.get)]


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


def _draw_overlay(shape: tuple[int, int], scale: float, labels: np.ndarray | None,
                  phase_of_label: dict[int, str] | None, points, layer_rows) -> np.ndarray:
    """Palette indices of the overlay (0 = nothing) at `shape`, from coordinates at scale 1."""
    import cv2

    h, w = shape
    index = np.zeros(shape, np.uint8)
    if labels is not None:
        lab = labels if labels.shape == shape else cv2.resize(
            labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
        edge = _inner_boundaries(lab)
        index[edge] = _phase_index(lab[edge], phase_of_label)
    for x, y, r in points if points is not None else ():
        if all(math.isfinite(v) for v in (x, y, r)):
            cv2.circle(index, (round(x * scale), round(y * scale)), max(2, round(r * scale)),
                       _OVERLAY_INDEX["protrusion"], thickness=2 if w >= 400 else 1)
    for row in layer_rows if layer_rows is not None else ():
        if row is not None and math.isfinite(row):
            r0 = min(max(round(row * scale), 0), h - 1)
            index[max(r0 - 1, 0):r0 + 1, :] = _OVERLAY_INDEX["layer"]
    return index


def sem_picture(image: np.ndarray, *, labels: np.ndarray | None = None,
                phase_of_label: dict[int, str] | None = None,
                points: Sequence[Sequence[float]] | None = None,
                layer_rows: Sequence[float] | None = None,
                max_px: int = SEM_MAX_PX, max_bytes: int = MAX_BYTES,
                quality: int = PHOTO_QUALITY) -> SemPicture:
    """An SEM preview as a WebP photo and, when there is segmentation, a PNG overlay.

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
    max_px : int
        Longest side of the picture in pixels; a larger preview is scaled down.
    max_bytes : int
        Largest photo; the picture is scaled down further until it fits.
    quality : int
        WebP quality of the photo (0-100).

    Returns
    -------
    SemPicture
        Photo, overlay (or None) and their size; the overlay is drawn at the photo's scale,
        1 pixel boundaries and 2 pixel lines, so that they stay sharp.
    """
    import cv2

    grey = _as_uint8(image)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != grey.shape:
            labels = cv2.resize(labels.astype(np.int32), (grey.shape[1], grey.shape[0]),
                                interpolation=cv2.INTER_NEAREST)

    def photo(scale: float) -> np.ndarray:
        h, w = _resized_shape(grey.shape, scale)
        if (h, w) == grey.shape:
            return grey
        return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)

    start = min(1.0, max_px / max(grey.shape))
    data, scale = _fit_photo(photo, start, max_bytes, quality)
    h, w = _resized_shape(grey.shape, scale)
    overlay = None
    if labels is not None or points is not None or layer_rows is not None:
        index = _draw_overlay((h, w), scale, labels, phase_of_label, points, layer_rows)
        if index.any():
            overlay = _palette_png(index, _overlay_palette(), transparent=0)
    return SemPicture(photo=data, overlay=overlay, size=(w, h))


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


# ----------------------------------------------------------------------------- height maps
def _cmap_rgb(n: int = 255) -> np.ndarray:
    from matplotlib import colormaps

    return np.round(colormaps[CMAP](np.linspace(0.0, 1.0, n))[:, :3] * 255).astype(np.uint8)


def colour_stops(n: int = 9) -> list[str]:
    """``n`` CSS colours evenly along the height-map colour map, for a colour bar."""
    rgb = _cmap_rgb(255)[np.round(np.linspace(0, 254, n)).astype(int)]
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]


def height_picture(z_um: np.ndarray, *, percentiles: tuple[float, float] = (0.5, 99.5),
                   max_px: int = HEIGHT_MAX_PX, max_bytes: int = MAX_BYTES,
                   quality: int = PHOTO_QUALITY,
                   ) -> tuple[bytes, tuple[int, int], tuple[float, float] | None]:
    """A height map in false colour (viridis; unmeasured points light grey), as WebP.

    The colour scale spans the given percentiles of the valid heights, so that a few spikes
    do not flatten the rest; heights outside it take the end colours. The map is scaled down
    to `max_px` on its long side, and further until it fits `max_bytes`.

    Returns
    -------
    webp : bytes
    size : (width, height) in pixels
    limits : (low, high) heights in um at the two ends of the colour scale, or None when the
        map has no valid point
    """
    import cv2

    z = np.asarray(z_um, dtype=np.float32)
    if z.ndim != 2 or not z.size:
        raise ValueError(f"a height map is a 2-D array, got shape {z.shape}")
    valid = np.isfinite(z)
    if valid.any():
        lo, hi = (float(v) for v in np.percentile(z[valid], percentiles))
        if not hi > lo:
            hi = lo + 1e-6
        limits: tuple[float, float] | None = (lo, hi)
    else:
        lo, hi, limits = 0.0, 1.0, None
    lut = np.vstack([_cmap_rgb(255), np.array([NAN_RGB], np.uint8)])  # 255: not measured

    def draw(scale: float) -> np.ndarray:
        h, w = _resized_shape(z.shape, scale)
        zz = z if (h, w) == z.shape else cv2.resize(z, (w, h), interpolation=cv2.INTER_AREA)
        ok = np.isfinite(zz)
        index = np.full(zz.shape, 255, np.uint8)
        index[ok] = np.clip(np.round((zz[ok] - lo) * (254.0 / (hi - lo))), 0, 254).astype(np.uint8)
        return lut[index]

    data, scale = _fit_photo(draw, min(1.0, max_px / max(z.shape)), max_bytes, quality)
    h, w = _resized_shape(z.shape, scale)
    return data, (w, h), limits


# -------------------------------------------------------------------------------- charts
def chart_png(fig) -> bytes:
    """A matplotlib figure (with an Agg canvas) as a palette PNG of `CHART_COLOURS` colours:
    a third of the size of its RGBA PNG, lines and text alike."""
    from PIL import Image

    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    buf = io.BytesIO()
    rgb.quantize(colors=CHART_COLOURS, dither=Image.Dither.NONE).save(buf, format="PNG",
                                                                      compress_level=6)
    return buf.getvalue()


# ------------------------------------------------------------------- size histogram
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
    return chart_png(fig)


def depth_profile_png(depth_px: Sequence[float], radius_px: Sequence[float | None], *,
                      boundary_px: float | None = None, title: str = "",
                      dpi: int = 90) -> bytes:
    """The median particle-section radius against depth below the layer's top surface
    (`pipeline.segmentation.sublayers`), with the sub-layer boundary when one was found."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d = np.asarray(depth_px, float)
    r = np.asarray([np.nan if v is None else v for v in radius_px], float)
    fig = Figure(figsize=(5.6, 2.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.11, 0.19, 0.86, 0.68 if title else 0.76))
    ok = np.isfinite(r)
    ax.plot(d[ok], r[ok], color="#5b7590", linewidth=1.2, marker=".", markersize=3,
            label="median section radius")
    if boundary_px is not None:
        ax.axvline(boundary_px, color="#c0392b", linestyle="--", linewidth=1.0,
                   label=f"sub-layer boundary ({boundary_px:.0f} px)")
    ax.set_xlabel("depth below the top surface (px)", fontsize=8)
    ax.set_ylabel("radius (px)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    if title:
        ax.set_title(title, fontsize=9)
    return chart_png(fig)


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
