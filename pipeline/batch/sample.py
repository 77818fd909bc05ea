"""One sample: measure its files, aggregate per metric, decide claim 15, the particle claims
and the production gate. Returns a JSON-ready record, report previews and tables."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.batch.measure import measure_file
from pipeline.batch.records import SampleRecord
from pipeline.conformity import (
    ClaimsDecision,
    Decision,
    evaluate_layer_claims,
    evaluate_particle_claims,
    evaluate_spec,
    spec_name,
)
from pipeline.errors import ElectrodeQCError
from pipeline.gravimetric import gravimetric_porosity, void_reduction
from pipeline.segmentation.psd import counted, size_distribution
from pipeline.uncertainty import summarize

__all__ = ["failed_inputs", "file_context", "image_flags", "measure_sample"]

log = logging.getLogger(__name__)


def _pool(tables: list) -> Any:
    """Particle tables of several fields of view as one table for the distribution."""
    import pandas as pd

    pooled = pd.concat(tables, ignore_index=True)
    flags: list[str] = []
    for t in tables:
        flags += [f for f in t.attrs.get("flags", []) if f not in flags]
    ag = [t.attrs.get("ag_area_frac") for t in tables if t.attrs.get("ag_area_frac") is not None]
    px = [t.attrs["pixel_size_nm"] for t in tables if t.attrs.get("pixel_size_nm")]
    pooled.attrs = {
        "flags": flags,
        "ag_area_frac": float(np.mean(ag)) if ag else None,
        "pixel_size_nm": max(px, key=lambda p: max(p["x"], p["y"])) if px else None,
        "source_path": tables[0].attrs.get("source_path") if len(tables) == 1 else None,
    }
    return pooled


def _u_cal_rel(images: list[dict], key: str, default: float | None, flags: list[str],
               what: str) -> float | None:
    rel = [im.get(key) for im in images if im.get(key) is not None]
    if rel:
        return float(max(rel))
    if default is not None:
        flags.append(f"{what}: calibration uncertainty not stated by an instrument profile; "
                     f"the spec's default {default:g} (relative) is used")
    return default


def _gravimetric(entry: dict[str, Any], which: dict[str, Any] | None, flags: list[str]):
    recipe = entry.get("recipe")
    if not which or not recipe:
        return None
    t, m = which.get("thickness_um"), which.get("areal_mass_mg_cm2", entry.get("areal_mass_mg_cm2"))
    if t is None or m is None:
        return None
    for k, what in (("u_thickness_um", "thickness"), ("u_areal_mass_mg_cm2", "areal mass")):
        if which.get(k, entry.get(k)) is None:
            flags.append(f"gravimetric porosity: no uncertainty of the {what} in the manifest "
                         f"({k}); U leaves it out")
    try:
        g = gravimetric_porosity(
            thickness_um=t, areal_mass_mg_cm2=m, recipe=recipe,
            thickness_u_um=which.get("u_thickness_um", entry.get("u_thickness_um")) or 0.0,
            areal_mass_u=which.get("u_areal_mass_mg_cm2", entry.get("u_areal_mass_mg_cm2")) or 0.0)
    except ElectrodeQCError as exc:
        flags.append(f"gravimetric porosity: {exc.problem}")
        return None
    return {"value": g["porosity_frac"], "U": g["U_porosity_frac"],
            "u": g["u_porosity_frac"], "pore_free_density_g_cm3": g["pore_free_density_g_cm3"],
            "thickness_um": t, "areal_mass_mg_cm2": m}


def _protrusions(sf: list[dict], flags: list[str]):
    """Protrusion density per magnification class ({class: summary}) and the one summary
    when all fields share a class (None otherwise: densities seen at different
    magnifications are not averaged)."""
    classes: dict[str, list[float]] = {}
    for im in sf:
        cls = im["results"].get("magnification_class", "all")
        classes.setdefault(cls, []).append(im["results"]["per_mm2"])
    by = {cls: summarize(v) for cls, v in sorted(classes.items())}
    if len(by) > 1:
        flags.append(f"protrusions: fields of {len(by)} magnification classes "
                     f"({', '.join(by)}); densities are reported per class, not averaged")
        return by, None
    return by, next(iter(by.values()), None)


def _xsec_u(xs: list[dict]) -> list[float]:
    """The cross-sections' measurement uncertainty (k = 1) beside their spread: the mean of
    their own (the method's bias and the top surface: systematic, so not divided by the
    number of fields). Records without it (older results) give their threshold band's."""
    if not xs:
        return []
    u = [im["results"].get("u_porosity_frac") for im in xs]
    if any(v is None for v in u):
        u = [(im["results"]["band"][1] - im["results"]["band"][0]) / (2 * math.sqrt(3))
             for im in xs]
    return [float(np.mean(u))]


