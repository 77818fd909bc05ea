"""The self-contained HTML report, ``OUT/report.html``.

`render_html` turns the run's results (the dict written to ``results.json``) and its
in-memory artifacts (SEM previews with segmentation, height maps, diameters) into one HTML
page: inline CSS, pictures as data URIs (photos WebP, overlays and charts PNG; see
`pipeline.report.figures`), no script, nothing fetched from a network. Text is escaped by
Jinja2's autoescape. A figure that cannot be drawn shows its error in place of the picture;
a sample without artifacts, height maps or a size distribution shows a note.

Numbers carry their units: a value with an uncertainty as ``value ± U`` (U to two
significant digits, the value to the same decimal place), a plain value to three significant
digits, porosity in % and its margins in percentage points.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.conformity import spec_name
from pipeline.errors import OutputError
from pipeline.fsutil import atomic_write_bytes, ensure_folder
from pipeline.report import figures as fg
from pipeline.report import html_template, preview_cache
from pipeline.report.figures import data_uri, image_size
from pipeline.report.html_template import CSS, TEMPLATE
from pipeline.report.trends import METRICS

__all__ = ["FINISHED", "drawn_by", "fmt", "fmt_pm", "picture_views", "render_html", "write_html"]

log = logging.getLogger(__name__)

_OUTCOME_RANK = {"non-conforming": 0, "indeterminate": 1, "conforming": 2}
_OUTCOME_CLASS = {"non-conforming": "bad", "indeterminate": "warn", "conforming": "good"}
_MET_RANK = {False: 0, None: 1, True: 2}
_COMPARISON = {"<=": "\u2264", "<": "<", ">=": "\u2265", ">": ">", "==": "="}
_C15_ORDER = ("porosity", "Sa", "Sz")
_NA = "n/a"
_UNITS = {"um": "\u00b5m", "um2": "\u00b5m\u00b2", "per_mm2": "/mm\u00b2", "nm": "nm", "%": "%"}
_METRIC_LABELS = {"porosity_gravimetric": "porosity (gravimetric)",
                  "porosity_gravimetric_before": "porosity before pressing (gravimetric)",
                  "porosity_cross_section": "porosity (cross-sections)",
                  "Sa_um": "Sa", "Sz_um": "Sz", "protrusions_per_mm2": "protrusion density",
                  "median_aspect_ratio": "median aspect ratio (Feret max / Feret min)"}
_DECISION_RULES = {
    "simple": "simple acceptance (the value as measured)",
    "guard_band": "guard band (ISO 14253-1): a property passes only when value \u00b1 U lies "
                  "inside its limit and fails only when it lies outside",
    "non_binary": "non-binary statements (ILAC-G8): conditional when value \u00b1 U crosses "
                  "the limit",
}
_COMBINE = {"any": "conforming when any one property passes",
            "all": "conforming only when every property is measured and passes"}


# ----------------------------------------------------------------------------- formatting
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def fmt(v: Any, digits: int = 3) -> str:
    """A number to `digits` significant digits, trailing zeros dropped, no exponent between
    1e-4 and 1e7;
    None or a non-finite float as "n/a"; booleans as yes/no; other values as text."""
    if v is None:
        return _NA
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return _NA
        if v == 0:
            return "0"
        dec = digits - 1 - math.floor(math.log10(abs(v)))
        if dec > 6 or abs(v) >= 1e7:
            return f"{v:.{digits}g}"
        text = f"{v:.{max(dec, 0)}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x, digits) for x in v)
    if isinstance(v, Mapping):
        return "; ".join(f"{k}: {fmt(x, digits)}" for k, x in v.items())
    return str(v)


def _decimals(v: float, u: float | None = None, digits: int = 3) -> int | None:
    """Decimal places of `v` as `fmt_pm` shows it: those of U to two significant digits, else
    those of `digits` significant digits of `v` (trailing zeros kept); None when `v` needs an
    exponent."""
    if u is not None and u > 0:
        return min(max(1 - math.floor(math.log10(u)), 0), 6)
    if v == 0:
        return 0
    dec = digits - 1 - math.floor(math.log10(abs(v)))
    if dec > 6 or abs(v) >= 1e7:
        return None
    return max(dec, 0)


def _fixed(v: float, dec: int) -> str:
    text = f"{v:.{dec}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def fmt_pm(value: Any, u: Any = None, *, scale: float = 1.0, unit: str = "",
           digits: int = 3) -> str:
    """``value ± U unit`` with U to two significant digits and the value to the same place;
    without U the value to `digits` significant digits, trailing zeros kept."""
    v, uu = _num(value), _num(u)
    if v is None:
        return _NA
    v *= scale
    suffix = f" {unit}" if unit else ""
    if uu is None or uu <= 0:
        dec = _decimals(v, None, digits)
        return (f"{v:.{digits - 1}e}" if dec is None else _fixed(v, dec)) + suffix
    uu *= scale
    dec = _decimals(v, uu)
    return f"{_fixed(v, dec)} \u00b1 {uu:.{dec}f}{suffix}"


def _unit(u: Any) -> str:
    return _UNITS.get(str(u), str(u)) if u else ""


def _pixel(v: Any) -> str:
    """A pixel size ({"x", "y"} in um, or one number) in nm below 0.1 um, else in um;
    "x × y" when the pixel is not square."""
    if isinstance(v, Mapping):
        x, y = _num(v.get("x")), _num(v.get("y"))
    else:
        x = y = _num(v)
    known = [a for a in (x, y) if a is not None]
    if not known:
        return _NA
    nm = max(abs(a) for a in known) < 0.1
    unit, k = ("nm", 1000.0) if nm else ("\u00b5m", 1.0)
    if x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6):
        return f"{fmt(x * k)} {unit}"
    return " \u00d7 ".join(_NA if a is None else fmt(a * k) for a in (x, y)) + f" {unit}"


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, text)`` rows of nested dicts and lists of dicts, for key/value tables."""
    rows: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple) and any(isinstance(x, Mapping | list | tuple) for x in obj):
        for i, v in enumerate(obj):
            rows += flatten(v, f"{prefix}[{i}]")
    else:
        rows.append((prefix or "value", fmt(obj, 6) if isinstance(obj, float) else fmt(obj)))
    return rows


