"""Small synthetic electrodes and manifests that the orchestration tests share."""

from __future__ import annotations

from pipeline import synth

__all__ = ["RECIPE", "RHO_FREE", "electrode", "manifest", "paired_export", "thickness_for"]

RECIPE = {"carbon_black/40nm": 3.0, "carbon_black/80nm": 3.0, "silver": 2.0, "pvdf": 0.56}
RHO_FREE = 2.2942  # g/cm3, the recipe's pore-free density


def thickness_for(porosity: float, areal_mass: float = 2.0) -> float:
    return round(areal_mass * 1e-3 / (RHO_FREE * (1.0 - porosity)) * 1e4, 2)


def electrode(folder, *, sa=(0.05, 0.052), sz=(0.6, 0.62), xsec_porosity=0.35, seed=0,
              psd=True, surface=True):
    """A small electrode folder: psd and surface SEM, a cross-section, two height maps."""
    folder.mkdir(parents=True, exist_ok=True)
    if psd:
        img, _ = synth.particle_image((384, 512), seed=seed)
        synth.write_sem_tiff(folder / "psd-01.tif", img, pixel_um=0.002)
    if surface:
        img, _ = synth.surface_image((240, 320), n_protrusions=6, seed=seed)
        synth.write_sem_tiff(folder / "surface-100x.tif", img, pixel_um=1.0)
    img, _ = synth.cross_section_image((256, 320), porosity=xsec_porosity, layer_rows=(40, 200),
                                       seed=seed)
    synth.write_sem_tiff(folder / "xsec-01.tif", img, pixel_um=0.05)
    for i, (a, z) in enumerate(zip(sa, sz), 1):
        h, _ = synth.height_map((96, 128), pixel_um=0.2, sa_um=a, sz_um=z, seed=seed + i)
        synth.write_x3p(folder / f"height-0{i}.x3p", h, dx_um=0.2, dy_um=0.2)
    (folder / "notes.txt").write_text("operator notes")
    return folder


def paired_export(root, pressed="pressed", coated="as-coated"):
    """A pressed electrode (porosity 0.30) and its before-pressing partner (0.55), measured
    on their own (cross-sections and height maps) and paired in samples.toml."""
    electrode(root / pressed, xsec_porosity=0.30, seed=7, psd=False, surface=False)
    electrode(root / coated, xsec_porosity=0.55, seed=8, psd=False, surface=False)
    (root / "samples.toml").write_text(
        f'schema_version = 1\n[[sample]]\nid = "{coated}"\nstate = "before"\n'
        f'[[sample]]\nid = "{pressed}"\npair = "{coated}"\n')
    return root


def manifest(path, entries):
    lines = ["schema_version = 1", 'id = "test"']
    for sid, (after, before) in entries.items():
        lines += ["[[sample]]", f'id = "{sid}"', f"thickness_um = {thickness_for(after)}",
                  "areal_mass_mg_cm2 = 2.0", "u_thickness_um = 0.05",
                  "u_areal_mass_mg_cm2 = 0.005", "[sample.recipe]"]
        lines += [f'"{k}" = {v}' for k, v in RECIPE.items()]
        if before is not None:
            lines += ["[sample.before]", f"thickness_um = {thickness_for(before)}",
                      "areal_mass_mg_cm2 = 2.0"]
    path.write_text("\n".join(lines) + "\n")
