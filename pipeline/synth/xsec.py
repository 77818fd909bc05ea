"""A realistic SEM cross-section of a porous electrode layer, with truth.

`pipeline.synth.cross_section_image` draws flat discs on a flat pore level; a threshold
tuned on it reads real cross-sections wrong. `xsec_scene` renders what a secondary-electron
(SE) image of a polished or FIB-milled section shows, and returns the truth of the section
plane. Seeded: same arguments, same bytes. Every number is a field of the frozen
`XsecModel` (lengths in pixels, signals as fractions of full scale); keyword overrides
replace fields.

1. Geometry. Rows grow downwards. Above the layer: vacuum, a protective cap (FIB sections:
   ``cap_rows`` of grainy deposit, vacuum above it) or a dense solid electrolyte. The layer
   lies between its top surface, ``top_row`` + a tilt (``top_tilt_deg``) + a smooth random
   profile (``top_roughness_px``), and the current collector at ``bottom_row`` (dense and
   bright to the image's foot) or, with ``collector=False``, nothing (vacuum below).
2. The section plane's solid. Placements until the layer's solid area reaches ``1 -
   porosity``, drawn on a grid ``supersample`` x finer and clipped to the layer (centres
   up to one radius beyond it: a homogeneous structure cut by the layer's limits): single
   discs (sections of particles, radius uniform in ``radius_px``), fused chains of 2-5
   discs (``chain_fraction``: carbon-black aggregates cut by the plane, neighbours at 0.8
   of their summed radii) and silver discs (``silver_fraction``, 1.5 x the radius,
   brighter). With ``sublayer_ratio = (a, b)`` the layer has two sub-layers, the upper
   (towards the electrolyte) ``a / (a + b)`` of the thickness and filled with radii
   ``sublayer_radius_px`` only (claim 10's first sub-layer: the small carbon and silver),
   the lower with the mix of both.
3. Pore-back. Through a pore the particles behind the plane are seen, dimmer with depth: two
   more sets of placements at the same solid fraction, each shown where the ones in front
   leave a pore, at ``pore_back`` (x the solid level) with their own rims; where all three
   leave a pore, the pore floor ``level_pore``. The truth counts all of that as pore.
4. SE contrast. Solid at ``level_solid`` (silver ``level_silver``) x ``1 + rim_gain
   exp(-d / rim_decay_px)`` (d: distance to the nearest pore or vacuum, so the edge effect
   sits at pore walls and at the top surface, not at the collector) x ``1 + texture N``.
5. Instrument and preparation. A slow shading field (+/- ``shading``), darkening with depth
   below the top surface (``depth_darkening`` at the collector, as a trench face collects
   fewer electrons from deep), curtaining (vertical stripes of ``curtain`` amplitude and
   ``curtain_width_px``, FIB milling), Gaussian PSF ``psf_sigma_px``, Poisson noise of
   ``electrons_full`` at full scale plus read noise, uint8.

Truth: ``porosity_frac`` (pore area fraction of the section plane inside the layer, from
the exact coverage on the fine grid), per-column ``top_rows`` and ``bottom_rows`` (first and
last layer row), their means, ``thickness_px``, the sub-layer boundary (``sublayer_rows``,
``sublayer_ratio_true``: the thinnest upper to the thickest lower, as claim 11 reads), and
``solid`` (the plane's solid at pixel centres).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.ingest.dataarray import sem_dataarray as wrap
from pipeline.numerics import exact_edt
from pipeline.synth.common import shading

__all__ = ["XsecModel", "xsec_dataarray", "xsec_scene"]

ABOVE = ("vacuum", "cap", "electrolyte")


@dataclass(frozen=True)
class XsecModel:
    pixel_nm: float = 10.0
    porosity: float = 0.40
    radius_px: tuple[float, float] = (3.0, 8.0)
    chain_fraction: float = 0.4
    silver_fraction: float = 0.1
    top_row: float = 0.22           # fraction of the image height
    bottom_row: float = 0.80        # the collector's surface, fraction of the image height
    top_tilt_deg: float = 0.0
    top_roughness_px: float = 0.0
    collector: bool = True
    above: str = "vacuum"
    cap_rows: int = 60
    sublayer_ratio: tuple[float, float] | None = None
    sublayer_radius_px: tuple[float, float] = (2.0, 4.0)
    level_vacuum: float = 0.05
    level_pore: float = 0.10
    level_solid: float = 0.45
    level_silver: float = 0.70
    level_collector: float = 0.72
    level_cap: float = 0.36
    level_electrolyte: float = 0.30
    rim_gain: float = 0.6
    rim_decay_px: float = 1.5
    pore_back: tuple[float, float] = (0.45, 0.22)
    texture: float = 0.06
    shading: float = 0.08
    depth_darkening: float = 0.15
    curtain: float = 0.03
    curtain_width_px: float = 3.0
    psf_sigma_px: float = 1.0
    electrons_full: float = 250.0
    read_noise: float = 0.01
    supersample: int = 3


def xsec_scene(shape: tuple[int, int] = (512, 768), *, seed: int = 0, **overrides: Any):
    """Render a cross-section; returns (uint8 image, truth dict). See the module docstring."""
    m = dataclasses.replace(XsecModel(), **overrides)
    if not 0.05 <= m.porosity <= 0.95:
        raise ValueError(f"porosity {m.porosity} is outside 0.05-0.95")
    if m.above not in ABOVE:
        raise ValueError(f"above must be one of {ABOVE}, not {m.above!r}")
    if not 0 < m.radius_px[0] <= m.radius_px[1]:
        raise ValueError(f"radius_px {m.radius_px} must be 0 < min <= max")
    ny, nx = shape
    rng = np.random.default_rng(seed)
    top, bottom = _surfaces(m, ny, nx, rng)
    if np.any(bottom - top < 4) or top.min() < 1:
        raise ValueError(f"the layer does not fit {shape}: rows {m.top_row}-{m.bottom_row}")
    s = m.supersample
    rows = np.arange(ny)[:, None]
    layer = (rows >= top[None, :]) & (rows <= bottom[None, :])
    layer_ss = np.repeat(np.repeat(layer, s, 0), s, 1)
    split = None
    if m.sublayer_ratio is not None:
        a, b = m.sublayer_ratio
        split = np.rint(top + (bottom - top + 1) * a / (a + b)).astype(int)
    planes = [_fill(m, layer_ss, split, rng) for _ in range(3)]
    solid_ss, _silver_ss = planes[0]
    cover = solid_ss.reshape(ny, s, nx, s).mean(axis=(1, 3))
    porosity = 1.0 - float(cover[layer].sum()) / float(layer.sum())
    sig_ss = _contrast(m, planes, layer_ss, top, bottom, rng)
    sig = sig_ss.reshape(ny, s, nx, s).mean(axis=(1, 3))
    image = _instrument(m, sig, top, bottom, rng)
    truth = {
        "kind": "sem_cross_section",
        "porosity_frac": porosity,
        "porosity_requested": m.porosity,
        "top_rows": top.tolist(),
        "bottom_rows": bottom.tolist(),
        "layer_top_row": float(top.mean()),
        "layer_bottom_row": float(bottom.mean()),
        "thickness_px": float((bottom - top + 1).mean()),
        "thickness_um": float((bottom - top + 1).mean() * m.pixel_nm / 1e3),
        "collector": m.collector,
        "collector_side": "bottom" if m.collector else None,
        "above": m.above,
        "pixel_nm": m.pixel_nm,
        "shape": [ny, nx],
        "seed": seed,
        "solid": solid_ss[s // 2::s, s // 2::s].copy(),
        "model": dataclasses.asdict(m),
    }
    if split is not None:
        upper = (split - top).astype(float)
        lower = (bottom - split + 1).astype(float)
        truth.update(sublayer_rows=split.tolist(), sublayer_row=float(split.mean()),
                     sublayer_ratio_true=float(upper.min() / lower.max()),
                     sublayer_thickness_px=[float(upper.mean()), float(lower.mean())])
    return image, truth


def xsec_dataarray(shape: tuple[int, int] = (512, 768), *, seed: int = 0, **overrides: Any):
    """`xsec_scene` wrapped as `pipeline.read` would return an SEM image: (DataArray, truth)."""
    image, truth = xsec_scene(shape, seed=seed, **overrides)
    p_um = truth["pixel_nm"] / 1e3
    da = wrap(image, path=f"synthetic:cross-section:seed={seed}", pixel_size_um=(p_um, p_um),
              pixel_size_source="synthetic (pipeline.synth.xsec)", vendor="synthetic",
              fmt="synthetic", detector="SE (model)")
    return da, truth


# --------------------------------------------------------------------------- geometry


def _smooth_profile(n: int, corr: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random profile of unit standard deviation, correlated over `corr` samples."""
    from scipy.ndimage import gaussian_filter1d

    p = gaussian_filter1d(rng.standard_normal(n + 8 * int(corr)), corr, mode="wrap")
    p = p[4 * int(corr): 4 * int(corr) + n]
    return (p - p.mean()) / max(float(p.std()), 1e-12)