# --------------------------------------------------------------------------------- badges
def _badge(met: Any, *, yes: str = "met", no: str = "not met", none: str = "undetermined") -> dict:
    if met is True:
        return {"text": yes, "cls": "good", "key": "true"}
    if met is False:
        return {"text": no, "cls": "bad", "key": "false"}
    return {"text": none, "cls": "warn", "key": "none"}


def _outcome_badge(outcome: Any) -> dict:
    if outcome in _OUTCOME_CLASS:
        return {"text": outcome, "cls": _OUTCOME_CLASS[outcome], "key": outcome}
    return {"text": _NA if outcome is None else str(outcome), "cls": "na", "key": "none"}


def _gate_badge(gate: Mapping) -> dict:
    """The gate's outcome; "conforming (any one property)" when one passing property is
    enough, so that the badge cannot be read as "every property conforms"."""
    b = _outcome_badge(gate.get("outcome"))
    if b["key"] == "conforming" and gate.get("combine") == "any":
        b["text"] = "conforming (any one property)"
    return b


def _statement_badge(statement: Any) -> dict:
    """A gate statement for one property: pass, fail, or what lies between (warn)."""
    if statement is None:
        return {"text": _NA, "cls": "na", "key": "none"}
    cls = {"pass": "good", "fail": "bad"}.get(str(statement), "warn")
    return {"text": str(statement), "cls": cls, "key": str(statement)}


# ------------------------------------------------------------------------- sample views
def _is_porosity(name: str) -> bool:
    return name.lower().startswith("porosity")


def _limit_text(p: Mapping, scale: float, unit: str) -> str:
    limit = _num(p.get("limit"))
    if limit is None:
        return _NA
    comp = _COMPARISON.get(p.get("comparison"), p.get("comparison") or "")
    return f"{comp} {fmt(limit * scale)} {unit}".strip()


def _property_rows(claim15: Mapping, gate: Mapping, name: str = "Claim 15") -> list[dict]:
    """One row per property of claim 15 and of the gate: value ± U, claim-15 limit and
    margin, whether claim 15 holds for it, and the gate's statement (with the gate's limit
    when it differs from the claim's)."""
    c15 = claim15.get("properties") or {}
    gp = gate.get("properties") or {}
    names = dict.fromkeys([n for n in _C15_ORDER if n in c15 or n in gp] + list(c15) + list(gp))
    return [_property_row(n, c15.get(n), gp.get(n), gated=bool(gp), spec=name) for n in names]