def _xsec_thickness(xs: list[dict]) -> dict[str, Any] | None:
    """Mean layer thickness of the cross-sections (um) and its U (k = 2): their spread and
    the mean of their own U in quadrature."""
    vals = [(im["results"].get("thickness_um"), im["results"].get("U_thickness_um")) for im in xs]
    vals = [(t, u) for t, u in vals if t is not None and u is not None]
    if not vals:
        return None

    s = summarize([v[0] for v in vals], u_other=[float(np.mean([v[1] / 2.0 for v in vals]))])
    return {"mean": s.mean, "U": s.U, "n": s.n}


def _layers(xs: list[dict], flags: list[str]) -> dict[str, Any] | None:
    """The sample's sub-layers from its cross-sections: ``n_layers`` (1 or 2 when they agree,
    None when they do not), ``n_fields``, and with two: the claim-11 ratio (mean over the
    fields) with U (k = 2: the fields' own mean U and their spread), the sub-layers'
    thicknesses (um when the pixel size is known) and the depth profile of the first field."""
    found = [im["results"].get("sublayers") for im in xs]
    found = [f for f in found if f]
    if not found:
        return None
    n = {f["n_layers"] for f in found}
    out: dict[str, Any] = {"n_layers": n.pop() if len(n) == 1 else None, "n_fields": len(found),
                           "profile": found[0].get("profile"),
                           "boundary_depth_px": found[0].get("boundary_depth_px"), "ratio_claim": None,
                           "U_ratio": None, "thickness_um": None, "U_thickness_um": None}
    if out["n_layers"] is None:
        flags.append("sub-layers: the cross-sections disagree on the number of sub-layers")
    if out["n_layers"] != 2:
        return out

    r = summarize([f["ratio_claim"] for f in found],
                  u_other=[float(np.mean([f["u_ratio"] for f in found]))])
    out.update(ratio_claim=r.mean, U_ratio=r.U)
    t = [f.get("thickness_um") for f in found]
    if all(x is not None for x in t):
        out["thickness_um"] = np.mean(np.array(t), axis=0).tolist()
        out["U_thickness_um"] = np.mean(np.array([f["U_thickness_um"] for f in found]), axis=0).tolist()
    return out


def _check_thickness(xs: dict[str, Any] | None, entry: dict[str, Any], flags: list[str]) -> None:
    """Flag a manifest thickness (the one gravimetric porosity uses) that the cross-sections
    contradict beyond the two uncertainties (k = 2)."""
    t_man = entry.get("thickness_um")
    if xs is None or t_man is None:
        return
    u_man = entry.get("u_thickness_um") or 0.0
    lim = math.hypot(xs["U"], 2.0 * float(u_man))
    if abs(xs["mean"] - float(t_man)) > lim:
        flags.append(f"thickness: the cross-sections give {xs['mean']:.3g} +/- {xs['U']:.2g} um "
                     f"(n={xs['n']}), the manifest {float(t_man):g} um; they disagree beyond "
                     "their uncertainties, and gravimetric porosity uses the manifest's")


def _inner_carbon(pooled):
    """Carbon particles that count for the statistics (`psd.counted`)."""
    return pooled[counted(pooled)]


def _metrics(images: list[dict], pooled, entry: dict[str, Any], gate_spec,
             flags: list[str]) -> dict[str, Any]:
    ok = [im for im in images if im["status"] == "ok"]
    by = {r: [im for im in ok if im["role"] == r] for r in ("psd", "surface", "cross_section",
                                                          "height")}
    default_rel = gate_spec.default_u_calibration_rel
    m: dict[str, Any] = {}
    hts = by["height"]
    rel_z = _u_cal_rel(hts, "z_scale_uncertainty_rel", default_rel, flags, "height maps") \
        if hts else None
    for key in ("Sa_um", "Sz_um"):
        m[key] = summarize([im["results"][key] for im in hts], u_cal_rel=rel_z)
    xs = by["cross_section"]
    m["porosity_cross_section"] = summarize(
        [im["results"]["porosity_frac"] for im in xs], u_other=_xsec_u(xs))
    m["thickness_cross_section_um"] = _xsec_thickness(xs)
    m["layers"] = _layers(xs, flags)
    sf = by["surface"]
    m["protrusions_by_class"], m["protrusions_per_mm2"] = _protrusions(sf, flags)
    m["porosity_gravimetric"] = _gravimetric(entry, entry, flags)
    _check_thickness(m["thickness_cross_section_um"], entry, flags)
    before = entry.get("before")
    m["porosity_gravimetric_before"] = _gravimetric(entry, before, flags) if before else None
    m["psd"], m["median_aspect_ratio"] = None, None
    if pooled is not None:
        try:
            d = size_distribution(pooled)
            m["psd"] = {k: d[k] for k in (
                "n", "x10_nm", "x50_nm", "x90_nm", "modes", "bic_k", "bic_k_raw",
                "share_ge_100nm", "merge_suspect_share", "ag_area_frac", "mode_ratio",
                "mode_difference_nm", "number", "volume", "primary_size", "silver", "excluded",
                "flags")}
            m["psd"]["n_fields"] = int(pooled["path"].nunique())
        except ElectrodeQCError as exc:
            flags.append(f"size distribution: {exc.problem}")
        inner = _inner_carbon(pooled)
        if len(inner):
            m["median_aspect_ratio"] = float(inner["aspect_ratio"].median())
    return m


