"""Instrument calibration profiles: calibration/instruments/*.toml, matched and applied.

The profiles used are those of the site folder's instruments/ ($ELECTRODE_QC_CALIBRATION)
together with the packaged ones; a site file overrides a packaged file of the same name.

A profile says which instrument it belongs to (``[match]`` on vendor, model and serial), how
to correct the pixel size the file records (``[pixel_size] correction_factor``) or supply one
where the file has none (``override_um``), how to scale heights (``[z_scale] factor``) and
which certificate it rests on (``[certificate]`` with ``valid_until``). Applying a profile
returns a new DataArray that records the profile's identity; an expired certificate is
recorded as ``calibration = "expired:<id>"`` (a QC gate turns that into "indeterminate").
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config_files import CalibrationFile, calibration_dirs, config_number, load_versioned
from pipeline.errors import ConfigError
from pipeline.ingest.dataarray import Raster
from pipeline.ingest.limits import check_pixel_size

__all__ = [
    "Profile",
    "apply_profile",
    "find_profile",
    "instruments_dirs",
    "load_profile",
    "load_profiles",
    "serials_of",
]

log = logging.getLogger(__name__)

_SECTIONS: dict[str, set[str]] = {
    "match": {"vendor", "model", "serial"},
    "pixel_size": {"correction_factor", "override_um", "uncertainty_rel"},
    "z_scale": {"factor", "uncertainty_rel"},
    "certificate": {"id", "date", "valid_until", "issuer"},
}
_TOP = {"schema_version", "id", "title", "notes", *_SECTIONS}
_GLOB = set("*?[")


@dataclass(frozen=True)
class Profile:
    """One instrument profile, validated. Factors are per axis; None where not given."""

    id: str
    path: str
    match: dict[str, str]
    correction_factor: tuple[float, float] | None = None  # (x, y)
    override_um: tuple[float, float] | None = None  # (x, y)
    pixel_size_uncertainty_rel: float | None = None
    z_scale: float | None = None
    z_scale_uncertainty_rel: float | None = None
    certificate: dict[str, Any] | None = None
    file_identity: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The profile file's identity (id, path, SHA-256, schema version)."""
        return dict(self.file_identity)

    @property
    def source(self) -> str:
        """The pixel-size source string: ``calibration/instruments/<file>``."""
        return f"calibration/instruments/{Path(self.path).name}"

    @property
    def specificity(self) -> tuple[int, int]:
        """(fields matched on, of them exact rather than glob): larger is more specific."""
        exact = sum(1 for v in self.match.values() if not (_GLOB & set(v)))
        return len(self.match), exact


def instruments_dirs() -> list[Path]:
    """The instruments/ folders profiles come from: the site folder's, then the packaged one."""
    return calibration_dirs("instruments")


def _num(path, where: str, value: Any, *, hi: float | None = None) -> float:
    """A positive number (`pipeline.config_files.config_number`), at most `hi`."""
    return config_number(path, where, value, positive=True, hi=hi)


def _xy(path, where: str, value: Any, *, scalar_ok: bool, lo: float, hi: float):
    """A number (same on both axes, when allowed) or a table {x, y}, each in [lo, hi]."""
    if isinstance(value, dict):
        bad = set(value) - {"x", "y"}
        if bad or set(value) != {"x", "y"}:
            raise ConfigError(path, f"{where} must be a table with exactly x and y, found "
                                    f"keys {', '.join(sorted(value)) or 'none'}")
        x, y = (_num(path, f"{where}.{k}", value[k]) for k in ("x", "y"))
    elif scalar_ok:
        x = y = _num(path, where, value)
    else:
        raise ConfigError(path, f"{where} must be a table {{x = ..., y = ...}}, found {value!r}")
    for k, v in (("x", x), ("y", y)):
        if not lo <= v <= hi:
            raise ConfigError(path, f"{where}.{k} = {v} is outside [{lo}, {hi}]")
    return x, y