def _property_row(name: str, p: Mapping | None, g: Mapping | None, *, gated: bool,
                  spec: str = "Claim 15") -> dict:
    """The row of property `name`: its claim-15 entry `p` and its gate entry `g` (either may
    be None; `gated` is whether the gate judges any property)."""
    src = p or g or {}
    percent = _is_porosity(name)  # porosity values are fractions; shown in %
    scale, unit = (100.0, "%") if percent else (1.0, _unit(src.get("unit")))
    return {
        "name": name,
        "value": fmt_pm(src.get("value"), src.get("U"), scale=scale, unit=unit),
        "limit": _limit_text(p if p is not None else src, scale, unit),
        "margin": _margin_text(src, scale, "points" if percent else unit),
        "met": (_badge(p.get("met")) if p is not None
                else {"text": f"not in {spec}", "cls": "na", "key": "none"}),
        "gate": (_statement_badge(g.get("statement")) if g is not None
                 else {"text": "not gated" if gated else _NA, "cls": "na", "key": "none"}),
        "gate_note": ", ".join(_gate_notes(p, g, scale, unit)),
        "source": fmt(src.get("source")) if src.get("source") is not None else "",
        "short": fmt_pm(src.get("value"), None, scale=scale, unit=unit),
    }


def _margin_text(src: Mapping, scale: float, unit: str) -> str:
    """The margin of property `src` to its limit, to the decimal place of its value ± U, in
    `unit` (percentage points for porosity)."""
    v, u = _num(src.get("value")), _num(src.get("U"))
    margin = _num(src.get("margin"))
    dec = None if v is None else _decimals(v * scale, None if u is None else u * scale)
    if margin is None:
        return _NA
    m = fmt(margin * scale) if dec is None else _fixed(margin * scale, dec)
    return f"{m} {unit}".strip()


def _gate_notes(p: Mapping | None, g: Mapping | None, scale: float, unit: str) -> list[str]:
    """Where the gate judges a property otherwise than claim 15: its own limit, or its own
    value ± U."""
    notes: list[str] = []
    if g is not None and p is not None:
        if (g.get("limit"), g.get("comparison")) != (p.get("limit"), p.get("comparison")):
            notes.append(f"limit {_limit_text(g, scale, unit)}")
        if (g.get("value"), g.get("U")) != (p.get("value"), p.get("U")):
            notes.append(f"judged on {fmt_pm(g.get('value'), g.get('U'), scale=scale, unit=unit)}")
    return notes


def _metric_unit(name: str) -> tuple[float, str]:
    if _is_porosity(name):
        return 100.0, "%"
    for end, unit in (("_um", "\u00b5m"), ("_nm", "nm"), ("_per_mm2", "/mm\u00b2"), ("_pct", "%")):
        if name.endswith(end):
            return 1.0, unit
    return 1.0, ""


def _metric_rows(metrics: Mapping) -> list[tuple[str, str]]:
    rows = []
    for name, m in metrics.items():
        if name in ("psd", "layers"):
            continue
        if name == "protrusions_by_class":
            if m and len(m) > 1:  # one class is the protrusion density row itself
                rows += [(f"protrusion density ({cls})",
                          fmt_pm(s.get("mean"), s.get("U"), unit=_UNITS["per_mm2"])
                          + (f" (n = {fmt(s['n'])})" if s.get("n") is not None else ""))
                         for cls, s in m.items() if s]
            continue
        scale, unit = _metric_unit(name)
        label = _METRIC_LABELS.get(name, name.replace("_", " "))
        if m is None:
            rows.append((label, _NA))
        elif isinstance(m, Mapping):
            value = m.get("mean", m.get("value"))
            text = fmt_pm(value, m.get("U"), scale=scale, unit=unit)
            extra = []
            if _num(m.get("sd")) is not None:
                extra.append(f"SD {fmt_pm(m['sd'], None, scale=scale, unit=unit)}")
            if m.get("n") is not None:
                extra.append(f"n = {fmt(m['n'])}")
            if m.get("source"):
                extra.append(str(m["source"]))
            rows.append((label, text + (f" ({', '.join(extra)})" if extra else "")))
        else:
            rows.append((label, fmt_pm(m, None, scale=scale, unit=unit)))
    return rows