def _claim_values(m: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    g, x = m.get("porosity_gravimetric"), m.get("porosity_cross_section")
    if g is not None:
        por = {"value": g["value"], "U": g["U"], "source": "gravimetric (thickness, areal mass, "
                                                          "recipe)"}
    elif x is not None:
        por = {"value": x.mean, "U": x.U, "source": f"cross-sections (n={x.n})"}
    else:
        por = None
    out: dict[str, dict[str, Any] | None] = {"porosity_frac": por}
    for key in ("Sa_um", "Sz_um"):
        s = m.get(key)
        out[key] = None if s is None else {"value": s.mean, "U": s.U,
                                           "source": f"height maps (n={s.n})"}
    return out


def failed_inputs(images: list[dict]) -> list[str]:
    """One reason per file of the sample that could not be measured (unreadable, refused,
    out of memory, missing calibration, internal error): each keeps every decision of the
    sample from being made on the other files alone."""
    return [f"{_FAILURE.get(im.get('error_type'), 'failed input')}: {im['error']}"
            for im in images if im["status"] == "error"]


_FAILURE = {"MissingCalibration": "missing calibration", "UnreadableInput": "unreadable input",
            "WrongKind": "unreadable input", "MeasurementError": "measurement failed",
            "MemoryLimitExceeded": "memory limit", "MemoryError": "out of memory",
            "InternalError": "internal error"}


def _gate_blockers(images: list[dict], m: dict[str, Any], gate_spec) -> list[str]:
    """What keeps the production gate from a verdict beyond failed inputs: an instrument
    certificate that has lapsed, and too few particles where the gate requires them."""
    out = []
    for im in images:
        cal = str(im.get("calibration") or "")
        if cal.startswith("expired:"):
            out.append(f"expired calibration ({cal[8:]}): {im['path']}")
    if gate_spec.require_particles:
        need = gate_spec.min_particles_per_mode
        psd = m.get("psd")
        if psd is None:
            out.append("no particle-size measurement")
        elif any(md["n"] < need for md in psd["modes"]):
            out.append(f"too few particles: a mode holds fewer than {need}")
    return out


def image_flags(images: list[dict]) -> list[str]:
    """The measurements' own flags of each measured file, named by the file."""
    out = []
    for im in images:
        for f in (im.get("results") or {}).get("flags") or []:
            out.append(f"{Path(im['path']).name}: {f}")
    return out


def measure_sample(sample, cfg, *, previews: bool = True, advance=None,
                   digests: dict[str, str] | None = None):
    """Measure one `pipeline.ingest.discover.Sample` with the run's configuration `cfg`;
    `digests` (path -> SHA-256) are the files' hashes when the caller has them already.

    Returns ``(record, artifacts, tables)``: the JSON-ready sample record, the report
    previews ({"sem": [...], "height": [...], "histogram": ..., "layer_profile": ...}) and the tables
    ({"particles": DataFrame or None, "images": list of records}).
    """
    entry = sample.manifest
    images, tables, art = _measure_files(sample, file_context(entry, cfg, previews, digests),
                                         advance)
    # failed files are in the decisions' reasons; skipped ones (no role) are flagged here
    flags = [im["error"] for im in images if im["status"] == "skipped"] + image_flags(images)
    pooled = _pool(tables) if tables else None  # every psd field's particles, once
    m = _metrics(images, pooled, entry, cfg.gate_spec, flags)
    spec, gate, pclaims = _decide(images, m, cfg)
    vr = _void_reduction_pct(m)
    if sample.state == "before":
        flags.append(f"before pressing: {spec_name(cfg.spec.id)} is judged on the pressed "
                     "electrode")
    if previews:
        _add_previews(art, m, pooled)
    if m["psd"] is not None:
        flags += [f"particles: {f}" for f in m["psd"]["flags"]]
    record = SampleRecord.of(
        sample, spec=spec, gate=gate,
        particle_claims=pclaims,
        layer_claims=evaluate_layer_claims(cfg.layer_claims, m["layers"]),
        void_reduction_pct=vr,
        void_reduction_source="gravimetric before/after (manifest)" if vr is not None else None,
        metrics=m, images=images, flags=flags,
        provenance={"inputs": _input_provenance(images)}).to_json()
    return record, art, {"sample_id": sample.id, "particles": _particles(pooled, sample.id),
                         "images": images}


def file_context(entry: dict[str, Any], cfg, previews: bool,
                 digests: dict[str, str] | None = None) -> dict[str, Any]:
    """What `measure_file` needs of the run and of the sample's manifest `entry` (and the
    files' SHA-256 when the caller hashed them already)."""
    return {"rules": cfg.rules, "profiles": cfg.profiles, "recipe": cfg.recipe,
            "role_overrides": entry.get("roles"), "today": cfg.today, "previews": previews,
            "expected_min_diameter_nm": entry.get("expected_min_diameter_nm"),
            "max_memory": cfg.max_memory, "digests": dict(digests or {})}


def _measure_files(sample, ctx: dict[str, Any], advance) -> tuple[list, list, dict[str, Any]]:
    """Measure each file of `sample`: its records, its particle tables (with the file's path)
    and the report previews of its SEM images and height maps; `advance()` after each."""
    images, tables = [], []
    art: dict[str, Any] = {"sem": [], "height": [], "histogram": None}
    for f in sample.files:
        res = measure_file(f, ctx)
        rec = res["record"]
        images.append(rec)
        if res["table"] is not None:
            tables.append(res["table"].assign(path=str(f)))
        if res["artifact"] is not None:
            art["height" if rec["role"] == "height" else "sem"].append(res["artifact"])
        if rec["status"] == "error":
            log.warning("%s", rec["error"])
        if advance:
            advance()
    return images, tables, art


def _decide(images: list[dict], m: dict[str, Any], cfg
            ) -> tuple[Decision, Decision, ClaimsDecision]:
    """The run's spec's (claim 15 by default) and the production gate's decisions (each held back by the failed files,
    the gate also by its own blockers) and the particle claims'."""
    values = _claim_values(m)
    failed = failed_inputs(images)
    spec = evaluate_spec(cfg.spec, values, blockers=failed)
    gate = evaluate_spec(cfg.gate_spec, values,
                         blockers=failed + _gate_blockers(images, m, cfg.gate_spec))
    min_n = cfg.gate_spec.min_particles_per_mode
    pclaims = evaluate_particle_claims(cfg.particle_claims, m["psd"],
                                       median_aspect_ratio=m["median_aspect_ratio"],
                                       min_particles_per_mode=min_n)
    return spec, gate, pclaims


def _void_reduction_pct(m: dict[str, Any]) -> float | None:
    """The void reduction (%) from the gravimetric porosity before and after pressing, when
    the manifest gives both."""
    g, gb = m["porosity_gravimetric"], m["porosity_gravimetric_before"]
    if g is not None and gb is not None:
        return 100.0 * void_reduction(gb["value"], g["value"])
    return None


def _add_previews(art: dict[str, Any], m: dict[str, Any], pooled) -> None:
    """Add the layer depth profile and the particle-size histogram to the report previews
    `art`, for the sample's metrics that have them."""
    if m["layers"] is not None:
        layers = m["layers"]
        art["layer_profile"] = {"profile": layers["profile"],
                                "boundary_depth_px": (layers["boundary_depth_px"]
                                                      if layers["n_layers"] == 2 else None)}
    if m["psd"] is not None:
        art["histogram"] = {"ecd_nm": _inner_carbon(pooled)["ecd_nm"].to_numpy(),
                            "modes": m["psd"]["modes"]}


def _input_provenance(images: list[dict]) -> list[dict[str, Any]]:
    """Each measured file's provenance: path, SHA-256, reader, role, pixel size source and
    calibration."""
    return [{"path": im["path"], "sha256": im.get("sha256"), "reader": im.get("reader"),
             "role": im.get("role"), "pixel_size_source": im.get("pixel_size_source"),
             "calibration": im.get("calibration")} for im in images]


def _particles(pooled, sample_id: str):
    """The sample's particle table (its rows named by `sample_id`, no attributes), or None."""
    if pooled is None:
        return None
    particles = pooled.assign(sample_id=sample_id)
    particles.attrs = {}
    return particles
