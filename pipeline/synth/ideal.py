"""Idealised generators: height maps, SEM particle fields, cross-sections and surfaces, and the
files instruments would write for them (`pipeline.synth`: seeded, truth beside the data).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.synth.common import place_spheres, shading, to_counts

__all__ = [
    "cross_section_image",
    "height_map",
    "match_labels",
    "particle_image",
    "surface_image",
    "write_sem_tiff",
    "write_truth",
    "write_x3p",
]


def height_map(
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_um: float = 0.1,
    sa_um: float = 0.05,
    sz_um: float | None = None,
    correlation_um: float = 1.0,
    protrusions: int = 0,
    protrusion_height_um: float = 0.5,
    protrusion_sigma_um: float = 1.0,
    tilt: tuple[float, float] = (0.0, 0.0),
    invalid_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A confocal-like height map with a chosen roughness and Gaussian protrusions.

    The roughness is Gaussian random texture (white noise filtered to an isotropic
    correlation length) scaled so that its Sa, on its own and about its own mean, equals
    `sa_um` exactly. Protrusions are Gaussian bumps of the given height and width at random
    positions at least four widths apart and two widths from the edges; a tilt (um/um) is
    added on top and unmeasured points (NaN) are scattered at random.

    With `sz_um`, the whole map (texture and protrusions, least-squares plane removed, valid
    points) is made to have Sa = `sa_um` and Sz = `sz_um` instead: the texture's height
    distribution is reshaped by ``sign(r) |r|**p`` (p < 1 shortens its tails, p > 1 lengthens
    them) and scaled, with p and the scale solved by Brent's method. The
    protrusions keep their absolute height, so `sz_um` must exceed the tallest of them.

    Returns
    -------
    z : (M, N) float64 ndarray
        Heights in micrometres, NaN where "unmeasured".
    truth : dict
        ``sa_roughness_um``, ``protrusions`` (list of {"x_um", "y_um", "height_um"}),
        ``pixel_um``, ``tilt``, ``invalid_fraction``, ``seed`` and the arguments.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    ny, nx = shape
    rough = gaussian_filter(rng.normal(size=shape), correlation_um / pixel_um / 2.0, mode="wrap")
    rough -= rough.mean()
    rough *= sa_um / np.abs(rough).mean()
    y, x = (np.mgrid[0:ny, 0:nx] + 0.5) * pixel_um
    z = rough.copy()
    bumps: list[dict[str, float]] = []
    margin = 2 * protrusion_sigma_um
    for _ in range(protrusions * 50):
        if len(bumps) == protrusions:
            break
        cx = rng.uniform(margin, nx * pixel_um - margin)
        cy = rng.uniform(margin, ny * pixel_um - margin)
        if all(math.hypot(cx - b["x_um"], cy - b["y_um"]) > 4 * protrusion_sigma_um for b in bumps):
            bumps.append({"x_um": cx, "y_um": cy, "height_um": protrusion_height_um})
    for b in bumps:
        z += b["height_um"] * np.exp(
            -((x - b["x_um"]) ** 2 + (y - b["y_um"]) ** 2) / (2 * protrusion_sigma_um**2)
        )
    invalid = rng.random(shape) < invalid_fraction if invalid_fraction > 0 else None
    if sz_um is not None:
        z = _shape_sa_sz(rough / sa_um, z - rough, sa_um, sz_um, invalid)
    z += tilt[0] * x + tilt[1] * y
    if invalid is not None:
        z[invalid] = np.nan
    truth = {
        "kind": "height",
        "sa_roughness_um": sa_um if sz_um is None else None,
        "sa_um": sa_um if sz_um is not None else None,
        "sz_um": sz_um,
        "protrusions": bumps,
        "pixel_um": pixel_um,
        "shape": [ny, nx],
        "tilt": list(tilt),
        "invalid_fraction": invalid_fraction,
        "correlation_um": correlation_um,
        "seed": seed,
    }
    return z, truth


def _shape_sa_sz(r: np.ndarray, bumps: np.ndarray, sa: float, sz: float,
                 invalid: np.ndarray | None) -> np.ndarray:
    """``scale * sign(r) |r|**p + bumps`` whose levelled Sa and Sz are `sa` and `sz`."""
    from scipy.optimize import brentq

    if not (0 < sa < sz):
        raise ValueError(f"need 0 < sa_um < sz_um, got sa {sa} and sz {sz}")
    if bumps.max() >= sz:
        raise ValueError(f"protrusions of {bumps.max():.3g} um do not fit in Sz {sz} um")
    ny, nx = r.shape
    ok = np.ones(r.shape, bool) if invalid is None else ~invalid
    yy, xx = np.nonzero(ok)
    design = np.column_stack([np.ones(yy.size), xx - nx / 2.0, yy - ny / 2.0])
    pinv = np.linalg.pinv(design)
    rv, bv = r[ok], bumps[ok]

    def levelled(p: float, scale: float) -> np.ndarray:
        v = scale * np.sign(rv) * np.abs(rv) ** p + bv
        return v - design @ (pinv @ v)

    def scale_for_sa(p: float) -> float:
        k1 = sa / np.abs(levelled(p, 1.0) - levelled(p, 0.0)).mean()  # texture alone
        hi = 2.0 * k1
        while np.abs(levelled(p, hi)).mean() < sa:
            hi *= 2.0
        return brentq(lambda k: np.abs(levelled(p, k)).mean() - sa, 0.0, hi, rtol=1e-10)

    def sz_of(p: float) -> float:
        v = levelled(p, scale_for_sa(p))
        return float(v.max() - v.min())

    lo, hi = 0.2, 4.0
    sz_lo, sz_hi = sz_of(lo), sz_of(hi)
    if not sz_lo <= sz <= sz_hi:
        raise ValueError(f"Sz {sz} um cannot be reached with Sa {sa} um on this map "
                         f"(Sz from {sz_lo:.3g} to {sz_hi:.3g} um)")
    p = brentq(lambda q: sz_of(q) - sz, lo, hi, rtol=1e-10)  # Sz rises with p at a fixed Sa
    k = scale_for_sa(p)
    return k * np.sign(r) * np.abs(r) ** p + bumps


def write_x3p(path: str | Path, z_um: np.ndarray, *, dx_um: float, dy_um: float,
              manufacturer: str = "electrode-qc synth", model: str = "height_map") -> Path:
    """Write an ISO 25178-72 X3P (SUR, float64 metres; NaN marks unmeasured points)."""
    path = Path(path)
    ny, nx = z_um.shape
    data = np.asarray(z_um, dtype=np.float64) * 1e-6
    main = f"""<?xml version="1.0" encoding="UTF-8"?>