def _psd_rows(psd: Mapping | None) -> tuple[list[tuple[str, str]], list[list[str]]]:
    if not psd:
        return [], []
    q3 = fmt_pm  # a plain value: three significant digits
    rows = [("particles measured", fmt(psd.get("n")))]
    for q in ("x10_nm", "x50_nm", "x90_nm"):
        if q in psd:
            rows.append((f"{q[:3]} ({psd.get('weights', 'number')})", q3(psd[q], unit="nm")))
    for key, label, scale, unit in (
            ("bic_k", "modes by BIC", None, ""),
            ("mode_ratio", "mode ratio (large/small)", 1.0, ""),
            ("mode_difference_nm", "mode difference", 1.0, "nm"),
            ("share_ge_100nm", "share \u2265 100 nm (by number)", 100.0, "%"),
            ("merge_suspect_share", "merge suspects among \u2265 100 nm", 100.0, "%")):
        if key in psd:
            rows.append((label, fmt(psd[key]) if scale is None
                         else q3(psd[key], scale=scale, unit=unit)))
    prim = psd.get("primary_size")
    if prim:
        u = prim.get("u95_nm")
        rows.append(("primary size from aggregates (area and perimeter, \u00b1 U95)",
                     f"{fmt_pm(prim.get('mean_nm'), u, unit='nm')}, "
                     + f"{fmt(prim.get('n_aggregates'))} aggregates"))
    modes = [[str(i), q3(m.get("mean_nm"), unit="nm"), q3(m.get("sd_nm"), unit="nm"),
              q3(m.get("gsd")), q3(m.get("number_share"), scale=100.0, unit="%"),
              q3(m.get("volume_share"), scale=100.0, unit="%"), fmt(m.get("n"))]
             for i, m in enumerate(psd.get("modes") or [], 1)]
    return rows, modes  # its flags are among the sample's flags already


def _claim_test(c: Mapping) -> str | None:
    """The test of a particle-claim record; records without ``test`` are recognised by their
    value and statement (claims.evaluate_particle_claims writes claim, text, value, met, note)."""
    if c.get("test"):
        return str(c["test"])
    v, text = c.get("value"), str(c.get("text") or "")
    if isinstance(v, list | tuple):
        return "mode_ranges"
    if "1:" in text:
        return "ratio"
    if "aspect ratio" in text:
        return "aspect_ratio"
    if isinstance(v, int) and not isinstance(v, bool) and "mode" in text:
        return "two_modes"
    if " nm" in text:
        return "difference"  # a size in nm
    return None


def _claim_value(c: Mapping) -> str:
    v, test = c.get("value"), _claim_test(c)
    if v is None:
        return _NA
    if test == "two_modes" and isinstance(v, int):
        return f"{v} mode" + ("" if v == 1 else "s")
    if test == "ratio" and _num(v) is not None:
        return f"1:{fmt_pm(v)}"
    if test == "mode_ranges" and isinstance(v, list | tuple):
        return ", ".join(fmt_pm(x, unit="nm") for x in v)
    if test in ("difference", "no_mode_at_or_above") and _num(v) is not None:
        return fmt_pm(v, unit="nm")
    if _num(v) is not None:
        return fmt_pm(v)
    return fmt(v)


def _flags(s: Mapping, images: Iterable[Mapping]) -> list[str]:
    """The sample's flags, then each image's flags as "<file>: <flag>" (once each)."""
    out = [str(f) for f in s.get("flags") or []]
    for im in images:
        res = im.get("results")
        if not isinstance(res, Mapping):
            continue
        name = os.path.basename(str(im.get("path") or "")) or "image"
        for f in res.get("flags") or []:
            out.append(f"{name}: {f}")
    return list(dict.fromkeys(out))


def _figure_error(what: str, path: Any, exc: Exception) -> str:
    log.warning("report: cannot draw %s %s: %s", what, path, exc)
    return f"Could not draw {what}: {type(exc).__name__}: {exc}"


