"""Write the example electrodes in sample_images/ with pipeline.synth.

Four synthetic electrodes modelled on the patent's Embodiment 1 and Comparative Examples 1-3
(carbon-black sizes, porosity before/after isostatic pressing from Table 1, Sa and Sz from
Table 2). They are NOT measurements. Every file is made by `pipeline.synth` with fixed seeds, so
a second run writes identical bytes::

    python sample_images/make_samples.py [--out sample_images] [--only comparative-2]

Layout (what ``electrode-qc run`` reads): ``<out>/samples.toml`` and one folder per electrode
with ``psd-01.tif`` (high-magnification SEM), ``surface-100x.tif`` (100x SEM of the surface),
``xsec-01.tif`` (SEM cross-section), ``height-01.x3p`` and ``height-02.x3p`` (confocal height
maps), and ``<file>.truth.json`` beside each.

The sizes are set by the 25 MB budget of the folder: the two 512 x 512 height maps of each
electrode are float64 X3P and take ~2 MB each (random heights hardly deflate), and
`write_sem_tiff` writes uncompressed TIFF, so the psd fields are cut to the area that still
holds >= 500 whole particles per carbon mode (checked below), and the 100x surface and the
cross-section images are 640 x 480.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from pipeline import synth

HERE = Path(__file__).resolve().parent
MATERIALS = HERE.parent / "calibration" / "materials.toml"

AREAL_MASS_MG_CM2 = 2.0  # the same before and after pressing (pressing does not remove mass)
U_AREAL_MASS_MG_CM2 = 0.01
U_THICKNESS_UM = 0.1
PSD_MIN_PER_MODE = 500  # whole (not edge-touching) particles per carbon mode in a psd field
SURFACE_SHAPE = (480, 640)  # rows, columns at 1 um/px
SURFACE_PIXEL_UM = 1.0
XSEC_SHAPE = (480, 640)  # at 50 nm/px: a 32 x 24 um field
XSEC_PIXEL_UM = 0.05
XSEC_TOP_ROW = 40  # the layer starts here; its height in rows is thickness / pixel
HEIGHT_SHAPE = (512, 512)
HEIGHT_PIXEL_UM = 0.14
HEIGHT_INVALID = 0.005

# Recipes (g) of the patent's examples: 6 g carbon black (3 + 3 or 6), 2 g Ag, 9.33 g of a
# 6 % PVdF solution = 0.56 g PVdF solids. Keys are calibration/materials.toml names + grade.
ELECTRODES = [
    {
        "id": "embodiment-1",
        "title": "Embodiment 1 (40 + 80 nm carbon black)",
        "recipe": {"carbon_black/40nm": 3.0, "carbon_black/80nm": 3.0, "silver": 2.0, "pvdf": 0.56},
        "porosity_pct": (57.1, 36.4),  # Table 1: before, after isostatic pressing
        "modes": ((40.0, 0.12, 0.5), (80.0, 0.12, 0.5)),  # median nm, sigma ln d, number share
        "psd_pixel_nm": 2.0,
        "psd_shape": (1152, 1536),
        "surface_protrusions": 5,
        "height": [(0.068, 0.90), (0.072, 0.94)],  # (Sa, Sz) um, means 0.07 / 0.92 (Table 2)
        "height_bumps": (2, 0.3),  # protrusions per map, height um
        "seed": 1000,
    },
    {
        "id": "comparative-1",
        "title": "Comparative Example 1 (40 nm carbon black only)",
        "recipe": {"carbon_black/40nm": 6.0, "silver": 2.0, "pvdf": 0.56},
        "porosity_pct": (66.6, 44.5),
        "modes": ((40.0, 0.12, 1.0),),
        "psd_pixel_nm": 2.0,
        "psd_shape": (672, 896),
        "surface_protrusions": 25,
        "height": [(0.126, 1.10), (0.134, 1.16)],  # means 0.13 / 1.13
        "height_bumps": (3, 0.5),
        "seed": 2000,
    },
    {
        "id": "comparative-2",
        "title": "Comparative Example 2 (120 nm carbon black only)",
        "recipe": {"carbon_black/120nm": 6.0, "silver": 2.0, "pvdf": 0.56},
        "porosity_pct": (69.3, 50.3),
        "modes": ((120.0, 0.12, 1.0),),
        "psd_pixel_nm": 5.0,
        "psd_shape": (576, 768),
        "surface_protrusions": 60,
        "height": [(0.175, 1.48), (0.185, 1.56)],  # means 0.18 / 1.52
        "height_bumps": (5, 0.8),
        "seed": 3000,
    },
    {
        "id": "comparative-3",
        "title": "Comparative Example 3 (120 + 200 nm carbon black)",
        "recipe": {"carbon_black/120nm": 3.0, "carbon_black/200nm": 3.0, "silver": 2.0, "pvdf": 0.56},
        "porosity_pct": (71.0, 53.0),
        "modes": ((120.0, 0.12, 0.5), (200.0, 0.12, 0.5)),
        "psd_pixel_nm": 5.0,
        "psd_shape": (1088, 1440),
        "surface_protrusions": 70,
        # not in the patent: chosen rougher than Comparative Example 2, means 0.20 / 1.70
        "height": [(0.195, 1.65), (0.205, 1.75)],
        "height_bumps": (6, 0.9),
        "seed": 4000,
    },
]
TILTS = [(0.003, -0.002), (-0.002, 0.004)]  # um/um, map 1 and map 2


def _densities() -> dict[str, float]:
    """Material -> true density (g/cm3) from calibration/materials.toml."""
    with MATERIALS.open("rb") as f:
        mats = tomllib.load(f)["materials"]
    return {name: float(m["density_g_cm3"]) for name, m in mats.items()}


def specific_volume_cm3_g(recipe: dict[str, float]) -> float:
    """sum_i w_i / rho_i of a recipe (the inverse of its pore-free density)."""
    rho = _densities()
    total = sum(recipe.values())
    return sum(m / total / rho[name.split("/")[0]] for name, m in recipe.items())


def thickness_um(recipe: dict[str, float], porosity_pct: float,
                 areal_mass_mg_cm2: float = AREAL_MASS_MG_CM2) -> float:
    """Layer thickness (um, rounded to 0.01) whose gravimetric porosity is `porosity_pct`.

    ``t = m_A * sum(w_i / rho_i) / (1 - P)``; mg/cm2 * cm3/g = 1e-3 cm = 10 um.
    """
    t = areal_mass_mg_cm2 * 10.0 * specific_volume_cm3_g(recipe) / (1.0 - porosity_pct / 100.0)
    return round(t, 2)


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def manifest_text() -> str:
    """samples.toml (schema_version 1) for the four electrodes."""
    lines = [
        "# Synthetic example electrodes modelled on the patent's Embodiment 1 and Comparative",
        "# Examples 1-3 (not measurements). Written by sample_images/make_samples.py: thickness is",
        "# computed from the areal mass, the recipe and calibration/materials.toml so that the",
        "# gravimetric porosity reproduces Table 1 (before and after isostatic pressing).",
        "schema_version = 1",
        'id = "patent-examples"',
    ]
    for e in ELECTRODES:
        before, after = e["porosity_pct"]
        lines += [
            "",
            "[[sample]]",
            f'id = {_toml_value(e["id"])}',
            f'title = {_toml_value(e["title"])}',
            'state = "after"',
            f"thickness_um = {thickness_um(e['recipe'], after)!r}  # Table 1: {after} % after",
            f"u_thickness_um = {U_THICKNESS_UM!r}",
            f"areal_mass_mg_cm2 = {AREAL_MASS_MG_CM2!r}",
            f"u_areal_mass_mg_cm2 = {U_AREAL_MASS_MG_CM2!r}",
            f"expected_min_diameter_nm = {min(m[0] for m in e['modes']):g}",
            "[sample.recipe]",
            *(f'"{name}" = {mass!r}' for name, mass in e["recipe"].items()),
            "[sample.before]",
            f"thickness_um = {thickness_um(e['recipe'], before)!r}  # Table 1: {before} % before",
            f"u_thickness_um = {U_THICKNESS_UM!r}",
            f"areal_mass_mg_cm2 = {AREAL_MASS_MG_CM2!r}",
            f"u_areal_mass_mg_cm2 = {U_AREAL_MASS_MG_CM2!r}",
        ]
    return "\n".join(lines) + "\n"


def _interior_counts(truth: dict) -> dict[str, int]:
    """Particles not touching the field edge, per carbon mode ("carbon_mode_<i>") and silver."""
    counts = {f"carbon_mode_{i}": 0 for i in range(len(truth["modes"]))} | {"silver": 0}
    for p in truth["particles"]:
        if not p["touches_edge"]:
            counts["silver" if p["phase"] == "silver" else f"carbon_mode_{p['mode']}"] += 1
    return counts


def write_electrode(e: dict, out: Path) -> dict:
    """Write the five images and their truth files of electrode `e` into ``out / e["id"]``."""
    folder = out / e["id"]
    folder.mkdir(parents=True, exist_ok=True)
    seed = e["seed"]
    summary: dict = {"id": e["id"]}

    # high-magnification SEM of the particles (role psd)
    img, truth = synth.particle_image(e["psd_shape"], pixel_nm=e["psd_pixel_nm"], modes=e["modes"],
                                      seed=seed + 1)
    counts = _interior_counts(truth)
    short = {k: v for k, v in counts.items() if k.startswith("carbon") and v < PSD_MIN_PER_MODE}
    if short:
        raise RuntimeError(f"{e['id']}: psd field holds too few whole particles: {short}")
    truth.update(sample_id=e["id"], interior_counts=counts)
    path = synth.write_sem_tiff(folder / "psd-01.tif", img, pixel_um=e["psd_pixel_nm"] / 1000.0)
    synth.write_truth(path, truth)
    summary["psd"] = counts

    # 100x SEM of the surface with protrusions (role surface)
    img, truth = synth.surface_image(SURFACE_SHAPE, n_protrusions=e["surface_protrusions"],
                                     seed=seed + 4)
    if truth["count"] != e["surface_protrusions"]:
        raise RuntimeError(f"{e['id']}: placed {truth['count']} of "
                           f"{e['surface_protrusions']} surface protrusions")
    truth.update(sample_id=e["id"], pixel_um=SURFACE_PIXEL_UM)
    path = synth.write_sem_tiff(folder / "surface-100x.tif", img, pixel_um=SURFACE_PIXEL_UM)
    synth.write_truth(path, truth)
    summary["surface_protrusions"] = truth["count"]

    # SEM cross-section at the after-pressing porosity; layer height = thickness after
    t_after = thickness_um(e["recipe"], e["porosity_pct"][1])
    rows = round(t_after / XSEC_PIXEL_UM)
    img, truth = synth.cross_section_image(
        XSEC_SHAPE, porosity=e["porosity_pct"][1] / 100.0,
        layer_rows=(XSEC_TOP_ROW, XSEC_TOP_ROW + rows), seed=seed + 3)
    truth.update(sample_id=e["id"], pixel_um=XSEC_PIXEL_UM,
                 layer_thickness_um=round(rows * XSEC_PIXEL_UM, 4))
    path = synth.write_sem_tiff(folder / "xsec-01.tif", img, pixel_um=XSEC_PIXEL_UM)
    synth.write_truth(path, truth)
    summary["xsec_porosity"] = truth["porosity_frac"]

    # confocal height maps with the plane-levelled Sa and Sz of Table 2
    n_bumps, bump_um = e["height_bumps"]
    summary["height"] = []
    for k, ((sa, sz), tilt) in enumerate(zip(e["height"], TILTS, strict=True), start=1):
        z, truth = synth.height_map(
            HEIGHT_SHAPE, pixel_um=HEIGHT_PIXEL_UM, sa_um=sa, sz_um=sz, protrusions=n_bumps,
            protrusion_height_um=bump_um, tilt=tilt, invalid_fraction=HEIGHT_INVALID,
            seed=seed + 10 + k)
        truth.update(sample_id=e["id"])
        path = synth.write_x3p(folder / f"height-{k:02d}.x3p", z, dx_um=HEIGHT_PIXEL_UM,
                               dy_um=HEIGHT_PIXEL_UM)
        synth.write_truth(path, truth)
        summary["height"].append((sa, sz))
    return summary


def _check_manifest() -> None:
    """The manifest's thicknesses give Table 1 within 0.1 points (gravimetric_porosity)."""
    from pipeline.gravimetric import gravimetric_porosity

    for e in ELECTRODES:
        for p_pct in e["porosity_pct"]:
            got = gravimetric_porosity(thickness_um=thickness_um(e["recipe"], p_pct),
                                       areal_mass_mg_cm2=AREAL_MASS_MG_CM2,
                                       recipe=e["recipe"])["porosity_frac"] * 100.0
            if abs(got - p_pct) > 0.1:
                raise RuntimeError(f"{e['id']}: porosity {got:.3f} % is not Table 1's {p_pct} %")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    ap.add_argument("--only", choices=[e["id"] for e in ELECTRODES], action="append",
                    help="write only this electrode (repeatable); samples.toml is always written")
    args = ap.parse_args(argv)
    _check_manifest()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samples.toml").write_text(manifest_text())
    for e in ELECTRODES:
        if args.only and e["id"] not in args.only:
            continue
        t0 = time.perf_counter()
        s = write_electrode(e, args.out)
        print(f"{e['id']}: psd {s['psd']}, surface protrusions {s['surface_protrusions']}, "
              f"cross-section porosity {s['xsec_porosity']:.4f}, height (Sa, Sz) {s['height']}, "
              f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