def _date(path, where: str, value: Any) -> _dt.date:
    if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
        raise ConfigError(path, f"{where} must be a TOML date (YYYY-MM-DD), found {value!r}")
    return value


def _check_keys(p, d: dict[str, Any]) -> None:
    """Known top-level keys and sections only; an id without spaces; string title and notes."""
    unknown = set(d) - _TOP
    if unknown:
        raise ConfigError(p, f"unknown instrument-profile keys: {', '.join(sorted(unknown))}")
    for sec, keys in _SECTIONS.items():
        sub = d.get(sec, {})
        if not isinstance(sub, dict):
            raise ConfigError(p, f"[{sec}] must be a table, found {sub!r}")
        bad = set(sub) - keys
        if bad:
            raise ConfigError(p, f"unknown keys in [{sec}]: {', '.join(sorted(bad))}")
    pid = d.get("id")
    if not isinstance(pid, str) or not pid.strip() or any(c.isspace() for c in pid):
        raise ConfigError(p, f"id must be a non-empty string without spaces, found {pid!r}")
    for key in ("title", "notes"):
        if key in d and not isinstance(d[key], str):
            raise ConfigError(p, f"{key} must be a string")


def _match(p, match: dict[str, Any]) -> dict[str, str]:
    """[match]: at least one non-empty string of vendor, model, serial (stripped)."""
    if not match:
        raise ConfigError(p, "[match] needs at least one of vendor, model, serial")
    for k, v in match.items():
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(p, f"[match] {k} must be a non-empty string, found {v!r}")
    return {k: v.strip() for k, v in match.items()}


def _pixel_size(p, ps: dict[str, Any]):
    """[pixel_size]: (correction factor (x, y), override (x, y) um, relative uncertainty),
    each None when not given."""
    corr = over = unc = None
    if "correction_factor" in ps:
        # A correction beyond +/-50 % is a wrong file or a wrong profile, not a calibration.
        corr = _xy(p, "[pixel_size] correction_factor", ps["correction_factor"],
                   scalar_ok=True, lo=0.5, hi=1.5)
    if "override_um" in ps:
        over = _xy(p, "[pixel_size] override_um", ps["override_um"],
                   scalar_ok=False, lo=1e-6, hi=1e5)
    if "uncertainty_rel" in ps:
        unc = _num(p, "[pixel_size] uncertainty_rel", ps["uncertainty_rel"], hi=0.5)
    if ps and corr is None and over is None:
        raise ConfigError(p, "[pixel_size] needs correction_factor or override_um")
    return corr, over, unc


def _z_scale(p, zs: dict[str, Any]):
    """[z_scale]: (factor in [0.5, 1.5], relative uncertainty), None when not given."""
    z = zu = None
    if zs:
        if "factor" not in zs:
            raise ConfigError(p, "[z_scale] needs factor")
        z = _num(p, "[z_scale] factor", zs["factor"])
        if not 0.5 <= z <= 1.5:
            raise ConfigError(p, f"[z_scale] factor = {z} is outside [0.5, 1.5]")
        if "uncertainty_rel" in zs:
            zu = _num(p, "[z_scale] uncertainty_rel", zs["uncertainty_rel"], hi=0.5)
    return z, zu


def _certificate(p, cert: dict[str, Any]) -> dict[str, Any] | None:
    """[certificate]: id, date, valid_until (not before its date), optional issuer."""
    if not cert:
        return None
    missing = {"id", "date", "valid_until"} - set(cert)
    if missing:
        raise ConfigError(p, f"[certificate] needs {', '.join(sorted(missing))}")
    if not isinstance(cert["id"], str) or not cert["id"].strip():
        raise ConfigError(p, "[certificate] id must be a non-empty string")
    if "issuer" in cert and not isinstance(cert["issuer"], str):
        raise ConfigError(p, "[certificate] issuer must be a string")
    issued = _date(p, "[certificate] date", cert["date"])
    until = _date(p, "[certificate] valid_until", cert["valid_until"])
    if until < issued:
        raise ConfigError(p, f"[certificate] valid_until {until} is before its date {issued}")
    return {"id": cert["id"], "date": issued, "valid_until": until,
            **({"issuer": cert["issuer"]} if "issuer" in cert else {})}