def _css(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _sem_views(entries: Iterable[Mapping]) -> list[dict]:
    out = []
    for e in entries:
        path = e.get("path", "")
        caption = f"{e.get('role', 'SEM')}: {path}"
        legend = []
        if e.get("labels") is not None:
            phases = set((e.get("phase_of_label") or {}).values()) or {"other"}
            legend += [(f"{p} boundaries", _css(fg.OVERLAY_COLOURS[p]))
                       for p in ("carbon", "silver", "other") if p in phases]
        if e.get("points") is not None:
            legend.append((f"protrusions ({len(e['points'])})", _css(fg.OVERLAY_COLOURS["protrusion"])))
        if e.get("layer_rows") is not None:
            legend.append(("layer top and bottom", _css(fg.OVERLAY_COLOURS["layer"])))
        view = {"caption": caption, "legend": legend, "photo": None, "overlay": None,
                "width": 0, "height": 0, "error": None}
        try:
            pic = fg.sem_picture(e["image"], labels=e.get("labels"),
                                 phase_of_label=e.get("phase_of_label"),
                                 points=e.get("points"), layer_rows=e.get("layer_rows"))
            view.update(photo=fg.data_uri(pic.photo), width=pic.size[0], height=pic.size[1],
                        overlay=None if pic.overlay is None else fg.data_uri(pic.overlay))
        except Exception as exc:
            view["error"] = _figure_error("the SEM preview", path, exc)
        out.append(view)
    return out


def _ticks(lo: float, hi: float, n: int = 5) -> list[tuple[str, str, str]]:
    """Colour-bar ticks (position %, text, class): one decimal place for all, enough for
    two significant digits of the step; the unit at both ends."""
    step = (hi - lo) / (n - 1)
    dec = min(max(1 - math.floor(math.log10(step)), 0), 6) if step > 0 else 3
    out = []
    for i in range(n):
        text = _fixed(lo + step * i, dec)
        first, last = i == 0, i == n - 1
        out.append((f"{100 * i / (n - 1):g}", f"{text} \u00b5m" if first or last else text,
                    "first" if first else "last" if last else ""))
    return out


def _height_views(entries: Iterable[Mapping]) -> list[dict]:
    out = []
    for e in entries:
        path = e.get("path", "")
        name = os.path.basename(str(path)) or "height map"
        title = (f"{name}: Sa {fmt_pm(e.get('Sa_um'), unit='µm')}, "
                 f"Sz {fmt_pm(e.get('Sz_um'), unit='µm')}")
        view = {"title": title, "caption": "", "uri": None, "width": 0, "height": 0,
                "ticks": [], "gradient": "", "error": None}
        try:
            z = e["z_um"]
            data, (w, h), limits = fg.height_picture(z)
            view.update(uri=fg.data_uri(data), width=w, height=h)
            px = _num(e.get("pixel_um"))
            fov = (f"{fmt(z.shape[1] * px)} \u00d7 {fmt(z.shape[0] * px)} \u00b5m field, "
                   if px else "")
            view["caption"] = (f"{path}: {fov}heights in \u00b5m (levelled), colour scale from the "
                               "0.5th to the 99.5th percentile; grey = not measured")
            if limits is not None:
                view["gradient"] = ", ".join(fg.colour_stops())
                view["ticks"] = _ticks(*limits)
        except Exception as exc:
            view["error"] = _figure_error("the height map", path, exc)
        out.append(view)
    return out


def _histogram_view(hist: Mapping | None, sample_id: str) -> dict | None:
    if not hist or hist.get("ecd_nm") is None:
        return None

    view = {"uri": None, "width": 0, "height": 0, "error": None}
    try:
        png = fg.histogram_png(hist["ecd_nm"], hist.get("modes") or [], title=sample_id)
        w, h = fg.image_size(png)
        view.update(uri=fg.data_uri(png), width=w, height=h)
    except Exception as exc:
        view["error"] = _figure_error("the size histogram", sample_id, exc)
    return view


def _claim_rows(claims: Mapping, value) -> list[dict]:
    """Rows of a claims table (particle or layer claims): claim, statement, value (by
    `value`), met, note."""
    return [{"claim": fmt(c.get("claim")), "text": fmt(c.get("text")), "value": value(c),
             "met": _badge(c.get("met")), "note": fmt(c.get("note")) if c.get("note") else ""}
            for c in claims.get("claims") or []]


def _layer_value(metrics: Mapping):
    """A layer claim's value: the sub-layer count, or claim 11's ratio with its U (k = 2)."""
    layers = metrics.get("layers") or {}

    def value(c: Mapping) -> str:
        v = c.get("value")
        if v is None:
            return _NA
        if c.get("test") == "sublayer_ratio":
            return fmt_pm(v, layers.get("U_ratio"))
        return f"{fmt(v)} sub-layer" + ("" if v == 1 else "s")
    return value


def _profile_view(profile: Mapping | None, sample_id: str) -> dict | None:
    """The layer claims' depth profile chart (the first cross-section's; a report picture,
    drawn only for the samples whose pictures are shown)."""
    prof = (profile or {}).get("profile")
    if not prof or not prof.get("depth_px"):
        return None

    view = {"uri": None, "width": 0, "height": 0, "error": None}
    try:
        png = fg.depth_profile_png(prof["depth_px"], prof["radius_px"],
                                   boundary_px=profile.get("boundary_depth_px"), title=sample_id)
        w, h = fg.image_size(png)
        view.update(uri=fg.data_uri(png), width=w, height=h)
    except Exception as exc:
        view["error"] = _figure_error("the depth profile", sample_id, exc)
    return view


def _input_rows(images: Iterable[Mapping]) -> list[dict]:
    rows = []
    for im in images:
        path = fmt(im.get("path"))
        sha = im.get("sha256")
        rows.append({"path": path, "file": os.path.basename(path) or path,
                     "role": fmt(im.get("role")), "reader": fmt(im.get("reader")),
                     "pixel": _pixel(im.get("pixel_size_um")),
                     "pixel_source": fmt(im.get("pixel_size_source")),
                     "status": fmt(im.get("status")),
                     "error": im.get("error") if im.get("status") == "error" else None,
                     "sha256": fmt(sha), "sha_short": str(sha)[:12] if sha else _NA})
    return rows


def _sample_view(index: int, s: Mapping, art: Mapping | None,
                 pictures: dict | None = None) -> dict:
    """The template's view of sample `s`, the `index`-th of the results, with its report
    pictures: finished (`pictures`), else drawn from its previews `art` (None when it has
    none)."""
    sid = str(s.get("sample_id", f"sample {index + 1}"))
    claim15 = s.get("spec") or {}
    gate = s.get("gate") or {}
    metrics = s.get("metrics") or {}
    images = s.get("images") or []
    name = spec_name((claim15.get("spec") or {}).get("id"))
    rows = _property_rows(claim15, gate, name)
    psd_rows, mode_rows = _psd_rows(metrics.get("psd"))
    c15_rule = "all" if claim15.get("combine") == "all" else "one or more"
    prov = flatten(s.get("provenance") or {})
    return {
        "anchor": f"sample-{index + 1}",
        "sample_id": sid,
        "title": fmt(s.get("title")) if s.get("title") else "",
        "state": s.get("state") or "",
        **_gate_view(gate),
        "spec_name": name,
        "claim15_met": _badge(claim15.get("met"), yes=f"met ({c15_rule})"),
        "claim15_rule": c15_rule,
        "claim15_reasons": [str(r) for r in claim15.get("reasons") or []],
        "property_rows": rows,
        "c15_summary": _c15_summary(rows),
        **_claims_view(s, metrics),
        "void_reduction": fmt_pm(s.get("void_reduction_pct"), unit="%"),
        "metric_rows": _metric_rows(metrics),
        "psd_rows": psd_rows,
        "mode_rows": mode_rows,
        "flags": _flags(s, images),
        "failed": _failed_rows(images),
        "inputs": _input_rows(images),
        "provenance_rows": prov,
        **(pictures if pictures is not None else picture_views(art, sid)),
    }


def picture_views(art: Mapping | None, sample_id: str) -> dict:
    """A sample's report pictures, drawn and encoded from its previews `art`: the layer
    depth profile, the SEM images with their overlays, the size histogram, the height maps
    (what `pipeline.report.preview_cache.save_pictures` keeps)."""
    art = art or {}
    return {"layer_profile": _profile_view(art.get("layer_profile"), sample_id),
            "sem": _sem_views(art.get("sem") or []),
            "histogram": _histogram_view(art.get("histogram"), sample_id),
            "heights": _height_views(art.get("height") or [])}


#: the key of a sample's artifacts that holds its finished pictures instead of previews
FINISHED = "finished_pictures"


@functools.cache
def drawn_by() -> str:
    """What names the code that draws the report's pictures: the package version and a hash
    of the report's drawing modules (kept pictures of other code are drawn again)."""
    h = hashlib.sha256(__version__.encode("utf-8"))
    for module in (fg, html_template, sys.modules[__name__]):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def _kept_pictures(out: str | os.PathLike | None, s: Mapping, art: Mapping | None
                   ) -> dict | None:
    """Sample `s`'s finished pictures: those `art` holds under `FINISHED`, else kept ones
    when `out` keeps them for its key and this drawing code, else drawn from `art` and kept
    there; None without `out`, a key or pictures (the view then draws from `art`, or shows
    none)."""
    if art is not None and FINISHED in art:  # loaded already by whoever planned the run
        return art[FINISHED]
    key = (s.get("provenance") or {}).get("idempotency_key")
    sid = str(s.get("sample_id", ""))
    if out is None or not key or art is None or not sid:
        return None
    kept = preview_cache.load_pictures(Path(out), sid, str(key), drawn_by())
    if kept is not None:
        return kept
    pictures = picture_views(art, sid)
    try:
        preview_cache.save_pictures(Path(out), sid, str(key), pictures, drawn_by())
    except (OSError, OutputError) as exc:  # the report shows them all the same
        log.warning("%s: finished pictures not kept for later runs: %s", sid, exc)
    return pictures


def _gate_view(gate: Mapping) -> dict:
    """The production gate's outcome badge, decision rule, how its properties combine, and
    its reasons."""
    combine = gate.get("combine")
    return {
        "outcome": _gate_badge(gate),
        "gate_rule": _DECISION_RULES.get(gate.get("decision_rule"),
                                         fmt(gate.get("decision_rule"))),
        "gate_combine": _COMBINE.get(combine, f"combine: {fmt(combine)}"),
        "gate_reasons": [str(r) for r in gate.get("reasons") or []],
    }


def _c15_summary(rows: Iterable[Mapping]) -> list[dict]:
    """Claim 15's properties (porosity, Sa, Sz) for the summary table: the value and whether
    it holds, "n/a" for a property not in `rows`."""
    by_name = {r["name"]: r for r in rows}
    return [{"text": by_name[n]["short"], "met": by_name[n]["met"]} if n in by_name
            else {"text": _NA, "met": None} for n in _C15_ORDER]


def _claims_view(s: Mapping, metrics: Mapping) -> dict:
    """Whether sample `s`'s particle claims are met, and the rows of its particle and layer
    claims."""
    particle = s.get("particle_claims") or {}
    return {
        "particle_met": _badge(particle.get("met")),
        "particle_rows": _claim_rows(particle, _claim_value),
        "layer_rows": _claim_rows(s.get("layer_claims") or {}, _layer_value(metrics)),
    }


def _failed_rows(images: Iterable[Mapping]) -> list[dict]:
    """The files that could not be measured: path, file name, role and error."""
    return [{"path": fmt(im.get("path")), "file": os.path.basename(fmt(im.get("path"))),
             "role": fmt(im.get("role")), "error": fmt(im.get("error"))}
            for im in images if im.get("status") == "error"]


def _order_key(view: dict) -> tuple:
    return (_OUTCOME_RANK.get(view["outcome"]["key"], 1),
            _MET_RANK[{"true": True, "false": False}.get(view["claim15_met"]["key"])],
            -len(view["failed"]))


def _run_view(results: Mapping) -> dict:
    spec = results.get("spec") or {}
    counts = results.get("counts") or {}
    prov = {
        "package_version": results.get("package_version"),
        "created_utc": results.get("created_utc"),
        "folder": results.get("folder"),
        "out": results.get("out"),
        "schema_version": results.get("schema_version"),
        "spec": spec,
        "gate_spec": results.get("gate_spec"),
        "recipe": results.get("recipe"),
    }
    return {
        "set_id": results.get("id") or (os.path.basename(str(results.get("folder") or "")) or None),
        "folder": fmt(results.get("folder")),
        "created_utc": fmt(results.get("created_utc")),
        "package_version": fmt(results.get("package_version")),
        "spec_id": fmt(spec.get("id")),
        "spec_name": spec_name(spec.get("id")),
        "gate_spec_id": fmt((results.get("gate_spec") or {}).get("id")),
        "exit_code": fmt(results.get("exit_code")),
        "counts": ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in counts.items()),
        "provenance_rows": flatten(prov),
        "pictures_note": _pictures_note(results.get("report_pictures"), spec_name(spec.get("id"))),
    }


