"""A realistic secondary-electron (SE) image model of particle layers, with truth.

`pipeline.synth.particle_image` draws ideal discs; a method tuned on them can fail on real
micrographs. `sem_scene` renders 3-D bodies with the contrast of a real SE image;
`sem_dataarray` wraps it as `pipeline.read` would. Seeded: same arguments, same bytes.
Every number is a field of the frozen `SemModel` (lengths nm, signals as fractions of full
scale); `PRESETS` holds one per scene kind and keyword overrides replace fields.

1. Sizes: volume-equivalent diameters, log-normal per mode, ``modes`` = ((median nm, sigma
   of ln d, number share), ...); in "packed" scenes a share ``silver_fraction`` is silver
   (``silver_nm``, ``silver_sigma``; brighter, ``level_silver``).
2. Bodies: silhouette ``R(phi) = r0 ellipse(aspect) (1 + sum_k h_k cos(k phi + psi_k))``,
   k = 2..5, ``h_k ~ N(0, irregularity (2/k)**2)``, for ``facet_fraction`` of them times a
   rounded 5-8-gon; top surface ``z_c + c sqrt(1 - (rho/R)**2)``, ``c = flatness r0``; the
   volume ``4/3 c A`` fixes r0. ``1 - irregular_fraction`` are exact spheres (r0 = d/2), the
   rest have aspect ratio ``exp(|N(0, aspect_sigma)|)``.
3. Structure. "packed": discrete particles packed touching on the substrate
   (`pipeline.synth.common.place_spheres`) to summed silhouettes = ``coverage``, plus ``top_layer``
   x as many lying on them (bottoms at ``layer_nm U(0.5, 1)``). "aggregates" (carbon black,
   fused; ASTM D3849 primaries) and "agglomerates" (touching): clusters of ``primaries[0]
   exp(primaries[1] N)`` primaries clipped to ``primaries[2:]``, grown by tunable
   particle-cluster aggregation (Filippov et al., J. Colloid Interface Sci. 229, 261, 2000):
   primary k sits where ``k = fractal_prefactor (Rg/a)**fractal_dim`` (a = mean radius x
   mean neck), at ``neck`` (min, max) x the summed radii from one primary (< 1: fused) and
   >= ``neck[1]`` x from the others; turned at random or (``lie_flat``) flattest side down,
   bottoms at ``layer_nm U(0, 1)``, placed at random (``separate``: without overlaps).
4. Rendering, back to front in a z-buffer of the top surface, edge pixels blended by the
   covered fraction: a particle behind a nearer one is seen in part (``owner``).
5. SE contrast: ``level_*`` x a gain ``exp(N(0, gain_sigma))`` per particle x ``1 + rim_gain
   (exp(-d/rim_decay_nm) - exp(-d/rim_rise_nm) + tilt_weight (min(sec t, tilt_cap) - 1))``
   (d: distance to the body's silhouette edge, t: surface tilt; ``rim_gain = 0``: flat
   plateaus) x ``1 + surface_texture N`` x ``1 + light_weight sin t cos(az - light_azimuth)``
   (surfaces facing the detector side brighter; az: the azimuth of the surface normal) and,
   for faceted bodies, x ``1 + g_j`` with ``g_j ~ N(0, facet_contrast)`` per facet: the side
   facets of the polygon (normal azimuth at the facet's middle) and a flat top inside
   ``FACET_TOP`` of the radius (no tilt), so crystals show facet edges inside their outline.
6. Shadowing: x ``exp(-shadow_strength max(Hbar - z, 0) / shadow_range_nm)``, Hbar the top
   height smoothed over ``shadow_range_nm``: lower particles, crevices and the substrate
   beside tall particles (a dark halo) lose signal.
7. Binder: webs ``binder_width`` x the smaller radius wide between ``binder_fraction`` of the
   near pairs (not within an aggregate), only where no particle is seen (``binder``), at
   ``binder_level`` of the way from background to particle level.
8. Substrate: ``level_background (1 + texture_amplitude (outlines + 0.2 fill + 0.1 fine))``
   of blobs of ``texture_scale_nm``, grouped in patches.
9. Instrument: PSF ``psf_sigma_px``; shading +/- ``shading``; row gain jitter ``line_gain``;
   ``Poisson(signal electrons_full)`` electrons, counts ``full (black_level + e /
   electrons_full + N(0, read_noise) + N(0, line_offset) per row)``; ``detector_blur_px``
   (correlates the noise of neighbouring pixels); rounding to uint8/uint16.

"tio2-bam" is tuned on the 10 Zeiss InLens images of ``../shared/realdata/sem-labelled/
bam_tio2`` (7.34375 nm/px, rows 0-711) and their manual masks (4-connected regions >= 20
px); value [range over the images] -> the model, same measurement (4 seeds): background
median (> 8 px from particles) 34 [28-43] -> 33; particles (masks eroded 3 px) 118 [93-134]
-> 110; noise, std of the cross difference (a00 - a01 - a10 + a11) / 2 (no planes, no row
offsets), background 2.45 [1.7-2.8] -> 2.35 and particles 4.65 [4.2-5.6] -> 4.9 (variance
~ grey level: shot noise); lag-1 noise correlation (residual of a sigma-3 smoothing), x and
y alike, 0.40 [0.31-0.46] -> 0.39; rim, mean profile across the edges of 26 isolated
particles: 33, 49 (first pixel out), 134, 162, 139, 128, 117, 109, 107, 103, 100 (10 px in),
a ~1 px rise and a 0.65/px (17 nm) decay -> 57, 169, 193, 171, 154, 140, 130, 125; dark halo
2-4 px from particles -8 [-11 to -4] -> -8, at 10-12 px -4 -> -3; background (sigma-1
smoothed) percentiles 1/5/25/75/95/99: -5.5/-2.9/-1.1/+1.7/+5.9/+11.7 -> -5.5/-3.1/-1.1/+1.9/
+7.7/+11.3 (ring-like blob outlines); particle medians above background, 10/50/90 %: 43/76/
116 -> 39/72/121 (``gain_sigma``); row means in particles scatter 2.2 % vs 1.2 % from pixel
noise -> 2.6 vs 1.4 %; 64-px background blocks vary 2-7 % (``shading``); inner ECD x10/50/90
102/196/297 nm -> 121/191/290; aspect ratio 1.12/1.39/2.16 -> 1.11/1.34/2.1; clusters (masks
dilated 2 px): median 3 particles, 90 % <= 14, max 50, 5 % alone -> 3, 13, 42, 6 %; 16-202
particles, 2-18 % of the area per image -> 77, 7 %. The carbon presets are not measured:
levels as `particle_image`, rims and shadows scaled to a low-kV SE image of ~2 nm pixels.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.ingest.dataarray import sem_dataarray as wrap
from pipeline.synth.common import place_spheres, shading

__all__ = ["PRESETS", "SemModel", "isolated_primaries", "sem_dataarray", "sem_scene"]

_PHI = np.linspace(-math.pi, math.pi, 128, endpoint=False)  # angles of the silhouette tables
FACET_TOP = 0.45  # a faceted body's flat top: inside 0.45 of its silhouette radius


@dataclass(frozen=True)
class SemModel:
    """Every parameter of an SEM scene (see the module docstring for the model)."""

    pixel_nm: float = 2.0
    phase: str = "carbon"
    modes: tuple[tuple[float, float, float], ...] = ((40.0, 0.12, 0.5), (80.0, 0.12, 0.5))
    silver_fraction: float = 0.05
    silver_nm: float = 150.0
    silver_sigma: float = 0.12
    irregular_fraction: float = 0.3
    aspect_sigma: float = 0.15
    irregularity: float = 0.05
    facet_fraction: float = 0.0
    flatness: float = 1.0
    structure: str = "packed"
    coverage: float = 0.9
    top_layer: float = 0.1
    layer_nm: float = 40.0
    primaries: tuple[float, float, int, int] = (15.0, 0.6, 5, 60)
    fractal_dim: float = 1.8
    fractal_prefactor: float = 1.3
    neck: tuple[float, float] = (0.7, 0.95)
    lie_flat: bool = False
    separate: bool = False
    level_background: float = 0.07
    level_particle: float = 0.28
    level_silver: float = 0.55
    gain_sigma: float = 0.06
    surface_texture: float = 0.03
    rim_gain: float = 0.6
    rim_decay_nm: float = 5.0
    rim_rise_nm: float = 0.0
    tilt_weight: float = 0.4
    tilt_cap: float = 3.0
    facet_contrast: float = 0.0
    light_weight: float = 0.0
    light_azimuth_deg: float = 135.0
    shadow_strength: float = 0.8
    shadow_range_nm: float = 30.0
    binder_fraction: float = 0.15
    binder_level: float = 0.3
    binder_width: float = 0.5
    texture_amplitude: float = 0.1
    texture_scale_nm: float = 25.0
    psf_sigma_px: float = 1.0
    detector_blur_px: float = 0.5
    shading: float = 0.06
    line_gain: float = 0.01
    line_offset: float = 0.002
    electrons_full: float = 300.0
    read_noise: float = 0.006
    black_level: float = 0.02


_CARBON = SemModel()
PRESETS: dict[str, SemModel] = {
    "bimodal-40-80": _CARBON,
    "bimodal-25-70": dataclasses.replace(
        _CARBON, pixel_nm=1.5, modes=((25.0, 0.12, 0.5), (70.0, 0.12, 0.5))),
    "mono-40": dataclasses.replace(_CARBON, modes=((40.0, 0.12, 1.0),)),
    "cb-agg-40": dataclasses.replace(
        _CARBON, modes=((40.0, 0.18, 1.0),), silver_fraction=0.0, irregular_fraction=0.2,
        irregularity=0.04, aspect_sigma=0.1, structure="aggregates", coverage=1.3,
        layer_nm=200.0, fractal_dim=1.85, binder_fraction=0.04),
    "cb-agg-80": dataclasses.replace(
        _CARBON, pixel_nm=3.0, modes=((80.0, 0.18, 1.0),), silver_fraction=0.0,
        irregular_fraction=0.2, irregularity=0.04, aspect_sigma=0.1, structure="aggregates",
        coverage=1.3, layer_nm=400.0, fractal_dim=1.85, binder_fraction=0.04,
        rim_decay_nm=7.0, shadow_range_nm=60.0, texture_scale_nm=40.0),
    "tio2-bam": SemModel(
        pixel_nm=7.34375, phase="tio2", modes=((200.0, 0.33, 1.0),), silver_fraction=0.0,
        irregular_fraction=1.0, aspect_sigma=0.3, irregularity=0.07, facet_fraction=0.4,
        flatness=0.8, structure="agglomerates", coverage=0.075, layer_nm=0.0,
        primaries=(3.5, 1.1, 1, 60), fractal_dim=2.0, fractal_prefactor=1.3, neck=(0.9, 1.0),
        lie_flat=True, separate=True, level_background=0.11, level_particle=0.35,
        gain_sigma=0.3, surface_texture=0.01, rim_gain=1.3, rim_decay_nm=17.0, rim_rise_nm=6.0,
        tilt_weight=0.4, tilt_cap=1.8, shadow_strength=0.25, shadow_range_nm=90.0,
        binder_fraction=0.0, texture_amplitude=0.6, texture_scale_nm=60.0, psf_sigma_px=0.25,
        detector_blur_px=0.48, shading=0.04, line_gain=0.015, line_offset=0.0005,
        electrons_full=450.0, read_noise=0.006, black_level=0.02),
}


def sem_scene(preset: str = "bimodal-40-80", *, shape: tuple[int, int] = (768, 1024),
              pixel_nm: float | None = None, seed: int = 0, bits: int = 8,
              **overrides: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """An SE image of a particle layer and its truth.

    Parameters
    ----------
    preset : str
        A key of `PRESETS`.
    shape : (M, N)
        Image size in pixels.
    pixel_nm : float, optional
        Pixel size; the preset's when not given.
    seed : int
        Seed of `numpy.random.default_rng`.
    bits : 8 or 16
        uint8 or uint16 output.
    **overrides
        `SemModel` fields replacing the preset's (`dataclasses.replace`).

    Returns
    -------
    image : (M, N) uint8 or uint16 ndarray
    truth : dict
        ``primaries``, those seen: id, x_nm, y_nm (pixel centre i at (i + 0.5) pixel_nm),
        z_nm (centre height), diameter_nm (volume-equivalent; a sphere's diameter),
        projected_ecd_nm (ECD of the whole unoccluded silhouette), shape, phase, aggregate
        (id or None), mode (None for silver), touches_edge (silhouette reaches the border),
        visible_fraction (px seen / px of the silhouette in the image). ``aggregates``: id
        (after the primaries' ids), n_primaries (seen or not), n_visible, mean_primary_nm,
        x_nm, y_nm, projected_area_nm2 and perimeter_nm (Crofton) of the union of its
        silhouettes in the image, radius_of_gyration_nm (3-D, centres), touches_edge.
        ``owner`` and ``aggregate_owner`` ((M, N) int32, 0 = background; a discrete
        particle is its own aggregate), ``binder`` ((M, N) bool), ``model``
        (`dataclasses.asdict`), ``pixel_nm``, ``shape``, ``seed``, ``preset``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SemModel)}
    if unknown:
        raise TypeError(f"not SemModel fields: {sorted(unknown)}")
    if pixel_nm is not None:
        overrides["pixel_nm"] = pixel_nm
    m = dataclasses.replace(PRESETS[preset], **overrides)
    if m.structure not in ("packed", "aggregates", "agglomerates"):
        raise ValueError(f"structure must be packed, aggregates or agglomerates, not {m.structure!r}")
    if m.silver_fraction > 0 and m.structure != "packed":
        raise NotImplementedError("silver particles are drawn in 'packed' scenes only")
    shares = np.array([md[2] for md in m.modes], float)
    if shares.size == 0 or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"modes need positive number shares: {m.modes!r}")
    if m.pixel_nm <= 0 or min(shape) < 1:
        raise ValueError(f"need a positive pixel size and shape, got {m.pixel_nm!r}, {shape!r}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    b = _packed(m, ny, nx, rng) if m.structure == "packed" else _clusters(m, ny, nx, rng)
    # facet brightness from a stream of its own: the scene's layout does not depend on it
    b["facet_gain"] = m.facet_contrast * np.random.default_rng([seed, 2]).standard_normal(
        (b["d"].size, 9))
    col, cover, zbuf, owner, stats, groups = _render(m, b, ny, nx)
    binder = _binder(m, b, owner, rng)
    sig = _contrast(m, col, cover, zbuf, binder, rng)
    image = _instrument(m, sig, rng, bits)
    truth = _truth(m, b, owner, binder, stats, groups)
    truth.update(kind="sem_scene", preset=preset, seed=seed, shape=[ny, nx],
                 pixel_nm=m.pixel_nm, model=dataclasses.asdict(m))
    return image, truth


def sem_dataarray(preset: str = "bimodal-40-80", **kw: Any):
    """`sem_scene` as `pipeline.read` gives an SEM image: ``(xarray.DataArray, truth)``.

    The DataArray has dims ("y", "x"), coordinates in micrometres at pixel centres and
    ``attrs["pixel_size_um"] = {"x", "y"}``, so `find_particles` accepts it.
    """
    image, truth = sem_scene(preset, **kw)
    p_um = truth["pixel_nm"] / 1e3
    da = wrap(image, path=f"synthetic:{preset}:seed={truth['seed']}", pixel_size_um=(p_um, p_um),
              pixel_size_source="synthetic (pipeline.synth.sem)", vendor="synthetic",
              fmt="synthetic", detector="SE (model)")
    return da, truth


# --------------------------------------------------------------------------- population


def isolated_primaries(truth: dict, gap_px: int = 3) -> list[dict]:
    """The primaries of a scene's truth seen whole, away from the border, with no other
    particle and no binder within `gap_px` (the spheres whose edges can be scored alone)."""
    from scipy.ndimage import binary_dilation

    owner = truth["owner"]
    out = []
    for p in truth["primaries"]:
        if p["touches_edge"] or p["visible_fraction"] < 1.0:
            continue
        me = owner == p["id"]
        ring = binary_dilation(me, iterations=gap_px) & ~me
        if not np.any(owner[ring]) and not np.any(truth["binder"][ring]):
            out.append(p)
    return out


def _sizes(m: SemModel, n: int, rng: np.random.Generator, silver_ok: bool):
    """(d_nm, silver, mode) for n particles, drawn i.i.d."""
    shares = np.array([md[2] for md in m.modes], float)
    silver = rng.random(n) < (m.silver_fraction if silver_ok else 0.0)
    mode = rng.choice(len(m.modes), size=n, p=shares / shares.sum())
    med = np.array([md[0] for md in m.modes])[mode]
    sig = np.array([md[1] for md in m.modes])[mode]
    z = rng.standard_normal(n)
    d = np.where(silver, m.silver_nm * np.exp(m.silver_sigma * z), med * np.exp(sig * z))
    return d, silver, np.where(silver, -1, mode)


def _bodies(m: SemModel, d: np.ndarray, silver: np.ndarray, mode: np.ndarray,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shape of each body: silhouette table, r0, c, silhouette area, max radius."""
    n = d.size
    irregular = rng.random(n) < m.irregular_fraction
    faceted = irregular & (rng.random(n) < m.facet_fraction)
    aspect = np.where(irregular, np.exp(np.abs(m.aspect_sigma * rng.standard_normal(n))), 1.0)
    angle = rng.uniform(-math.pi, math.pi, n)
    h = m.irregularity * rng.standard_normal((n, 4)) * (2.0 / np.arange(2, 6)) ** 2 * irregular[:, None]
    h = np.clip(h, -0.3, 0.3)
    psi = rng.uniform(0.0, 2 * math.pi, (n, 4))
    sides = rng.integers(5, 9, n)
    phi0 = rng.uniform(0.0, 2 * math.pi, n)
    u = _PHI[None, :] - angle[:, None]
    tab = 1.0 / np.sqrt(np.cos(u) ** 2 / aspect[:, None] + np.sin(u) ** 2 * aspect[:, None])
    k = np.arange(2, 6)[None, :, None]
    tab = tab * (1.0 + (h[:, :, None] * np.cos(k * _PHI[None, None, :] + psi[:, :, None])).sum(1))
    w = 2 * math.pi / sides[:, None]
    t = np.mod(_PHI[None, :] - phi0[:, None], w) - w / 2
    poly = (np.cos(w / 2) / np.cos(t)) ** 0.4  # rounded polygon, flat sides
    tab = np.where(faceted[:, None], tab * poly, tab)
    area_u = 0.5 * (tab ** 2).mean(1) * 2 * math.pi
    c_u = np.where(irregular, m.flatness, 1.0)
    r0 = (math.pi * d ** 3 / (8.0 * c_u * area_u)) ** (1.0 / 3.0)  # V = 4/3 c A = pi d^3 / 6
    return {"d": d, "silver": silver, "mode": mode, "tab": tab, "r0": r0, "c": c_u * r0,
            "area": area_u * r0 ** 2, "rmax": r0 * tab.max(1) * 1.01,
            "kind": np.where(faceted, 2, np.where(irregular, 1, 0)),
            "gain": np.exp(m.gain_sigma * rng.standard_normal(n)),
            "sides": sides, "phi0": phi0}


def _packed(m: SemModel, ny: int, nx: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A dense layer of discrete particles plus a few resting on top of it."""

    w_nm, h_nm = nx * m.pixel_nm, ny * m.pixel_nm
    shares = np.array([md[2] for md in m.modes], float)
    shares /= shares.sum()
    mean_area = sum(s * math.pi / 4 * md[0] ** 2 * math.exp(2 * md[1] ** 2)
                    for md, s in zip(m.modes, shares))
    n_draw = int(1.5 * m.coverage * w_nm * h_nm / mean_area) + 10
    d, silver, mode = _sizes(m, n_draw, rng, True)
    xy = place_spheres(d, w_nm, h_nm, m.coverage * w_nm * h_nm, rng)
    n1 = len(xy)
    n2 = round(m.top_layer * n1)
    xy = np.vstack([xy, rng.uniform((0.0, 0.0), (w_nm, h_nm), (n2, 2))])
    d, silver, mode = d[: n1 + n2], silver[: n1 + n2], mode[: n1 + n2]
    b = _bodies(m, d, silver, mode, rng)
    bottom = np.concatenate([np.zeros(n1), m.layer_nm * rng.uniform(0.5, 1.0, n2)])
    b.update(x=xy[:, 0], y=xy[:, 1], z=bottom + b["c"], cluster=np.arange(n1 + n2),
             clustered=np.zeros(n1 + n2, bool))
    return b


def _clusters(m: SemModel, ny: int, nx: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Aggregates or agglomerates grown by tunable particle-cluster aggregation."""
    w_nm, h_nm = nx * m.pixel_nm, ny * m.pixel_nm
    med, sig, n_lo, n_hi = m.primaries
    counts: list[int] = []
    area, d_parts = 0.0, []
    while area < m.coverage * w_nm * h_nm:
        n = int(np.clip(round(med * math.exp(sig * rng.standard_normal())), n_lo, n_hi))
        drawn = _sizes(m, n, rng, False)
        counts.append(n)
        d_parts.append(drawn)
        area += float((math.pi / 4 * drawn[0] ** 2).sum())
    b = _bodies(m, *(np.concatenate(v) for v in zip(*d_parts)), rng)
    start = np.concatenate([[0], np.cumsum(counts)])
    pos = _grow([b["r0"][s:e] for s, e in itertools.pairwise(start)], m, rng)
    x, y, z = (np.empty(start[-1]) for _ in range(3))
    discs: list[tuple[float, float, float]] = []
    for k, (s, e) in enumerate(itertools.pairwise(start)):
        q = pos[k] - pos[k].mean(0)
        if m.lie_flat and e - s > 2:
            rot = np.linalg.eigh(q.T @ q)[1][:, ::-1]  # the smallest extent becomes z
        else:
            qq, rr = np.linalg.qr(rng.standard_normal((3, 3)))
            rot = qq * np.sign(np.diag(rr))
        q = q @ rot
        c = b["c"][s:e]
        q[:, 2] += m.layer_nm * rng.uniform() - (q[:, 2] - c).min()
        reach = float(np.max(np.hypot(q[:, 0], q[:, 1]) + b["rmax"][s:e]))
        for _ in range(40):
            cx, cy = rng.uniform(0.0, w_nm), rng.uniform(0.0, h_nm)
            if not m.separate or all(math.hypot(cx - u, cy - v) > reach + r for u, v, r in discs):
                break
        discs.append((cx, cy, reach))
        x[s:e], y[s:e], z[s:e] = q[:, 0] + cx, q[:, 1] + cy, q[:, 2]
    cluster = np.repeat(np.arange(len(counts)), counts)
    b.update(x=x, y=y, z=z, cluster=cluster, clustered=np.repeat(np.array(counts) > 1, counts))
    return b


def _grow(radii: list[np.ndarray], m: SemModel, rng: np.random.Generator) -> list[np.ndarray]:
    """(n, 3) primary centres of each cluster (radii `radii[k]`), all clusters at once.

    Step k adds primary k to every cluster that has more than k: at the distance from the
    centre of mass that keeps ``k + 1 = kf (Rg / a)**Df``, on the circle where that sphere
    meets the contact sphere of a random feasible partner (up to 4 partners, 6 angles
    each), not closer than ``neck[1]`` x the summed radii to any other primary. When no
    point fits, it touches a random primary in a random direction (8 tries).
    """
    lo, hi = m.neck
    order = np.argsort([-len(r) for r in radii], kind="stable")  # active clusters: a prefix
    nb = np.array([len(radii[i]) for i in order])
    nmax = int(nb[0])
    rad = np.zeros((len(radii), nmax))
    for row, i in enumerate(order):
        rad[row, : nb[row]] = radii[i]
    a = np.array([radii[i].mean() for i in order]) * 0.5 * (lo + hi)
    pos = np.zeros((len(radii), nmax, 3))
    n_j, n_a = 4, 6
    for k in range(1, nmax):
        bk = int(np.count_nonzero(nb > k))
        p, r = pos[:bk, :k], rad[:bk, :k]
        dc = rng.uniform(lo, hi, (bk, 1)) * (r + rad[:bk, k, None])
        sep = hi * (r + rad[:bk, k, None]) - 1e-6
        com = p.mean(1)
        rel = p - com[:, None]
        dist = np.sqrt((rel ** 2).sum(2))
        rg2 = (dist ** 2).mean(1)
        g2 = (k + 1) / k * ((k + 1) * (a[:bk] * ((k + 1) / m.fractal_prefactor) ** (1 / m.fractal_dim)) ** 2
                            - k * rg2)
        g = np.sqrt(np.clip(g2, 0.0, None))[:, None]
        feas = (np.abs(dist - g) <= dc) & (dist > 1e-9) & (g2[:, None] > 0)
        key = np.where(feas, rng.random((bk, k)), 2.0)
        part = np.argsort(key, axis=1)[:, :n_j]
        valid = np.take_along_axis(key, part, 1) < 2.0
        rows = np.arange(bk)[:, None]
        dj, dcj = dist[rows, part], dc[rows, part]
        u = rel[rows, part] / np.maximum(dj, 1e-12)[..., None]
        t = (g ** 2 - dcj ** 2 + dj ** 2) / (2 * np.maximum(dj, 1e-12))
        rho = np.sqrt(np.clip(g ** 2 - t ** 2, 0.0, None))
        ref = np.where(np.abs(u[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        v1 = np.cross(u, ref)
        v1 /= np.maximum(np.linalg.norm(v1, axis=-1, keepdims=True), 1e-12)
        v2 = np.cross(u, v1)
        ang = rng.uniform(0.0, 2 * math.pi, (bk, 1, n_a, 1))
        cand = (com[:, None, None, :] + (t[..., None] * u)[:, :, None, :]
                + rho[..., None, None] * (np.cos(ang) * v1[:, :, None] + np.sin(ang) * v2[:, :, None]))
        gap = np.linalg.norm(cand[:, :, :, None, :] - p[:, None, None, :, :], axis=4)
        gap[rows, np.arange(part.shape[1])[None, :], :, part] = np.inf  # the contact partner
        ok = (gap >= sep[:, None, None, :]).all(3) & valid[:, :, None]
        ok = ok.reshape(bk, -1)
        new = cand.reshape(bk, -1, 3)[np.arange(bk), np.argmax(ok, 1)]
        miss = np.flatnonzero(~ok.any(1))
        if miss.size:  # fallback: touch a random primary, 8 random directions
            j = rng.integers(0, k, (miss.size, 8))
            v = rng.standard_normal((miss.size, 8, 3))
            v /= np.linalg.norm(v, axis=2, keepdims=True)
            mr = miss[:, None]
            q = p[mr, j] + v * dc[mr, j][..., None]
            gap = np.linalg.norm(q[:, :, None, :] - p[miss][:, None, :, :], axis=3)
            gap[np.arange(miss.size)[:, None], np.arange(8)[None, :], j] = np.inf
            fit = (gap >= sep[miss][:, None, :]).all(2)
            new[miss] = q[np.arange(miss.size), np.argmax(fit, 1)]
        pos[:bk, k] = new
    out: list[np.ndarray] = [np.empty(0)] * len(radii)
    for row, i in enumerate(order):
        out[i] = pos[row, : nb[row]]
    return out


# --------------------------------------------------------------------------- rendering


def _render(m: SemModel, b: dict[str, np.ndarray], ny: int, nx: int):
    """Draw the bodies back to front into a z-buffer, blending edge pixels by coverage.

    Returns the premultiplied particle signal and its pixel coverage (before shadow and
    substrate), the top height, the provisional owner (i + 1 where body i is seen at the
    pixel centre), per-body stats and, per aggregate, the area and perimeter (pixels) of
    the union of its silhouettes.
    """
    n = b["d"].size
    zbuf = np.zeros((ny, nx), np.float32)
    col = np.zeros((ny, nx), np.float32)
    cover = np.zeros((ny, nx), np.float32)
    owner = np.zeros((ny, nx), np.int32)
    sil = np.zeros(n, np.int64)
    touch = np.zeros(n, bool)
    masks: list[tuple[int, int, np.ndarray] | None] = [None] * n
    level = np.where(b["silver"], m.level_silver, m.level_particle) * b["gain"]
    light_az = math.radians(m.light_azimuth_deg)
    for i in np.argsort(b["z"] + b["c"], kind="stable"):
        seen = _draw_body(m, b, i, level[i], light_az, zbuf, col, cover, owner)
        if seen is None:
            continue
        r0, c0, inside = seen
        sil[i] = np.count_nonzero(inside)
        touch[i] = _touches_border(inside, r0, c0, ny, nx)
        masks[i] = seen
    groups = _aggregate_unions(b, masks)
    vis = np.bincount(owner.ravel(), minlength=n + 1)[1:]
    return col, cover, zbuf, owner, {"silhouette": sil, "visible": vis, "touches": touch}, groups


def _draw_body(m: SemModel, b: dict[str, np.ndarray], i, level_i, light_az: float, zbuf: np.ndarray,
               col: np.ndarray, cover: np.ndarray, owner: np.ndarray):
    """Draw body `i` (signal level `level_i`) into the buffers where it lies in front of what
    is drawn, blending edge pixels by coverage. Returns (first row, first column, the pixel
    centres inside its silhouette) of its window, or None when no pixel centre is inside."""
    p = m.pixel_nm
    ny, nx = zbuf.shape
    x, y, rm = b["x"][i], b["y"][i], b["rmax"][i]
    c0, c1 = max(int((x - rm) / p), 0), min(int((x + rm) / p) + 2, nx)
    r0, r1 = max(int((y - rm) / p), 0), min(int((y + rm) / p) + 2, ny)
    if c0 >= c1 or r0 >= r1:
        return None
    dx = ((np.arange(c0, c1) + 0.5) * p - x)[None, :]
    dy = ((np.arange(r0, r1) + 0.5) * p - y)[:, None]
    rr = _body_radius(b, i, dx, dy)
    rn = np.sqrt(dx * dx + dy * dy) / rr
    depth = (1.0 - rn) * rr  # nm inside the silhouette edge (radially)
    alpha = np.clip(depth / p + 0.5, 0.0, 1.0)
    inside = depth > 0
    if not inside.any():
        return None
    hgt = np.sqrt(np.clip(1.0 - rn * rn, 0.0, None))
    zt = b["z"][i] + b["c"][i] * hgt
    zb = zbuf[r0:r1, c0:c1]
    front = (alpha > 0) & (zt > zb)
    win = front & inside
    val = _body_signal(m, b, i, level_i, light_az, rr, rn, hgt, depth, dx, dy)
    a = alpha[front]
    cb, vb = col[r0:r1, c0:c1], cover[r0:r1, c0:c1]
    cb[front] = a * val[front] + (1.0 - a) * cb[front]
    vb[front] = a + (1.0 - a) * vb[front]
    zb[win] = zt[win]
    owner[r0:r1, c0:c1][win] = i + 1
    return r0, c0, inside


def _body_radius(b: dict[str, np.ndarray], i, dx: np.ndarray, dy: np.ndarray):
    """The silhouette radius (nm) of body `i` towards each pixel centre (`dx`, `dy` nm from
    its centre): the tabulated outline of an irregular or faceted body, a sphere's radius."""
    if b["kind"][i]:
        return b["r0"][i] * np.interp(np.arctan2(dy, dx), _PHI, b["tab"][i], period=2 * math.pi)
    return b["r0"][i]


def _body_signal(m: SemModel, b: dict[str, np.ndarray], i, level_i, light_az: float, rr, rn: np.ndarray,
                 hgt: np.ndarray, depth: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The SE signal of body `i` over its window: its level with the edge effect (rim) and
    the tilt of its surface, then facets and directional light where the model has them."""
    tan = b["c"][i] * rn / (rr * np.maximum(hgt, 1e-3))
    sec = np.minimum(np.sqrt(1.0 + tan * tan), m.tilt_cap)
    d_in = np.maximum(depth, 0.0)
    rim = np.exp(-d_in / m.rim_decay_nm)
    if m.rim_rise_nm > 0:
        rim -= np.exp(-d_in / m.rim_rise_nm)
    val = level_i * (1.0 + m.rim_gain * (rim + m.tilt_weight * (sec - 1.0)))
    if m.light_weight or (m.facet_contrast and b["kind"][i] == 2):
        val = _lit(m, b, i, val, light_az, tan, rn, dx, dy)
    return val


def _lit(m: SemModel, b: dict[str, np.ndarray], i, val: np.ndarray, light_az: float, tan: np.ndarray,
         rn: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The signal `val` of body `i` with its facets' own brightness (faceted bodies) and the
    directional light on its surface (slope `tan`)."""
    az = np.arctan2(dy, dx)
    sin_t = tan / np.sqrt(1.0 + tan * tan)
    if b["kind"][i] == 2:  # flat facets: one direction and one brightness per facet
        w = 2 * math.pi / b["sides"][i]
        j = np.floor(np.mod(az - b["phi0"][i], 2 * math.pi) / w).astype(np.int64)
        j = np.where(rn < FACET_TOP, 8, np.minimum(j, 7))
        az = b["phi0"][i] + (j + 0.5) * w
        sin_t = np.where(j == 8, 0.0, sin_t)
        val = val * (1.0 + b["facet_gain"][i][j])
    return val * (1.0 + m.light_weight * sin_t * np.cos(az - light_az))


def _touches_border(inside: np.ndarray, r0: int, c0: int, ny: int, nx: int) -> bool:
    """True when the silhouette `inside`, cut from rows r0.. and columns c0.. of an (ny, nx)
    image, reaches the image's border."""
    r1, c1 = r0 + inside.shape[0], c0 + inside.shape[1]
    return bool((r0 == 0 and inside[0].any()) or (r1 == ny and inside[-1].any())
                or (c0 == 0 and inside[:, 0].any()) or (c1 == nx and inside[:, -1].any()))


def _aggregate_unions(b: dict[str, np.ndarray], masks: list) -> list[dict[str, Any]]:
    """Per aggregate (a run of clustered bodies), its members and the area and perimeter
    (pixels) of the union of their silhouettes (`masks`: (row, column, mask) or None)."""
    n = b["d"].size
    groups: list[dict[str, Any]] = []
    for members in np.split(np.arange(n), np.flatnonzero(np.diff(b["cluster"])) + 1):
        if not b["clustered"][members[0]]:
            continue
        union = _silhouette_union([masks[i] for i in members if masks[i] is not None])
        groups.append({"members": members, "area_px": int(np.count_nonzero(union)),
                       "perimeter_px": _perimeter(union)})
    return groups


def _silhouette_union(seen: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """The union of silhouettes ((row, column, mask) each) on the grid that bounds them; a
    1 x 1 False array when there is none."""
    union = np.zeros((1, 1), bool)
    if seen:
        g0 = min(s[0] for s in seen), min(s[1] for s in seen)
        g1 = max(s[0] + s[2].shape[0] for s in seen), max(s[1] + s[2].shape[1] for s in seen)
        union = np.zeros((g1[0] - g0[0], g1[1] - g0[1]), bool)
        for r0, c0, ins in seen:
            union[r0 - g0[0]:r0 - g0[0] + ins.shape[0], c0 - g0[1]:c0 - g0[1] + ins.shape[1]] |= ins
    return union


def _perimeter(mask: np.ndarray) -> float:
    """Cauchy-Crofton perimeter (pixels) from edge crossings along 4 directions."""
    a = np.pad(mask, 1)
    n0 = np.count_nonzero(a[:, 1:] != a[:, :-1]) + np.count_nonzero(a[1:, :] != a[:-1, :])
    n45 = np.count_nonzero(a[1:, 1:] != a[:-1, :-1]) + np.count_nonzero(a[1:, :-1] != a[:-1, 1:])
    return float(math.pi / 8 * (n0 + n45 / math.sqrt(2)))


def _smooth(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing; wide kernels on a block-averaged copy, interpolated back."""
    import cv2
    from scipy.ndimage import gaussian_filter

    f = int(sigma_px // 4) if sigma_px >= 8 else 1
    if f == 1:
        return gaussian_filter(a, sigma_px, mode="nearest")
    ny, nx = a.shape
    my, mx = -(-ny // f) * f, -(-nx // f) * f
    pad = np.pad(a, ((0, my - ny), (0, mx - nx)), mode="edge")
    small = gaussian_filter(pad.reshape(my // f, f, mx // f, f).mean((1, 3)), sigma_px / f,
                            mode="nearest")
    return cv2.resize(small, (mx, my), interpolation=cv2.INTER_LINEAR)[:ny, :nx]


def _binder(m: SemModel, b: dict[str, np.ndarray], owner: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Webs between near pairs of particles, where no particle is seen."""
    from scipy.spatial import cKDTree

    ny, nx = owner.shape
    mask = np.zeros((ny, nx), bool)
    if m.binder_fraction <= 0 or b["d"].size < 2:
        return mask
    p = m.pixel_nm
    xy = np.column_stack([b["x"], b["y"]])
    rad = b["d"] / 2.0
    pairs = np.array(sorted(cKDTree(xy).query_pairs(1.5 * 2 * float(rad.max()))), np.int64)
    if not pairs.size:
        return mask
    i, j = pairs[:, 0], pairs[:, 1]
    gap = np.hypot(*(xy[i] - xy[j]).T)
    keep = (gap < 1.5 * (rad[i] + rad[j])) & (~b["clustered"][i] | (b["cluster"][i] != b["cluster"][j]))
    i, j = i[keep], j[keep]
    pick = rng.random(i.size) < m.binder_fraction
    for a, c in zip(i[pick], j[pick]):
        w0 = m.binder_width * min(rad[a], rad[c])
        (xa, ya), (xc, yc) = xy[a], xy[c]
        c0, c1 = max(int((min(xa, xc) - w0) / p), 0), min(int((max(xa, xc) + w0) / p) + 2, nx)
        r0, r1 = max(int((min(ya, yc) - w0) / p), 0), min(int((max(ya, yc) + w0) / p) + 2, ny)
        if c0 >= c1 or r0 >= r1:
            continue
        px = ((np.arange(c0, c1) + 0.5) * p - xa)[None, :]
        py = ((np.arange(r0, r1) + 0.5) * p - ya)[:, None]
        vx, vy = xc - xa, yc - ya
        t = np.clip((px * vx + py * vy) / (vx * vx + vy * vy), 0.0, 1.0)
        dist = np.hypot(px - t * vx, py - t * vy)
        mask[r0:r1, c0:c1] |= dist < w0 * (0.45 + 0.55 * (2 * t - 1) ** 2)
    return mask & (owner == 0)


def _contrast(m: SemModel, col: np.ndarray, cover: np.ndarray, zbuf: np.ndarray,
              binder: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surface texture, substrate, binder and shadowing on the rendered particle signal."""
    from scipy.ndimage import gaussian_filter

    p = m.pixel_nm
    shape = col.shape
    fine = gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.2)
    fine /= max(float(fine.std()), 1e-12)
    field = np.zeros(shape, np.float32)
    for scale, weight in ((1.0, 1.0), (6.0, 0.8)):  # blobs, grouped in patches
        f = _smooth(rng.standard_normal(shape).astype(np.float32), scale * m.texture_scale_nm / p / 2)
        field += weight * f / max(float(f.std()), 1e-12)
    blobs = gaussian_filter((field > 1.9).astype(np.float32), 0.7)
    gy, gx = np.gradient(blobs)
    ring = np.hypot(gx, gy) / 0.57  # 1 on the outline of a blob
    tex = m.texture_amplitude * (ring + 0.2 * blobs + 0.1 * fine)
    bg = m.level_background * (1.0 + tex)
    web = m.level_background + m.binder_level * (m.level_particle - m.level_background)
    bg = np.where(binder, web * (1.0 + 0.1 * fine), bg)
    out = col * (1.0 + m.surface_texture * fine) + (1.0 - cover) * bg
    if m.shadow_strength > 0:
        deficit = np.clip(_smooth(zbuf, m.shadow_range_nm / p) - zbuf, 0.0, None)
        out = out * np.exp(-m.shadow_strength * deficit / m.shadow_range_nm)
    return out.astype(np.float32)


def _instrument(m: SemModel, sig: np.ndarray, rng: np.random.Generator, bits: int) -> np.ndarray:
    """PSF, shading, scan lines, Poisson-Gaussian detection, detector blur, quantisation."""
    from scipy.ndimage import gaussian_filter

    ny, nx = sig.shape
    full = 255 if bits == 8 else 65535
    if m.psf_sigma_px > 0:
        sig = gaussian_filter(sig, m.psf_sigma_px)
    sig = sig * shading((ny, nx), rng, m.shading) * (1.0 + m.line_gain * rng.standard_normal(ny))[:, None]
    electrons = rng.poisson(np.clip(sig, 0.0, None) * m.electrons_full)
    out = (m.black_level + electrons / m.electrons_full
           + m.read_noise * rng.standard_normal((ny, nx))
           + m.line_offset * rng.standard_normal(ny)[:, None]).astype(np.float32)
    if m.detector_blur_px > 0:
        out = gaussian_filter(out, m.detector_blur_px)
    return np.clip(np.rint(out * full), 0, full).astype(np.uint8 if bits == 8 else np.uint16)


# --------------------------------------------------------------------------- truth


def _truth(m: SemModel, b: dict[str, np.ndarray], owner: np.ndarray, binder: np.ndarray,
           stats: dict[str, np.ndarray], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Renumber the seen primaries 1..P, the seen aggregates P+1..; tables and arrays."""
    p = m.pixel_nm
    n = b["d"].size
    seen = np.flatnonzero(stats["visible"] > 0)
    lut = np.zeros(n + 1, np.int32)
    lut[seen + 1] = np.arange(1, seen.size + 1)
    agg_id = np.full(n, -1, np.int64)
    aggregates: list[dict[str, Any]] = []
    for g in groups:
        mem = g["members"]
        n_vis = int(np.count_nonzero(stats["visible"][mem]))
        if n_vis == 0:
            continue
        gid = seen.size + len(aggregates) + 1
        agg_id[mem] = gid
        xyz = np.column_stack([b["x"][mem], b["y"][mem], b["z"][mem]])
        aggregates.append({
            "id": gid, "n_primaries": int(mem.size), "n_visible": n_vis,
            "mean_primary_nm": float(b["d"][mem].mean()),
            "x_nm": float(xyz[:, 0].mean()), "y_nm": float(xyz[:, 1].mean()),
            "projected_area_nm2": g["area_px"] * p * p, "perimeter_nm": g["perimeter_px"] * p,
            "radius_of_gyration_nm": float(np.sqrt(((xyz - xyz.mean(0)) ** 2).sum(1).mean())),
            "touches_edge": bool(stats["touches"][mem].any()),
        })
    primaries = [{
        "id": int(lut[i + 1]), "x_nm": float(b["x"][i]), "y_nm": float(b["y"][i]),
        "z_nm": float(b["z"][i]), "diameter_nm": float(b["d"][i]),
        "projected_ecd_nm": float(2.0 * math.sqrt(b["area"][i] / math.pi)),
        "shape": ("sphere", "irregular", "faceted")[int(b["kind"][i])],
        "phase": "silver" if b["silver"][i] else m.phase,
        "aggregate": int(agg_id[i]) if agg_id[i] > 0 else None,
        "mode": None if b["mode"][i] < 0 else int(b["mode"][i]),
        "touches_edge": bool(stats["touches"][i]),
        "visible_fraction": float(stats["visible"][i] / stats["silhouette"][i]),
    } for i in seen]
    prim = lut[owner]
    to_agg = np.concatenate([[0], np.where(agg_id[seen] > 0, agg_id[seen], np.arange(1, seen.size + 1))])
    return {"primaries": primaries, "aggregates": aggregates, "owner": prim,
            "aggregate_owner": to_agg[prim].astype(np.int32), "binder": binder,
            "n_rendered": int(n)}
