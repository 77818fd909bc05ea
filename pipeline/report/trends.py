"""Trend charts from the results store: individuals and moving range (I-MR) per metric.

Control limits describe the process, spec limits the requirement; the charts keep them apart
(control limits solid grey, the spec limit dashed red, in the legend by name). For
individuals ``x_i`` with moving ranges ``MR_i = |x_i - x_{i-1}|``: centre line ``x-bar``,
``UCL/LCL = x-bar +/- 2.66 MR-bar`` (2.66 = 3 / d2, d2 = 1.128 for n = 2), and for the moving
range ``UCL = 3.267 MR-bar`` (D4 for n = 2). Points outside the control limits are marked.
Limits need at least 2 values (one moving range).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.report.figures import chart_png

__all__ = ["METRICS", "imr_limits", "trend_png", "trends"]

E2 = 2.66
D4 = 3.267

# metric column of Store.history() -> (title, unit, spec limit key in claim15, scale)
METRICS = {
    "porosity_frac": ("Porosity", "%", "porosity", 100.0),
    "Sa_um": ("Sa", "um", "Sa", 1.0),
    "Sz_um": ("Sz", "um", "Sz", 1.0),
    "void_reduction_pct": ("Void reduction", "%", None, 1.0),
}


def imr_limits(x: np.ndarray) -> dict[str, Any] | None:
    """Centre line and control limits of an I-MR chart; None with fewer than 2 values."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None
    mr = np.abs(np.diff(x))
    mr_bar = float(mr.mean())
    centre = float(x.mean())
    return {"centre": centre, "ucl": centre + E2 * mr_bar, "lcl": centre - E2 * mr_bar,
            "mr_bar": mr_bar, "mr_ucl": D4 * mr_bar, "mr": mr}


def trend_png(values, labels, *, title: str, unit: str, spec_limit: float | None = None,
              dpi: int = 80) -> bytes:
    """The I-MR chart of `values` (in order) as PNG bytes (`unit` "um" is shown as µm)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unit = {"um": "\u00b5m"}.get(unit, unit)
    x = np.asarray(values, float)
    n = np.arange(1, x.size + 1)
    lim = imr_limits(x)
    fig = Figure(figsize=(6.4, 3.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.44, 0.62, 0.46))
    ax2 = fig.add_axes((0.1, 0.12, 0.62, 0.22), sharex=ax)
    ax.plot(n, x, "o-", color="#33506e", markersize=3, linewidth=1, label="individuals")
    if lim is not None:
        out = (x > lim["ucl"]) | (x < lim["lcl"])
        ax.plot(n[out], x[out], "o", color="#c0392b", markersize=5, label="out of control")
        for key, style in (("centre", "-"), ("ucl", ":"), ("lcl", ":")):
            ax.axhline(lim[key], color="#888888", linestyle=style, linewidth=1,
                       label={"centre": "centre line", "ucl": "control limits"}.get(key))
        ax2.plot(n[1:], lim["mr"], "o-", color="#33506e", markersize=3, linewidth=1)
        ax2.axhline(lim["mr_bar"], color="#888888", linewidth=1)
        ax2.axhline(lim["mr_ucl"], color="#888888", linestyle=":", linewidth=1)
    if spec_limit is not None:
        ax.axhline(spec_limit, color="#c0392b", linestyle="--", linewidth=1.2,
                   label=f"spec limit {spec_limit:g} {unit}")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit, fontsize=8)
    ax2.set_ylabel("moving range", fontsize=7)
    ax2.set_xlabel("measurement (oldest first)", fontsize=8)
    for a in (ax, ax2):
        a.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return chart_png(fig)


def trends(history, spec) -> list[dict[str, Any]]:
    """One I-MR chart per metric of `history` (`Store.history()`), limits from `spec`.

    Returns a list of {"metric", "state", "title", "unit", "png", "n", "limits"} (limits
    and unit as charted: porosity in %) for metrics with at
    least one value; the stored rows superseded by a later measurement are left out. Samples
    measured before pressing are a different process state: they get charts of their own
    ("... before pressing", state "before", without the claim's spec limits, which judge the
    pressed layer) and never share control limits with the pressed electrodes.
    """
    limits = spec.limits()
    h = history
    if "superseded" in h:
        h = h[~h["superseded"].astype(bool)]
    before = (h["state"] == "before").to_numpy() if "state" in h else np.zeros(len(h), bool)
    out = []
    for state, rows in ((None, h[~before]), ("before", h[before])):
        for col, (title, unit, spec_key, scale) in METRICS.items():
            if col not in rows or (state == "before" and col == "void_reduction_pct"):
                continue
            sel = rows[np.isfinite(rows[col].astype(float))]
            if sel.empty:
                continue
            v = sel[col].astype(float).to_numpy() * scale
            lim = limits.get(spec_key) if spec_key and state is None else None
            name = title if state is None else f"{title} before pressing"
            png = trend_png(v, sel["sample_id"].tolist(), title=f"{name}: I-MR chart",
                            unit=unit, spec_limit=None if lim is None else lim * scale)
            stats = imr_limits(v)
            out.append({"metric": col, "state": state, "title": name, "unit": unit, "png": png,
                        "n": int(v.size),
                        "limits": None if stats is None else {
                            k: stats[k] for k in ("centre", "ucl", "lcl", "mr_bar")}})
    return out