def profile_from_file(cf: CalibrationFile) -> Profile:
    """Validate a loaded instrument file strictly; every problem is a ConfigError naming it."""
    d, p = cf.data, cf.path
    _check_keys(p, d)
    match = _match(p, d.get("match", {}))
    corr, over, unc = _pixel_size(p, d.get("pixel_size", {}))
    z, zu = _z_scale(p, d.get("z_scale", {}))
    certificate = _certificate(p, d.get("certificate", {}))
    if corr is None and over is None and z is None:
        raise ConfigError(p, "profile corrects nothing: give [pixel_size] or [z_scale]")
    return Profile(id=d["id"], path=p, match=match, correction_factor=corr, override_um=over,
                   pixel_size_uncertainty_rel=unc, z_scale=z, z_scale_uncertainty_rel=zu,
                   certificate=certificate, file_identity=cf.identity())


def load_profile(path: str | Path) -> Profile:
    """Load and validate one instrument profile."""
    return profile_from_file(load_versioned(path, "instrument"))


def load_profiles(directory: str | Path | None = None) -> list[Profile]:
    """Every ``*.toml`` profile in `directory`, by file name.

    Without `directory`, the profiles of every folder of `instruments_dirs` (the site's and
    the packaged ones); a file name found in more than one folder is taken from the first.
    A missing folder means no profiles. Two files with the same id are a ConfigError.
    """
    folders = [Path(directory)] if directory is not None else instruments_dirs()
    chosen: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for f in folder.glob("*.toml"):
                chosen.setdefault(f.name, f)
    profiles = [load_profile(chosen[name]) for name in sorted(chosen)]
    seen: dict[str, str] = {}
    for pr in profiles:
        if pr.id in seen:
            raise ConfigError(pr.path, f"profile id {pr.id!r} is also used by {seen[pr.id]}")
        seen[pr.id] = pr.path
    return profiles


def serials_of(da) -> list[str]:
    """Serial numbers the image carries: attrs["serial"] and header keys naming a serial."""
    out = []
    if da.attrs.get("serial"):
        out.append(str(da.attrs["serial"]))
    for k, v in (da.attrs.get("header") or {}).items():
        if "serial" in str(k).lower() and v not in (None, ""):
            out.append(str(v).strip())
    return out


def _fits(pattern: str, values: list[str]) -> bool:
    pat = pattern.lower()
    return any(fnmatch.fnmatchcase(str(v).strip().lower(), pat) for v in values if v)


def _matches(da, pr: Profile) -> bool:
    fields = {
        "vendor": [da.attrs.get("vendor") or ""],
        "model": [da.attrs.get("instrument") or ""],
        "serial": serials_of(da),
    }
    return all(_fits(pat, fields[key]) for key, pat in pr.match.items())


def find_profile(da, profiles: list[Profile]) -> Profile | None:
    """The most specific profile matching the image's vendor, instrument and serial.

    Matching is case-insensitive, exact or glob (``*``, ``?``, ``[...]``). More match fields
    win; at equal count, more exact (non-glob) fields win. Two equally specific matches are
    a ConfigError naming both files.
    """
    hits = [pr for pr in profiles if _matches(da, pr)]
    if not hits:
        return None
    best = max(pr.specificity for pr in hits)
    top = [pr for pr in hits if pr.specificity == best]
    if len(top) > 1:
        raise ConfigError(
            top[0].path,
            f"{da.attrs.get('source_path')} matches instrument profiles "
            f"{', '.join(pr.id + ' (' + Path(pr.path).name + ')' for pr in top)} equally; "
            "make one of their [match] rules more specific",
        )
    return top[0]