def _surfaces(m: XsecModel, ny: int, nx: int, rng: np.random.Generator):
    """(top, bottom): first and last layer row of each column."""
    x = np.arange(nx) - (nx - 1) / 2.0
    t = m.top_row * ny + math.tan(math.radians(m.top_tilt_deg)) * x
    if m.top_roughness_px > 0:
        t = t + m.top_roughness_px * _smooth_profile(nx, max(nx / 12.0, 4.0), rng)
    top = np.rint(t).astype(int)
    bottom = np.full(nx, round(m.bottom_row * ny) - 1)
    return top, bottom


def _fill(m: XsecModel, layer_ss: np.ndarray, split, rng: np.random.Generator):
    """(solid, silver) boolean masks on the fine grid: placements inside the layer until its
    solid area reaches 1 - porosity."""
    import cv2

    s = m.supersample
    h, w = layer_ss.shape
    solid = np.zeros((h, w), np.uint8)
    silver = np.zeros((h, w), np.uint8)
    target = (1.0 - m.porosity) * float(layer_ss.sum())
    rows = np.flatnonzero(layer_ss.any(axis=1))
    # centres up to a radius beyond the layer: a homogeneous structure cut by its limits, so
    # the pore fraction does not rise towards the top surface or the collector
    reach = max(m.radius_px[1], m.sublayer_radius_px[1]) * s
    r0, r1 = int(rows[0] - reach), int(rows[-1] + 1 + reach)
    split_ss = None if split is None else np.repeat(split, s) * s
    filled = 0.0
    shift = 4  # cv2 sub-pixel bits
    while filled < target:
        y = rng.uniform(r0, r1)
        x = rng.uniform(0, w)
        upper = split_ss is not None and y < split_ss[min(int(x), w - 1)]
        lo, hi = m.sublayer_radius_px if upper else m.radius_px
        if split_ss is not None and not upper and rng.random() < 0.5:
            lo, hi = m.sublayer_radius_px
        is_ag = rng.random() < m.silver_fraction
        k = int(rng.integers(2, 6)) if (not is_ag and rng.random() < m.chain_fraction) else 1
        discs = []
        cy, cx, ang = y, x, rng.uniform(0, 2 * math.pi)
        rad = rng.uniform(lo, hi) * s * (1.5 if is_ag else 1.0)
        for _ in range(k):
            discs.append((cy, cx, rad))
            nxt = rng.uniform(lo, hi) * s
            ang += rng.normal(0.0, 0.8)
            step = 0.8 * (rad + nxt)
            cy, cx, rad = cy + step * math.sin(ang), cx + step * math.cos(ang), nxt
        ys = [d[0] for d in discs]
        xs = [d[1] for d in discs]
        rr = max(d[2] for d in discs)
        a0, a1 = max(int(min(ys) - rr) - 1, 0), min(int(max(ys) + rr) + 2, h)
        b0, b1 = max(int(min(xs) - rr) - 1, 0), min(int(max(xs) + rr) + 2, w)
        if a0 >= a1 or b0 >= b1:
            continue
        win, lay = solid[a0:a1, b0:b1], layer_ss[a0:a1, b0:b1]
        before = float(np.count_nonzero(win.view(bool) & lay))
        for cy, cx, rad in discs:
            c = (round(cx * 2 ** shift), round(cy * 2 ** shift))
            cv2.circle(solid, c, round(rad * 2 ** shift), 1, -1, cv2.LINE_8, shift)
            if is_ag:
                cv2.circle(silver, c, round(rad * 2 ** shift), 1, -1, cv2.LINE_8, shift)
        filled += float(np.count_nonzero(win.view(bool) & lay)) - before
    solid = solid.view(bool) & layer_ss
    return solid, silver.view(bool) & solid