<p:ISO5436_2 xmlns:p="http://www.opengps.eu/2008/ISO5436_2">
<Record1><Revision>ISO5436 - 2000</Revision><FeatureType>SUR</FeatureType><Axes>
<CX><AxisType>I</AxisType><DataType>D</DataType><Increment>{dx_um * 1e-6!r}</Increment><Offset>0</Offset></CX>
<CY><AxisType>I</AxisType><DataType>D</DataType><Increment>{dy_um * 1e-6!r}</Increment><Offset>0</Offset></CY>
<CZ><AxisType>A</AxisType><DataType>D</DataType></CZ></Axes></Record1>
<Record2><Date>2026-01-01T00:00:00</Date><Instrument><Manufacturer>{manufacturer}</Manufacturer>
<Model>{model}</Model><Serial>0</Serial><Version>1</Version></Instrument>
<CalibrationDate>2026-01-01T00:00:00</CalibrationDate><ProbingSystem><Type>NonContacting</Type>
<Identification>synthetic</Identification></ProbingSystem><Comment>synthetic</Comment></Record2>
<Record3><MatrixDimension><SizeX>{nx}</SizeX><SizeY>{ny}</SizeY><SizeZ>1</SizeZ></MatrixDimension>
<DataLink><PointDataLink>bindata/data.bin</PointDataLink></DataLink></Record3>
<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4></p:ISO5436_2>"""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in (("main.xml", main.encode("utf-8")),
                              ("bindata/data.bin", data.astype("<f8").tobytes())):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # same bytes each run
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, payload)
    return path


def write_truth(path: str | Path, truth: dict[str, Any]) -> Path:
    """``<path>.truth.json`` beside a generated file."""
    out = Path(str(path) + ".truth.json")
    out.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return out


# --------------------------------------------------------------------------- SEM images

def particle_image(
    shape: tuple[int, int] = (1536, 2048),
    *,
    pixel_nm: float = 2.0,
    modes: tuple[tuple[float, float, float], ...] = ((40.0, 0.12, 0.5), (80.0, 0.12, 0.5)),
    silver_fraction: float = 0.05,
    silver_diameter_nm: float = 150.0,
    coverage: float = 0.9,
    seed: int = 0,
    dose: float = 200.0,
    bits: int = 8,
    return_labels: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A secondary-electron image of touching carbon spheres and brighter silver particles.

    Diameters are drawn i.i.d.: a particle is silver with probability `silver_fraction`
    (lognormal about `silver_diameter_nm`, sigma 0.12 of ln d), otherwise carbon from one of
    `modes` = ((median diameter nm, sigma of ln d, number share), ...) chosen by its share.
    They are packed in 2-D projection (`place_spheres`: touching, overlapping by at most 15 %
    of the smaller radius) until the summed disc area reaches `coverage` of the field or the
    packing saturates (about 0.6-0.7 here, so the default 0.9 means "as dense as it goes").
    Spheres rest on the substrate and are drawn with a z-buffer, so an overlap shows as a
    neck. Signal: pores 0.06, carbon 0.33, silver 0.66 of full scale, times an SE edge
    factor rising from 1 at a sphere's centre to 1.5 at its rim; then a Gaussian PSF
    (sigma 1 px), a slow +/- 8 % shading and Poisson noise (`dose` electrons at full scale).

    Returns
    -------
    image : (M, N) uint8 (or uint16 with ``bits=16``) ndarray
    truth : dict
        ``particles``: list of {"id" (the label value), "x_nm", "y_nm" (pixel centre i at
        (i + 0.5) * pixel_nm, as the readers' coordinates), "diameter_nm", "phase"
        ("carbon"/"silver"), "mode" (index into `modes`, None for silver), "touches_edge"};
        ``coverage_achieved`` (labelled pixel fraction), ``n_carbon``, ``n_silver``, the
        arguments, and ``labels`` ((M, N) int32, 0 = pore) only with `return_labels`.
    """
    from scipy.ndimage import gaussian_filter

    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits!r}")
    shares = np.array([m[2] for m in modes], float)
    if shares.size == 0 or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"modes need positive number shares: {modes!r}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    w_nm, h_nm = nx * pixel_nm, ny * pixel_nm
    mean_area = sum(s * math.pi / 4 * (m[0] ** 2) * math.exp(2 * m[1] ** 2)
                    for m, s in zip(modes, shares / shares.sum()))
    n_draw = int(1.5 * coverage * w_nm * h_nm / mean_area) + 10
    silver = rng.random(n_draw) < silver_fraction
    mode = rng.choice(len(modes), size=n_draw, p=shares / shares.sum())
    med = np.array([m[0] for m in modes])[mode]
    sig = np.array([m[1] for m in modes])[mode]
    d_nm = np.where(silver, silver_diameter_nm * np.exp(0.12 * rng.standard_normal(n_draw)),
                    med * np.exp(sig * rng.standard_normal(n_draw)))
    xy = place_spheres(d_nm, w_nm, h_nm, coverage * w_nm * h_nm, rng)
    n = len(xy)

    zbuf = np.full(shape, -np.inf, np.float32)
    signal = np.full(shape, 0.06, np.float32)
    labels = np.zeros(shape, np.int32)
    particles: list[dict[str, Any]] = []
    for i in range(n):
        x, y, rad = xy[i, 0], xy[i, 1], d_nm[i] / 2.0
        c0, c1 = max(int((x - rad) / pixel_nm), 0), min(int((x + rad) / pixel_nm) + 2, nx)
        r0, r1 = max(int((y - rad) / pixel_nm), 0), min(int((y + rad) / pixel_nm) + 2, ny)
        px = ((np.arange(c0, c1) + 0.5) * pixel_nm - x) / rad
        py = ((np.arange(r0, r1) + 0.5) * pixel_nm - y) / rad
        rho2 = py[:, None] ** 2 + px[None, :] ** 2
        cos = np.sqrt(np.clip(1.0 - rho2, 0.0, None))
        z = (rad * (1.0 + cos)).astype(np.float32)
        win = (rho2 <= 1.0) & (z > zbuf[r0:r1, c0:c1])
        edge = 1.0 + 0.25 * (np.minimum(1.0 / np.maximum(cos, 1e-3), 3.0) - 1.0)
        base = 0.66 if silver[i] else 0.33
        zbuf[r0:r1, c0:c1][win] = z[win]
        signal[r0:r1, c0:c1][win] = (base * edge)[win]
        labels[r0:r1, c0:c1][win] = i + 1
        particles.append({
            "id": i + 1, "x_nm": float(x), "y_nm": float(y), "diameter_nm": float(d_nm[i]),
            "phase": "silver" if silver[i] else "carbon",
            "mode": None if silver[i] else int(mode[i]),
            "touches_edge": bool(x - rad < 0 or y - rad < 0 or x + rad > w_nm or y + rad > h_nm),
        })
    signal = gaussian_filter(signal, 1.0) * shading(shape, rng, 0.08)
    image = to_counts(signal, rng, dose, bits)
    truth: dict[str, Any] = {
        "kind": "sem_particles",
        "particles": particles,
        "n_carbon": int(np.count_nonzero(~silver[:n])),
        "n_silver": int(np.count_nonzero(silver[:n])),
        "coverage_achieved": float(np.count_nonzero(labels) / labels.size),
        "pixel_nm": pixel_nm,
        "shape": [ny, nx],
        "modes": [list(m) for m in modes],
        "silver_fraction": silver_fraction,
        "silver_diameter_nm": silver_diameter_nm,
        "coverage": coverage,
        "seed": seed,
    }
    if return_labels:
        truth["labels"] = labels
    return image, truth


