"""The self-contained HTML report, ``OUT/report.html``.

`render_html` turns the run's results (the dict written to ``results.json``) and its
in-memory artifacts (SEM previews with segmentation, height maps, diameters) into one HTML
page: inline CSS, pictures as base64 PNG data URIs, no script, nothing fetched from a network.
Text is escaped by Jinja2's autoescape. A figure that cannot be drawn shows its error in
place of the picture; a sample without artifacts, height maps or a size distribution shows
a note.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["render_html", "write_html"]

log = logging.getLogger(__name__)

_OUTCOME_RANK = {"non-conforming": 0, "indeterminate": 1, "conforming": 2}
_OUTCOME_CLASS = {"non-conforming": "bad", "indeterminate": "warn", "conforming": "good"}
_MET_RANK = {False: 0, None: 1, True: 2}
_COMPARISON = {"<=": "\u2264", "<": "<", ">=": "\u2265", ">": ">", "==": "="}
_C15_ORDER = ("porosity", "Sa", "Sz")
_NA = "n/a"
_METRIC_LABELS = {"porosity_gravimetric": "porosity (gravimetric)",
                  "porosity_cross_section": "porosity (cross-sections)",
                  "Sa_um": "Sa", "Sz_um": "Sz", "protrusions_per_mm2": "protrusion density"}


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


def fmt_pm(value: Any, u: Any = None, *, scale: float = 1.0, unit: str = "") -> str:
    """``value ± U unit`` with U to two significant digits and the value to the same place."""
    v, uu = _num(value), _num(u)
    if v is None:
        return _NA
    v *= scale
    suffix = f" {unit}" if unit else ""
    if uu is None or uu <= 0:
        return f"{fmt(v)}{suffix}"
    uu *= scale
    dec = min(max(1 - math.floor(math.log10(uu)), 0), 6)
    return f"{v:.{dec}f} \u00b1 {uu:.{dec}f}{suffix}"


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


def _pixel(v: Any) -> str:
    v = _num(v)
    if v is None:
        return _NA
    return f"{fmt(v * 1000.0)} nm" if v < 0.1 else f"{fmt(v)} \u00b5m"


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


# ------------------------------------------------------------------------- sample views
def _is_porosity(name: str) -> bool:
    return name.lower().startswith("porosity")


def _c15_rows(claim15: Mapping) -> list[dict]:
    props = claim15.get("properties") or {}
    names = [n for n in _C15_ORDER if n in props] + [n for n in props if n not in _C15_ORDER]
    rows = []
    for name in names:
        p = props.get(name) or {}
        percent = _is_porosity(name)  # porosity values are fractions; shown in %
        scale, unit = (100.0, "%") if percent else (1.0, _unit(p.get("unit")))
        limit = _num(p.get("limit"))
        comp = _COMPARISON.get(p.get("comparison"), p.get("comparison") or "")
        margin = _num(p.get("margin"))
        rows.append({
            "name": name,
            "value": fmt_pm(p.get("value"), p.get("U"), scale=scale, unit=unit),
            "limit": _NA if limit is None else f"{comp} {fmt(limit * scale)} {unit}".strip(),
            "margin": _NA if margin is None else f"{fmt(margin * scale)} {'points' if percent else unit}".strip(),
            "met": _badge(p.get("met")),
            "source": fmt(p.get("source")) if p.get("source") is not None else "",
            "short": fmt_pm(p.get("value"), None, scale=scale, unit=unit),
        })
    return rows


def _unit(u: Any) -> str:
    if not u:
        return ""
    return {"um": "\u00b5m", "um2": "\u00b5m\u00b2", "per_mm2": "/mm\u00b2"}.get(str(u), str(u))


def _metric_rows(metrics: Mapping) -> list[tuple[str, str]]:
    rows = []
    for name, m in metrics.items():
        if name == "psd":
            continue
        scale, unit = 1.0, ""
        if _is_porosity(name):
            scale, unit = 100.0, "%"
        elif name.endswith("_um"):
            unit = "\u00b5m"
        elif name.endswith("_per_mm2"):
            unit = "/mm\u00b2"
        elif name.endswith("_pct"):
            unit = "%"
        label = _METRIC_LABELS.get(name, name.replace("_", " "))
        if m is None:
            rows.append((label, _NA))
        elif isinstance(m, Mapping):
            value = m.get("mean", m.get("value"))
            text = fmt_pm(value, m.get("U"), scale=scale, unit=unit)
            extra = []
            if _num(m.get("sd")) is not None:
                extra.append(f"SD {fmt(m['sd'] * scale)}")
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
    rows = [("particles measured", fmt(psd.get("n")))]
    for q in ("x10_nm", "x50_nm", "x90_nm"):
        if q in psd:
            rows.append((f"{q[:3]} ({psd.get('weights', 'number')})", f"{fmt(psd[q])} nm"))
    for key, label in (("bic_k", "modes by BIC"), ("mode_ratio", "mode ratio (large/small)"),
                       ("mode_difference_nm", "mode difference (nm)"),
                       ("share_ge_100nm", "share >= 100 nm"),
                       ("merge_suspect_share", "merge suspects among >= 100 nm")):
        if key in psd:
            rows.append((label, fmt(psd[key])))
    modes = [[str(i), f"{fmt(m.get('mean_nm'))} nm", f"{fmt(m.get('sd_nm'))} nm", fmt(m.get("gsd")),
              fmt(m.get("number_share")), fmt(m.get("volume_share")), fmt(m.get("n"))]
             for i, m in enumerate(psd.get("modes") or [], 1)]
    return rows, modes  # its flags are among the sample's flags already


def _figure_error(what: str, path: Any, exc: Exception) -> str:
    log.warning("report: cannot draw %s %s: %s", what, path, exc)
    return f"Could not draw {what}: {type(exc).__name__}: {exc}"


def _sem_views(entries: Iterable[Mapping]) -> list[dict]:
    from pipeline.report import figures as fg

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
        view = {"caption": caption, "legend": legend, "uri": None, "width": 0, "height": 0,
                "error": None}
        try:
            png, (w, h) = fg.sem_png(e["image"], labels=e.get("labels"),
                                     phase_of_label=e.get("phase_of_label"),
                                     points=e.get("points"), layer_rows=e.get("layer_rows"))
            view.update(uri=fg.data_uri(png), width=w, height=h)
        except Exception as exc:
            view["error"] = _figure_error("the SEM preview", path, exc)
        out.append(view)
    return out


def _css(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _height_views(entries: Iterable[Mapping]) -> list[dict]:
    from pipeline.report import figures as fg

    out = []
    for e in entries:
        path = e.get("path", "")
        name = os.path.basename(str(path)) or "height map"
        title = f"{name}: Sa {fmt(_num(e.get('Sa_um')))} \u00b5m, Sz {fmt(_num(e.get('Sz_um')))} \u00b5m"
        view = {"title": title, "caption": "", "uri": None, "width": 0, "height": 0,
                "ticks": [], "gradient": "", "error": None}
        try:
            z = e["z_um"]
            png, (w, h), limits = fg.height_png(z)
            view.update(uri=fg.data_uri(png), width=w, height=h)
            px = _num(e.get("pixel_um"))
            fov = (f"{fmt(z.shape[1] * px)} \u00d7 {fmt(z.shape[0] * px)} \u00b5m field, "
                   if px else "")
            view["caption"] = (f"{path}: {fov}heights in \u00b5m (levelled), colour scale from the "
                               "0.5th to the 99.5th percentile; grey = not measured")
            if limits is not None:
                lo, hi = limits
                view["gradient"] = ", ".join(fg.colour_stops())
                view["ticks"] = [(f"{100 * i / 4:g}", f"{fmt(lo + (hi - lo) * i / 4)} \u00b5m" if i in (0, 4)
                                  else fmt(lo + (hi - lo) * i / 4),
                                  "first" if i == 0 else "last" if i == 4 else "")
                                 for i in range(5)]
        except Exception as exc:
            view["error"] = _figure_error("the height map", path, exc)
        out.append(view)
    return out


def _histogram_view(hist: Mapping | None, sample_id: str) -> dict | None:
    if not hist or hist.get("ecd_nm") is None:
        return None
    from pipeline.report import figures as fg

    view = {"uri": None, "width": 0, "height": 0, "error": None}
    try:
        png = fg.histogram_png(hist["ecd_nm"], hist.get("modes") or [], title=sample_id)
        w, h = fg.png_size(png)
        view.update(uri=fg.data_uri(png), width=w, height=h)
    except Exception as exc:
        view["error"] = _figure_error("the size histogram", sample_id, exc)
    return view


def _input_rows(images: Iterable[Mapping]) -> list[dict]:
    return [{"path": fmt(im.get("path")), "role": fmt(im.get("role")),
             "reader": fmt(im.get("reader")), "pixel": _pixel(im.get("pixel_size_um")),
             "pixel_source": fmt(im.get("pixel_size_source")), "status": fmt(im.get("status")),
             "error": im.get("error") if im.get("status") == "error" else None,
             "sha256": fmt(im.get("sha256"))} for im in images]


def _sample_view(index: int, s: Mapping, art: Mapping | None) -> dict:
    sid = str(s.get("sample_id", f"sample {index + 1}"))
    claim15 = s.get("claim15") or {}
    particle = s.get("particle_claims") or {}
    gate = s.get("gate") or {}
    metrics = s.get("metrics") or {}
    images = s.get("images") or []
    art = art or {}
    c15 = _c15_rows(claim15)
    by_name = {r["name"]: r for r in c15}
    psd_rows, mode_rows = _psd_rows(metrics.get("psd"))
    vr = _num(s.get("void_reduction_pct"))
    return {
        "anchor": f"sample-{index + 1}",
        "sample_id": sid,
        "title": fmt(s.get("title")) if s.get("title") else "",
        "state": s.get("state") or "",
        "outcome": _outcome_badge(gate.get("outcome")),
        "gate_rule": fmt(gate.get("rule")),
        "gate_reasons": [str(r) for r in gate.get("reasons") or []],
        "claim15_met": _badge(claim15.get("met")),
        "claim15_rule": claim15.get("rule") or "one or more",
        "claim15_reasons": [str(r) for r in claim15.get("reasons") or []],
        "c15_rows": c15,
        "c15_summary": [{"text": by_name[n]["short"], "met": by_name[n]["met"]} if n in by_name
                        else {"text": _NA, "met": None} for n in _C15_ORDER],
        "particle_met": _badge(particle.get("met")),
        "particle_rows": [{"claim": fmt(c.get("claim")), "text": fmt(c.get("text")),
                           "value": fmt(c.get("value")), "met": _badge(c.get("met"))}
                          for c in particle.get("claims") or []],
        "void_reduction": _NA if vr is None else f"{fmt(vr)} %",
        "metric_rows": _metric_rows(metrics),
        "psd_rows": psd_rows,
        "mode_rows": mode_rows,
        "flags": [str(f) for f in s.get("flags") or []],
        "unreadable": [{"path": fmt(im.get("path")), "role": fmt(im.get("role")),
                        "error": fmt(im.get("error"))} for im in images if im.get("status") == "error"],
        "inputs": _input_rows(images),
        "provenance_rows": flatten(s.get("provenance") or {}),
        "sem": _sem_views(art.get("sem") or []),
        "histogram": _histogram_view(art.get("histogram"), sid),
        "heights": _height_views(art.get("height") or []),
    }


def _order_key(view: dict) -> tuple:
    return (_OUTCOME_RANK.get(view["outcome"]["key"], 1),
            _MET_RANK[{"true": True, "false": False}.get(view["claim15_met"]["key"])],
            -len(view["unreadable"]))


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
        "exit_code": fmt(results.get("exit_code")),
        "counts": ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in counts.items()),
        "provenance_rows": flatten(prov),
        "pictures_note": _pictures_note(results.get("report_pictures")),
    }


def _pictures_note(pics: Mapping | None) -> str | None:
    if not pics or pics.get("policy") != "attention":
        return None
    return (f"Pictures are shown for the {pics['with_pictures']} of {pics['samples']} samples "
            "that need attention (not conforming, claim 15 not met, or a file that failed); "
            "in runs of more than "
            f"{pics['all_up_to']} samples the others are listed without them "
            "(electrode-qc run --pictures all shows every sample's).")


# ------------------------------------------------------------------------------ public API
def render_html(results: dict, artifacts: dict, trends: list | None = None) -> str:
    """The report as one self-contained HTML string.

    Parameters
    ----------
    results : dict
        The run's results as written to ``results.json`` (``samples`` with ``sample_id``,
        ``claim15``, ``particle_claims``, ``gate``, ``metrics``, ``images``, ``flags``,
        ``provenance``; run-level ``spec``, ``package_version``, ``created_utc``, ...).
        Missing keys are shown as "n/a".
    artifacts : dict
        ``{sample_id: {"sem": [...], "height": [...], "histogram": {...} | None}}`` (see
        the module notes of `pipeline.report`); a sample may be absent.
    trends : list, optional
        Trend charts from the store (`pipeline.report.trends.trends`): shown after the
        summary.

    Returns
    -------
    str
        HTML with inline CSS and PNG data URIs; no script and no external reference.
        Samples are ordered failures first (gate outcome non-conforming, indeterminate,
        conforming; then claim 15 not met, undetermined, met; then more unreadable files).
    """
    import jinja2

    from pipeline.report.html_template import CSS, TEMPLATE

    artifacts = artifacts or {}
    views = [_sample_view(i, s, artifacts.get(s.get("sample_id")))
             for i, s in enumerate(results.get("samples") or [])]
    views.sort(key=_order_key)  # stable: ties keep the results' order
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    from pipeline.report.figures import data_uri, png_size

    trend_views = []
    for t in trends or []:
        w, h = png_size(t["png"])
        lim = t.get("limits")
        caption = (f"{t['title']}: {t['n']} measurements" + (
            "" if lim is None else f"; centre {lim['centre']:.4g}, control limits "
            f"{lim['lcl']:.4g} to {lim['ucl']:.4g} (process, not spec)"))
        trend_views.append({"uri": data_uri(t["png"]), "width": w, "height": h,
                            "caption": caption})
    return env.from_string(TEMPLATE).render(css=CSS, run=_run_view(results), samples=views,
                                            trends=trend_views)


def write_html(path: str | os.PathLike, results: dict, artifacts: dict,
               trends: list | None = None) -> Path:
    """Render the report and write it to `path` (UTF-8, parent folders made); returns the path."""
    path = Path(path)
    html = render_html(results, artifacts, trends)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