# --------------------------------------------------------------------------- contrast


def _rim(material: np.ndarray, s: int) -> np.ndarray:
    """Distance (px) of each material pixel of the fine grid to the nearest non-material."""
    return exact_edt(material) / float(s)


def _contrast(m: XsecModel, planes, layer_ss, top, bottom, rng) -> np.ndarray:
    """The SE signal on the fine grid: what is above the layer, the plane's solid with rims,
    pore-back, the collector."""
    from scipy.ndimage import gaussian_filter

    s = m.supersample
    h, w = layer_ss.shape
    rows = (np.arange(h)[:, None] // s)
    top_ss = np.repeat(top, s)[None, :]
    bot_ss = np.repeat(bottom, s)[None, :]
    above = rows < top_ss
    below = rows > bot_ss
    sig = np.full((h, w), m.level_vacuum, np.float32)
    material = np.zeros((h, w), bool)
    if m.above == "cap":
        cap = above & (rows >= top_ss - m.cap_rows)
        grain = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.5 * s)
        grain /= max(float(grain.std()), 1e-12)
        sig[cap] = (m.level_cap * (1.0 + 0.08 * grain))[cap]
        material |= cap
    elif m.above == "electrolyte":
        sig[above] = m.level_electrolyte
        material |= above
    if m.collector:
        sig[below] = m.level_collector
        material |= below
    fine = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.2 * s)
    fine /= max(float(fine.std()), 1e-12)
    # pore-back first (back to front): deeper planes where the nearer ones leave a pore
    pore = layer_ss.copy()
    sig[pore] = m.level_pore
    for depth, gain in ((2, m.pore_back[1]), (1, m.pore_back[0])):
        back, _ = planes[depth]
        d = _rim(back, s)
        val = m.level_solid * gain * (1.0 + m.rim_gain * np.exp(-d / m.rim_decay_px))
        show = back & pore
        sig[show] = val[show]
    solid, silver = planes[0]
    d = _rim(solid | material, s)
    level = np.where(silver, m.level_silver, m.level_solid).astype(np.float32)
    val = level * (1.0 + m.rim_gain * np.exp(-d / m.rim_decay_px)) * (1.0 + m.texture * fine)
    sig[solid] = val[solid]
    return sig


def _instrument(m: XsecModel, sig: np.ndarray, top, bottom, rng) -> np.ndarray:
    """Shading, depth darkening, curtaining, PSF, Poisson-Gaussian noise, uint8."""
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    ny, nx = sig.shape
    rows = np.arange(ny)[:, None].astype(np.float32)
    depth = np.clip((rows - top[None, :]) / np.maximum(bottom - top, 1)[None, :], 0.0, 1.0)
    sig = sig * shading((ny, nx), rng, m.shading) * (1.0 - m.depth_darkening * depth)
    if m.curtain > 0:
        stripes = gaussian_filter1d(rng.standard_normal(nx), m.curtain_width_px / 2.0)
        stripes /= max(float(stripes.std()), 1e-12)
        fade = 0.5 + 0.5 * depth  # curtains grow down the milled face
        sig = sig * (1.0 + m.curtain * stripes[None, :] * fade)
    if m.psf_sigma_px > 0:
        sig = gaussian_filter(sig, m.psf_sigma_px)
    electrons = rng.poisson(np.clip(sig, 0.0, None) * m.electrons_full)
    out = electrons / m.electrons_full + m.read_noise * rng.standard_normal((ny, nx))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