def write_sem_tiff(path: str | Path, image: np.ndarray, *, pixel_um: float,
                   databar_rows: int = 70, vendor: str = "fei", hv_volts: float = 5000.0,
                   detector: str = "TLD") -> Path:
    """Write `image` as an FEI/Thermo Fisher-style TIFF with an appended data bar.

    The page is the image with `databar_rows` rows below it (a grey band with bright,
    text-like blocks); tag 34682 holds the xT INI text: ``[Scan] PixelWidth/PixelHeight``
    (metres), ``[Image] ResolutionX/ResolutionY`` (the image without the bar), ``[Beam]
    HV`` (volts), ``[EBeam]`` HV/HFW/WD, ``[Detectors] Name``, ``[PrivateFei]
    DatabarHeight``. Only ``vendor="fei"`` is written.
    """
    import tifffile

    if vendor != "fei":
        raise ValueError(f"write_sem_tiff writes vendor 'fei' only, not {vendor!r}")
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ValueError("image must be a 2-D uint8 or uint16 array")
    ny, nx = img.shape
    full = np.iinfo(img.dtype).max
    bar = np.full((databar_rows, nx), int(full * 0.25), img.dtype)
    brng = np.random.default_rng(34682)  # fixed: the bar's "text" does not depend on the image
    col = 8
    while databar_rows >= 12 and col < nx - 16:
        w = int(brng.integers(6, 40))
        r0 = int(brng.integers(4, max(databar_rows // 2, 5)))
        bar[r0:r0 + min(10, databar_rows - r0 - 2), col:min(col + w, nx - 8)] = full
        col += w + int(brng.integers(4, 30))
    page = np.vstack([img, bar]) if databar_rows else img
    p_m = pixel_um * 1e-6
    ini = (
        "[User]\nDate=01/01/2026\nTime=12:00:00 PM\n"
        "[System]\nSystemType=electrode-qc synth\nDnumber=D0000\n"
        f"[Beam]\nHV={hv_volts!r}\nBeam=EBeam\n"
        f"[EBeam]\nHV={hv_volts!r}\nHFW={p_m * nx!r}\nWD=0.004\n"
        f"[Scan]\nPixelWidth={p_m!r}\nPixelHeight={p_m!r}\n"
        f"[Image]\nResolutionX={nx}\nResolutionY={ny}\n"
        f"[Detectors]\nName={detector}\nMode=SE\n"
        f"[PrivateFei]\nDatabarHeight={databar_rows}\n"
    )
    path = Path(path)
    tifffile.imwrite(path, page, extratags=[(34682, "s", 0, ini, True)])
    return path


def cross_section_image(
    shape: tuple[int, int] = (768, 1024),
    *,
    porosity: float = 0.4,
    layer_rows: tuple[int, int] = (100, 600),
    disc_radius_px: tuple[float, float] = (5.0, 14.0),
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """An SEM cross-section: background, a porous layer, a dense current collector below.

    The layer (rows ``layer_rows[0]`` to ``layer_rows[1] - 1``) is filled with overlapping
    solid discs (radii uniform in `disc_radius_px`, clipped to the layer) until its pore
    fraction falls to `porosity`; one disc changes it by < 0.2 %, so the truth is within
    that of the request by construction. Grey levels: background 30, pores 35, solid 150
    with texture, collector 215; Gaussian blur (sigma 1 px) and noise.

    Returns
    -------
    image : (M, N) uint8 ndarray
    truth : dict
        ``porosity_frac`` (from the generated mask inside the layer), ``layer_top_row``,
        ``layer_bottom_row`` (inclusive), ``collector_side`` ("bottom"), ``n_discs``,
        ``solid_mask`` is not returned (regenerate with the same seed).
    """
    from scipy.ndimage import gaussian_filter

    if not 0.05 <= porosity <= 0.95:
        raise ValueError(f"porosity {porosity} is outside 0.05-0.95")
    top, bottom = layer_rows
    ny, nx = shape
    if not 0 <= top < bottom <= ny:
        raise ValueError(f"layer_rows {layer_rows} do not fit {ny} rows")
    rng = np.random.default_rng(seed)
    solid = np.zeros((bottom - top, nx), bool)
    target = (1.0 - porosity) * solid.size
    filled, n_discs = 0, 0
    while filled < target:
        rad = rng.uniform(*disc_radius_px)
        cy, cx = rng.uniform(0, bottom - top), rng.uniform(0, nx)
        r0, r1 = max(int(cy - rad), 0), min(int(cy + rad) + 2, bottom - top)
        c0, c1 = max(int(cx - rad), 0), min(int(cx + rad) + 2, nx)
        yy = np.arange(r0, r1)[:, None] + 0.5 - cy
        xx = np.arange(c0, c1)[None, :] + 0.5 - cx
        win = solid[r0:r1, c0:c1]
        new = (yy * yy + xx * xx <= rad * rad) & ~win
        filled += int(np.count_nonzero(new))
        win |= new
        n_discs += 1
    signal = np.full(shape, 30.0)
    texture = gaussian_filter(rng.normal(0.0, 1.0, solid.shape), 2.0)
    signal[top:bottom] = np.where(solid, 150.0 + 60.0 * texture, 35.0)
    signal[bottom:] = 215.0
    signal = gaussian_filter(signal, 1.0) + rng.normal(0.0, 6.0, shape)
    image = np.clip(np.rint(signal), 0, 255).astype(np.uint8)
    truth = {
        "kind": "sem_cross_section",
        "porosity_frac": float(1.0 - solid.mean()),
        "porosity_requested": porosity,
        "layer_top_row": top,
        "layer_bottom_row": bottom - 1,
        "collector_side": "bottom",
        "n_discs": n_discs,
        "shape": [ny, nx],
        "seed": seed,
    }
    return image, truth


def surface_image(
    shape: tuple[int, int] = (960, 1280),
    *,
    n_protrusions: int = 40,
    diameter_px: tuple[float, float] = (14.0, 26.0),
    amplitude: tuple[float, float] = (40.0, 80.0),
    noise: float = 6.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A 100x optical/SEM electrode surface with Gaussian protrusions of known position.

    Shading (a gradient and a broad curvature), correlated texture (sigma 4 grey levels,
    2.5 px correlation), Gaussian bumps (FWHM uniform in `diameter_px`, amplitude uniform in
    `amplitude` grey levels) placed at least 1.6 x the sum of the two FWHMs apart, and
    Gaussian noise of `noise` grey levels.

    Returns
    -------
    image : (M, N) uint8 ndarray
    truth : dict
        ``protrusions``: list of {"row", "col" (pixel-centre coordinates, 0 = first pixel),
        "diameter_px" (FWHM), "amplitude"}; ``count`` and the arguments.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    signal = 90.0 + 40.0 * xx / nx - 100.0 * (yy / ny - 0.4) ** 2 + np.zeros(shape)
    tex = gaussian_filter(rng.normal(0.0, 1.0, shape), 2.5)
    signal += 4.0 * tex / tex.std()
    fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0))
    bumps: list[dict[str, float]] = []
    for _ in range(n_protrusions * 200):
        if len(bumps) == n_protrusions:
            break
        d = rng.uniform(*diameter_px)
        r, c = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
        if any(math.hypot(r - b["row"], c - b["col"]) < 1.6 * (d + b["diameter_px"])
               for b in bumps):
            continue
        bumps.append({"row": r, "col": c, "diameter_px": d, "amplitude": rng.uniform(*amplitude)})
    for b in bumps:
        s = b["diameter_px"] / fwhm
        r0, r1 = int(max(b["row"] - 4 * s, 0)), int(min(b["row"] + 4 * s + 1, ny))
        c0, c1 = int(max(b["col"] - 4 * s, 0)), int(min(b["col"] + 4 * s + 1, nx))
        dy = np.arange(r0, r1)[:, None] - b["row"]
        dx = np.arange(c0, c1)[None, :] - b["col"]
        signal[r0:r1, c0:c1] += b["amplitude"] * np.exp(-(dy * dy + dx * dx) / (2 * s * s))
    signal += rng.normal(0.0, noise, shape)
    image = np.clip(np.rint(signal), 0, 255).astype(np.uint8)
    truth = {
        "kind": "sem_surface",
        "protrusions": bumps,
        "count": len(bumps),
        "shape": [ny, nx],
        "diameter_px": list(diameter_px),
        "amplitude": list(amplitude),
        "noise": noise,
        "seed": seed,
    }
    return image, truth


def match_labels(truth: np.ndarray, found: np.ndarray, *, iou: float = 0.5) -> dict[int, int]:
    """Pair truth regions with found regions one-to-one: ``{truth label: found label}``.

    Two regions are paired when their intersection over union exceeds `iou`. With
    ``iou >= 0.5`` a region can be paired at most once (two regions each overlapping more
    than half of their union with a third would have to overlap each other), so a truth
    particle that is split in two, merged with a neighbour or missed has no pair. Label 0 is
    background in both images.
    """
    truth = np.asarray(truth)
    found = np.asarray(found)
    if truth.shape != found.shape:
        raise ValueError(f"label images differ in shape: {truth.shape} vs {found.shape}")
    if iou < 0.5:
        raise ValueError(f"iou must be >= 0.5 for a one-to-one pairing, not {iou!r}")
    both = (truth > 0) & (found > 0)
    n_found = int(found.max()) + 1
    key = truth[both].astype(np.int64) * n_found + found[both]
    pairs, inter = np.unique(key, return_counts=True)
    t, f = pairs // n_found, pairs % n_found
    area_t = np.bincount(truth.ravel(), minlength=int(truth.max()) + 1)
    area_f = np.bincount(found.ravel(), minlength=n_found)
    ok = inter / (area_t[t] + area_f[f] - inter) > iou
    return {int(a): int(b) for a, b in zip(t[ok], f[ok])}


# Realistic SEM scenes (3-D bodies, rims, shadowing, a detector noise model) live in
# pipeline.synth.sem and pipeline.synth.xsec; re-exported here beside the ideal
# `particle_image` and `cross_section_image`.
