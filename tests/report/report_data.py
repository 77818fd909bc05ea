"""Hand-made results and artifacts for the HTML report tests (synthetic arrays, pipeline.synth)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline import synth
from pipeline.conformity import judge

SHA = "0123456789abcdef" * 4


def sem_artifacts(seed: int, *, width: int = 384) -> list[dict[str, Any]]:
    """One psd preview with labels and phases, one surface with protrusions, one cross-section."""
    h = width * 3 // 4
    psd, truth = synth.particle_image((h, width), pixel_nm=2.0, seed=seed, return_labels=True)
    phase = {p["id"]: p["phase"] for p in truth["particles"]}
    surf, st = synth.surface_image((h, width), n_protrusions=6, diameter_px=(10.0, 16.0),
                                   seed=seed)
    points = [(p["col"], p["row"], p["diameter_px"] / 2) for p in st["protrusions"]]
    rows = (h // 8, h * 3 // 4)
    xsec, _ = synth.cross_section_image((h, width), layer_rows=rows, seed=seed)
    return [
        {"path": f"s{seed}/psd-01.tif", "role": "psd", "image": psd, "scale": 1.0,
         "labels": truth["labels"], "phase_of_label": phase, "points": None, "layer_rows": None},
        {"path": f"s{seed}/surface-100x.tif", "role": "surface", "image": surf, "scale": 1.0,
         "labels": None, "phase_of_label": None, "points": points, "layer_rows": None},
        {"path": f"s{seed}/xsec-01.tif", "role": "cross_section", "image": xsec, "scale": 1.0,
         "labels": None, "phase_of_label": None, "points": None, "layer_rows": rows},
    ]


def height_artifacts(seed: int, *, n: int = 2, size: int = 128, sa_um: float = 0.07,
                     sz_um: float = 0.92) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        z, _ = synth.height_map((size, size), pixel_um=0.5, sa_um=sa_um, sz_um=sz_um,
                                protrusions=1, protrusion_height_um=0.3, protrusion_sigma_um=2.0,
                                invalid_fraction=0.01, seed=seed * 10 + i)
        out.append({"path": f"s{seed}/height-{i + 1:02d}.x3p", "z_um": z, "pixel_um": 0.5,
                    "Sa_um": sa_um, "Sz_um": sz_um})
    return out


MODES = ({"mean_nm": 40.0, "gsd": math.exp(0.15), "number_share": 0.6},
         {"mean_nm": 80.0, "gsd": math.exp(0.12), "number_share": 0.4})


def histogram_artifact(seed: int, n: int = 2000) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    k = round(n * MODES[0]["number_share"])
    ecd = np.concatenate([np.exp(rng.normal(math.log(40.0), 0.15, k)),
                          np.exp(rng.normal(math.log(80.0), 0.12, n - k))])
    modes = []
    for m in MODES:
        s2 = math.log(m["gsd"]) ** 2
        modes.append({"mean_nm": m["mean_nm"], "number_share": m["number_share"],
                      "sd_nm": m["mean_nm"] * math.sqrt(math.exp(s2) * math.expm1(s2))})
    return {"ecd_nm": ecd, "modes": modes}


def artifacts_for(seed: int, *, width: int = 384, height_size: int = 128) -> dict[str, Any]:
    return {"sem": sem_artifacts(seed, width=width),
            "height": height_artifacts(seed, size=height_size),
            "histogram": histogram_artifact(seed)}


def _prop(value, U, limit, comparison, unit, source=None, rule="simple"):
    st = judge(value, U, limit, comparison, rule)
    return {"value": value, "U": U, "limit": limit, "comparison": comparison,
            "met": {"pass": True, "fail": False}.get(st), "statement": st,
            "margin": limit - value, "unit": unit, "source": source}


def _props(porosity: float, sa_um: float, sz_um: float, rule: str) -> dict[str, Any]:
    return {"porosity": _prop(porosity, 0.012, 0.40, "<=", "fraction", "gravimetric", rule),
            "Sa": _prop(sa_um, 0.006, 0.10, "<", "um", "height maps (n = 2)", rule),
            "Sz": _prop(sz_um, 0.05, 1.0, "<", "um", "height maps (n = 2)", rule)}


def sample_result(sample_id: str, *, outcome: str = "conforming", porosity: float = 0.364,
                  sa_um: float = 0.07, sz_um: float = 0.92, title: str = "An electrode",
                  error_image: bool = False, flags: tuple[str, ...] = (),
                  combine: str = "all", image_flags: dict[str, list[str]] | None = None,
                  psd_pixel_um: dict[str, float] | None = None) -> dict[str, Any]:
    """A sample record shaped as `pipeline.batch.sample.measure_sample` writes it; the gate's
    outcome is given (`outcome`), its per-property statements come from the guard band."""
    props = _props(porosity, sa_um, sz_um, "simple")
    gate_props = _props(porosity, sa_um, sz_um, "guard_band")
    image_flags = image_flags or {}
    images = [{"path": f"{sample_id}/psd-01.tif", "role": "psd", "kind": "sem", "reader": "fei-tiff",
               "sha256": SHA, "pixel_size_um": psd_pixel_um or {"x": 0.002, "y": 0.002},
               "pixel_size_source": "FEI metadata", "status": "ok", "error": None,
               "results": {"n_particles": 2000, "flags": image_flags.get("psd-01.tif", [])}},
              {"path": f"{sample_id}/height-01.x3p", "role": "height", "kind": "height",
               "reader": "x3p", "sha256": SHA, "pixel_size_um": {"x": 0.5, "y": 0.5},
               "pixel_size_source": "X3P header", "status": "ok", "error": None,
               "results": {"Sa_um": sa_um, "flags": image_flags.get("height-01.x3p", [])}},
              {"path": f"{sample_id}/xsec-01.tif", "role": "cross_section", "kind": "sem",
               "reader": "fei-tiff", "sha256": SHA, "pixel_size_um": {"x": 0.05, "y": 0.05},
               "pixel_size_source": "FEI metadata", "status": "ok", "error": None,
               "results": {"porosity_frac": porosity + 0.01,
                           "flags": image_flags.get("xsec-01.tif", [])}}]
    if error_image:
        images.append({"path": f"{sample_id}/xsec-02.tif", "role": "cross_section", "kind": "sem",
                       "reader": None, "sha256": SHA, "pixel_size_um": None,
                       "pixel_size_source": None, "status": "error",
                       "error": "truncated TIFF: strip 3 <ends> past the end of the file",
                       "results": {}})
    return {
        "sample_id": sample_id, "title": title, "state": "after",
        "spec": {"met": any(p["met"] for p in props.values()), "combine": "any",
                 "decision_rule": "simple", "properties": props,
                 "spec": {"id": "claim15", "sha256": SHA}},
        "particle_claims": {"met": True, "claims": [
            {"claim": "2", "text": "average size ratio 1:1.2 to 1:4", "value": 2.0, "met": True},
            {"claim": "3, 17", "text": "first 5 to < 50 nm, second 50 to 90 nm",
             "value": [40.0, 80.0], "met": True}]},
        "gate": {"outcome": outcome, "decision_rule": "guard_band", "combine": combine,
                 "reasons": [] if outcome == "conforming" else [f"{sample_id}: reason for {outcome}"],
                 "properties": gate_props, "spec": {"id": "gate-production", "sha256": SHA}},
        "void_reduction_pct": 36.2,
        "metrics": {"porosity_gravimetric": {"value": porosity, "U": 0.012, "source": "gravimetric"},
                    "porosity_cross_section": {"mean": porosity + 0.01, "sd": 0.01, "n": 1, "U": 0.03},
                    "Sa_um": {"mean": sa_um, "sd": 0.003, "n": 2, "U": 0.006, "values": [sa_um] * 2},
                    "Sz_um": {"mean": sz_um, "sd": 0.02, "n": 2, "U": 0.05, "values": [sz_um] * 2},
                    "protrusions_per_mm2": {"mean": 12.0, "sd": 1.0, "n": 1, "U": 3.0},
                    "psd": {"n": 2000, "x10_nm": 33.0, "x50_nm": 48.0, "x90_nm": 86.0,
                            "modes": [dict(m, n=1000, volume_share=0.5)
                                      for m in histogram_artifact(0, 10)["modes"]],
                            "bic_k": 2, "mode_ratio": 2.0, "mode_difference_nm": 40.0,
                            "share_ge_100nm": 0.01, "flags": ["mode 2 (80 nm) has 400 particles"],
                            "weights": "number"}},
        "images": images,
        "flags": list(flags),
        "provenance": {"files": [{"path": im["path"], "sha256": im["sha256"]} for im in images],
                       "calibration": {"id": "fei-2024", "sha256": SHA}},
    }


def results_for(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema_version": 1, "package_version": "0.1.0", "created_utc": "2025-01-02T03:04:05Z",
        "folder": "sample_images", "out": "report",
        "spec": {"id": "claim15", "path": "calibration/specs/claim15.toml", "sha256": SHA},
        "gate_spec": {"id": "gate-production", "decision_rule": "guard_band", "sha256": SHA},
        "recipe": {"id": "materials", "sha256": SHA},
        "exit_code": 0,
        "counts": {"samples": len(samples), "measured": len(samples),
                   "unreadable_files": sum(im["status"] == "error" for s in samples
                                           for im in s.get("images", []))},
        "samples": samples,
    }