def _pictures_note(pics: Mapping | None, spec: str = "Claim 15") -> str | None:
    if not pics or pics.get("policy") != "attention":
        return None
    return (f"Pictures are shown for the {pics['with_pictures']} of {pics['samples']} samples "
            f"that need attention (not conforming, {spec} not met, or a file that failed); "
            "in runs of more than "
            f"{pics['all_up_to']} samples the others are listed without them "
            "(electrode-qc run --pictures all shows every sample's).")


def _trend_views(trends: Iterable[Mapping]) -> list[dict]:
    out = []
    for t in trends:
        w, h = image_size(t["png"])
        unit = _unit(t.get("unit") or METRICS.get(t.get("metric"), ("", ""))[1])
        lim = t.get("limits")
        caption = f"{t['title']}: {t['n']} measurements"
        if lim is not None:
            lcl, ucl, centre = (fmt_pm(lim[k], unit=unit) for k in ("lcl", "ucl", "centre"))
            caption += f"; centre {centre}, control limits {lcl} to {ucl} (process, not spec)"
        out.append({"uri": data_uri(t["png"]), "width": w, "height": h, "caption": caption})
    return out


# ------------------------------------------------------------------------------ public API
def render_html(results: dict, artifacts: dict, trends: list | None = None, *,
                keep_pictures: str | os.PathLike | None = None) -> str:
    """The report as one self-contained HTML string.

    Parameters
    ----------
    results : dict
        The run's results as written to ``results.json`` (``samples`` with ``sample_id``,
        ``spec``, ``particle_claims``, ``gate``, ``metrics``, ``images``, ``flags``,
        ``provenance``; run-level ``spec``, ``package_version``, ``created_utc``, ...).
        Missing keys are shown as "n/a".
    artifacts : dict
        ``{sample_id: {"sem": [...], "height": [...], "histogram": {...} | None}}`` (see
        the module notes of `pipeline.report`); a sample may be absent.
    trends : list, optional
        Trend charts from the store (`pipeline.report.trends.trends`): shown after the
        summary.
    keep_pictures : path, optional
        The output folder whose ``previews/`` keeps each sample's finished pictures under
        its idempotency key: pictures kept there by the same drawing code are shown as they
        are, the others are drawn and kept.

    Returns
    -------
    str
        HTML with inline CSS and picture data URIs (WebP photos, PNG overlays and charts);
        no script and no external reference. Samples are ordered failures first (gate
        outcome non-conforming, indeterminate, conforming; then claim 15 not met,
        undetermined, met; then more failed files).
    """
    import jinja2

    artifacts = artifacts or {}
    views = [_sample_view(i, s, artifacts.get(s.get("sample_id")),
                          _kept_pictures(keep_pictures, s, artifacts.get(s.get("sample_id"))))
             for i, s in enumerate(results.get("samples") or [])]
    views.sort(key=_order_key)  # stable: ties keep the results' order
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE).render(css=CSS, run=_run_view(results), samples=views,
                                            trends=_trend_views(trends or []))


def write_html(path: str | os.PathLike, results: dict, artifacts: dict,
               trends: list | None = None, *,
               keep_pictures: str | os.PathLike | None = None) -> Path:
    """Render the report and write it to `path` (UTF-8, parent folders made); returns the
    path. `keep_pictures` as in `render_html`."""
    path = Path(path)
    html = render_html(results, artifacts, trends, keep_pictures=keep_pictures)
    ensure_folder(path.parent)
    return atomic_write_bytes(path, html.encode("utf-8"))
