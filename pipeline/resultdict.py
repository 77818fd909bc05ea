"""Results that read well in a notebook: a measurement's result is a dict subclass (JSON-ready,
picklable, equal to the plain dict of its values, so the package's consumers keep working)
whose repr shows its headline values and how many flags it carries, whose str (``print``) is
the whole dict, and whose `to_frame` gives its scalar values as a one-row table. Copies made
with ``dict(r)``, ``{**r}`` or ``r.copy()`` are plain dicts."""

from __future__ import annotations

import math
from typing import Any, ClassVar

__all__ = ["CrossSectionPorosity", "GravimetricPorosity", "Result", "SizeDistribution",
           "SurfaceTexture"]


def _shown(v: Any) -> str:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # a numpy scalar
        v = v.item()
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    return repr(v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str)) or (
        hasattr(v, "item") and getattr(v, "ndim", 1) == 0)


class Result(dict):
    """A result dict with a readable repr (`headline` keys first) and `to_frame`.

    >>> r = SurfaceTexture({"Sa_um": 0.0683, "Sz_um": 0.9012, "flags": ["Spd_undefined"]})
    >>> r
    SurfaceTexture(Sa_um=0.0683, Sz_um=0.9012, flags=1)
    >>> print(r)
    {'Sa_um': 0.0683, 'Sz_um': 0.9012, 'flags': ['Spd_undefined']}
    >>> r["Sa_um"], r == {"Sa_um": 0.0683, "Sz_um": 0.9012, "flags": ["Spd_undefined"]}
    (0.0683, True)
    """

    headline: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        shown = [f"{k}={_shown(self[k])}" for k in self.headline if k in self]
        if self.get("flags"):
            shown.append(f"flags={len(self['flags'])}")
        rest = len(self) - len(shown)
        more = f", ... {rest} more" if rest and shown else ("..." if rest else "")
        return f"{type(self).__name__}({', '.join(shown)}{more})"

    def __str__(self) -> str:
        return dict.__repr__(self)

    def to_frame(self):
        """A one-row pandas DataFrame of the scalar values (lists and tables left out).

        >>> SurfaceTexture({"Sa_um": 0.07, "flags": ["x"]}).to_frame().columns.tolist()
        ['Sa_um']
        """
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in self.items() if _scalar(v)}])


class SurfaceTexture(Result):
    """ISO 25178-2 parameters of a height map (`pipeline.metrology.texture.surface_texture`)."""

    headline = ("Sa_um", "Sq_um", "Sz_um", "Sdr_pct", "Sal_um", "Str", "Spd_per_mm2")


class SizeDistribution(Result):
    """A particle size distribution (`pipeline.segmentation.psd.size_distribution`);
    `modes_frame` gives one row per fitted mode."""

    headline = ("n", "x10_nm", "x50_nm", "x90_nm", "bic_k")

    def modes_frame(self):
        """The fitted modes as a pandas DataFrame (mean, GSD, shares, count per mode)."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in m.items() if _scalar(v)}
                             for m in self.get("modes") or []])


class CrossSectionPorosity(Result):
    """The porosity and thickness of a layer in an SEM cross-section
    (`pipeline.segmentation.cross_section.porosity_from_cross_section`)."""

    headline = ("porosity_frac", "U_porosity_frac", "thickness_um", "U_thickness_um")


class GravimetricPorosity(Result):
    """Porosity from thickness, areal mass and true densities
    (`pipeline.gravimetric.gravimetric_porosity`)."""

    headline = ("porosity_frac", "U_porosity_frac", "pore_free_density_g_cm3")