def apply_profile(da, profile: Profile, *, today: _dt.date):
    """A new DataArray with the profile applied and recorded.

    Parameters
    ----------
    da : xarray.DataArray
        An SEM image or height map as a reader returns it.
    profile : Profile
    today : datetime.date
        The date to check the certificate against (passed in: no hidden clock).

    Returns
    -------
    xarray.DataArray
        Pixel size corrected (file value x correction_factor) or supplied (override_um,
        only where the file has none), coords rescaled; heights multiplied by the z scale
        (kind "height"). attrs: ``calibration`` ("profile:<id>", "expired:<id>", or
        "missing" when the image still has no pixel size), ``calibration_profile``
        (identity), ``pixel_size_uncertainty_rel``, ``pixel_size_source`` when the profile
        supplied or corrected the pixel size, ``z_scale`` where applied.
    """
    out = da.copy(deep=True)
    a = out.attrs
    ps = a.get("pixel_size_um")
    new_ps = None
    if ps and profile.correction_factor is not None:
        cx, cy = profile.correction_factor
        new_ps = (float(ps["x"]) * cx, float(ps["y"]) * cy)
        a["pixel_size_correction"] = {"x": cx, "y": cy}
        a["pixel_size_source_uncorrected"] = a.get("pixel_size_source")
        a["pixel_size_source"] = profile.source
    elif not ps and profile.override_um is not None:
        new_ps = profile.override_um
        a["pixel_size_source"] = profile.source
    elif ps and profile.override_um is not None:
        log.info("%s: file gives a pixel size; profile %s override_um not used",
                 a.get("source_path"), profile.id)
    if new_ps is not None:
        dx, dy = check_pixel_size(a.get("source_path"), *new_ps)
        a["pixel_size_um"] = {"x": dx, "y": dy}
        ny, nx = out.shape
        out = out.assign_coords(
            y=("y", (np.arange(ny) + 0.5) * dy, {"units": "um"}),
            x=("x", (np.arange(nx) + 0.5) * dx, {"units": "um"}),
        )
        a = out.attrs
    if profile.z_scale is not None and a.get("kind") == "height":
        out = out * profile.z_scale
        out.attrs = a
        a = out.attrs
        a["z_scale"] = profile.z_scale
        a["z_scale_uncertainty_rel"] = profile.z_scale_uncertainty_rel
    a["pixel_size_uncertainty_rel"] = profile.pixel_size_uncertainty_rel
    a["calibration_profile"] = {**profile.identity(), "id": profile.id}
    if profile.certificate:
        a["calibration_certificate"] = {k: (v.isoformat() if isinstance(v, _dt.date) else v)
                                        for k, v in profile.certificate.items()}
    if not a.get("pixel_size_um"):
        log.warning("%s: instrument profile %s supplies no pixel size for an image without one",
                    a.get("source_path"), profile.id)
        a["calibration"] = "missing"
    elif profile.certificate and today > profile.certificate["valid_until"]:
        log.warning("%s: instrument profile %s expired on %s (certificate %s)",
                    a.get("source_path"), profile.id,
                    profile.certificate["valid_until"].isoformat(), profile.certificate["id"])
        a["calibration"] = f"expired:{profile.id}"
    else:
        a["calibration"] = f"profile:{profile.id}"
    return out


def calibrate_image(da, *, profiles: list[Profile] | None = None, today: _dt.date | None = None):
    """Apply the matching instrument profile, if any, from calibration/instruments/.

    Returns `da` itself when no profile matches (its ``calibration`` stays "ok" or
    "missing"); a `pipeline.ingest.dataarray.Raster` that a profile applies to comes back as
    an `xarray.DataArray`. `today` defaults to the local date: the only place a clock is read.
    """
    profiles = load_profiles() if profiles is None else profiles
    profile = find_profile(da, profiles)
    if profile is None:
        return da
    if isinstance(da, Raster):  # read without xarray (`pipeline.read(as_xarray=False)`)
        da = da.to_xarray()
    return apply_profile(da, profile, today=today or _dt.date.today())
