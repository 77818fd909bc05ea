"""Fields of view -> one value per sample, with an expanded uncertainty.

For a metric measured on n fields of view (height maps, cross-sections, surface images):
the mean, the sample standard deviation (n >= 2), the standard uncertainty of the mean from
repeatability ``u_rep = SD / sqrt(n)``, a calibration component ``u_cal = rel * |mean|``
(the instrument profile's relative uncertainty of the scale, or the spec's default), and
any further components given, combined in quadrature and expanded with k = 2
(GUM): ``U = 2 sqrt(u_rep^2 + u_cal^2 + ...)``. With one field the repeatability is not
known: U then holds the other components only and a flag says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["COVERAGE_K", "MetricSummary", "summarize"]

COVERAGE_K = 2.0


@dataclass(frozen=True)
class MetricSummary:
    """One metric over a sample's fields of view: mean, SD (None with one field), n, the
    expanded uncertainty U (k = `COVERAGE_K`) and its components, the values, and flags."""

    mean: float
    sd: float | None
    n: int
    U: float | None
    k: float
    u_repeatability: float | None
    u_calibration: float | None
    values: tuple[float, ...]
    flags: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """As results.json holds it (``sample.metrics``)."""
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "U": self.U, "k": self.k,
                "u_repeatability": self.u_repeatability, "u_calibration": self.u_calibration,
                "values": list(self.values), "flags": list(self.flags)}


def summarize(values: Iterable[float], *, u_cal_rel: float | None = None,
              u_other: Iterable[float] = ()) -> MetricSummary | None:
    """Mean, SD, n and U (k = 2) of per-field values; None when there is no finite value.

    >>> s = summarize([0.068, 0.072], u_cal_rel=0.02)
    >>> round(s.mean, 4), s.n, round(s.U, 5)
    (0.07, 2, 0.00488)

    Parameters
    ----------
    values : iterable of float
        One value per field of view; non-finite values are left out (and counted).
    u_cal_rel : float, optional
        Relative standard uncertainty of the calibration (k = 1).
    u_other : iterable of float
        Further standard uncertainties (k = 1), in the unit of the values.
    """
    v = np.asarray([float(x) for x in values if x is not None], float)
    dropped = int((~np.isfinite(v)).sum())
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    flags: list[str] = []
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size >= 2 else None
    u_rep = sd / math.sqrt(v.size) if sd is not None else None
    if u_rep is None:
        flags.append("single field of view: repeatability not known, U from calibration only")
    u_cal = abs(mean) * float(u_cal_rel) if u_cal_rel is not None else None
    comps = [u for u in (u_rep, u_cal, *u_other) if u is not None]
    u_c = math.sqrt(sum(u * u for u in comps)) if comps else None
    if dropped:
        flags.append(f"{dropped} non-finite value(s) left out")
    return MetricSummary(mean=mean, sd=sd, n=int(v.size),
                         U=COVERAGE_K * u_c if u_c is not None else None, k=COVERAGE_K,
                         u_repeatability=u_rep, u_calibration=u_cal,
                         values=tuple(float(x) for x in v), flags=tuple(flags))
