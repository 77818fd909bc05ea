"""Plain-text and JSON-ready views of what the command line shows. No science here."""

from __future__ import annotations

from typing import Any

from pipeline.jsonio import json_safe

__all__ = ["formats_table", "inspect_record", "inspect_text", "surface_text"]

_SURFACE_COLUMNS = (
    ("Sa_um", "Sa um"),
    ("Sq_um", "Sq um"),
    ("Sp_um", "Sp um"),
    ("Sv_um", "Sv um"),
    ("Sz_um", "Sz um"),
    ("Ssk", "Ssk"),
    ("Sku", "Sku"),
    ("Sdq", "Sdq"),
    ("Sdr_pct", "Sdr %"),
    ("Sal_um", "Sal um"),
    ("Str", "Str"),
    ("Spd_per_mm2", "Spd /mm2"),
    ("invalid_fraction", "invalid"),
    ("sz_without_outliers_um", "Sz w/o outliers um"),
)


def inspect_record(da) -> dict[str, Any]:
    """What `electrode-qc inspect --json` prints for one DataArray."""
    a = da.attrs
    ps = a.get("pixel_size_um")
    rec = {
        "path": a.get("source_path"),
        "format": a.get("format"),
        "kind": a.get("kind"),
        "reader": a.get("reader"),
        "shape": [int(da.sizes["y"]), int(da.sizes["x"])],
        "dtype": str(da.dtype),
        "units": a.get("units"),
        "pixel_size_um": None if ps is None else {"x": ps["x"], "y": ps["y"]},
        "pixel_size_source": a.get("pixel_size_source"),
        "calibration": a.get("calibration", "ok" if ps else "missing"),
        "invalid_fraction": a.get("invalid_fraction"),
        "vendor": a.get("vendor"),
        "instrument": a.get("instrument"),
        "source_sha256": a.get("source_sha256"),
        "header": a.get("header", {}),
    }
    if a.get("kind") == "sem":
        for key in ("databar_rows", "databar_method", "magnification", "kv", "detector",
                    "calibration", "masked_regions"):
            rec[key] = a.get(key)
    elif a.get("kind") == "height":
        import numpy as np

        z = da.values
        valid = z[np.isfinite(z)]
        rec["z_range_um"] = [float(valid.min()), float(valid.max())] if valid.size else None
    return json_safe(rec)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


def inspect_text(rec: dict[str, Any]) -> str:
    lines = []
    for k, v in rec.items():
        if k == "header":
            continue
        if k == "pixel_size_um" and v:
            v = f"x {_fmt(v['x'])}, y {_fmt(v['y'])}"
        elif k == "shape":
            v = f"{v[0]} rows x {v[1]} cols"
        elif k == "z_range_um" and v:
            v = f"{_fmt(v[0])} .. {_fmt(v[1])}"
        lines.append(f"{k:20s} {_fmt(v)}")
    header = rec.get("header") or {}
    if header:
        lines.append("header:")
        for k, v in header.items():
            lines.append(f"  {k:30s} {_fmt(v)}")
    return "\n".join(lines)


def surface_text(results: list[dict[str, Any]]) -> str:
    """The measured files' parameters; files that failed are left out (their error went to
    stderr once)."""
    out = []
    for r in results:
        if "error" in r:
            continue
        out.append(r["path"])
        for key, label in _SURFACE_COLUMNS:
            out.append(f"  {label:22s} {_fmt(r.get(key))}")
        out.append(f"  {'recipe':22s} {r.get('recipe', {}).get('id', '-')}")
        for flag in r.get("flags", []):
            out.append(f"  flag: {flag}")
    return "\n".join(out)


def formats_table(rows: list[dict[str, Any]]) -> str:
    out = [f"{'reader':14s} {'kind':7s} {'suffixes':24s} description"]
    for r in rows:
        suf = " ".join(r["suffixes"])
        note = "" if r["available"] else "  (not installed)"
        out.append(f"{r['name']:14s} {r['kind']:7s} {suf:24s} {r['description']}{note}")
    return "\n".join(out)
