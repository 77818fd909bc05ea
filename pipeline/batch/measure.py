"""One image, by its role: read, calibrate, measure; a small record, a table and a preview.

Used by `pipeline.run` (and its worker processes): `measure_file` never raises for a bad
file; it returns a record with ``status`` "error" and the typed error's message and exit
code, so one file's failure costs only that file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.batch.records import ImageRecord
from pipeline.errors import (
    EXIT_INTERNAL,
    EXIT_UNREADABLE,
    ConfigError,
    ElectrodeQCError,
    MemoryLimitExceeded,
    MissingCalibration,
)
from pipeline.ingest.discover import assign_role, magnification_class
from pipeline.ingest.registry import read
from pipeline.instruments import calibrate_image
from pipeline.metrology.form import remove_plane
from pipeline.metrology.texture import surface_texture
from pipeline.segmentation.cross_section import porosity_from_cross_section
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.protrusions import find_protrusions
from pipeline.segmentation.psd import aggregate_primaries, counted

__all__ = ["BYTES_PER_PIXEL", "PREVIEW_HEIGHT_PX", "PREVIEW_SEM_PX",
           "default_max_memory", "estimate_memory", "measure_file", "parse_memory"]

log = logging.getLogger(__name__)

PREVIEW_SEM_PX = 1024
PREVIEW_HEIGHT_PX = 512

#: Peak working memory of each role's measurement, bytes per pixel of the image, above
#: the image as read (measured: peak resident set above the image, previews on, at
#: 1024^2 to 4096^2: height 74-78, psd 61-62, surface 32-36, cross-section 29-39), with
#: a margin.
BYTES_PER_PIXEL = {"height": 90, "psd": 72, "surface": 44, "cross_section": 46}
_BASE_BYTES = 64 * 2**20  # the measurement's fixed overhead (tables, previews, small arrays)
#: The particle network's working memory per pixel of the block it runs on (at most one
#: tile of `pipeline.segmentation.learned`, 1024 px and its margins); measured 243 B/px at
#: 1024^2 at full scale. With it, `particles` on the synthetic model measured 167, 479 and
#: 1201 MiB above start at 1024^2, 2048^2 and 4096^2 (estimates 392, 676 and 1540 MiB).
NETWORK_BYTES_PER_PIXEL = 256
_NETWORK_BLOCK_PX = (1024 + 2 * 64) ** 2
MEMORY_SHARE = 0.75  # of the machine's memory, shared by the parallel jobs


def _physical_memory() -> int | None:
    """This machine's memory in bytes, or the cgroup's limit when that is smaller."""
    import os

    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def default_max_memory(jobs: int = 1) -> int | None:
    """The default memory limit of one measurement: a share (75 %) of the machine's memory
    divided by the samples measured at once; None when the machine does not say."""
    total = _physical_memory()
    return None if total is None else int(MEMORY_SHARE * total / max(1, int(jobs)))


def parse_memory(text: str) -> int:
    """Bytes from "8G", "512M", "1.5GiB", "2000000000" (K, M, G, T are powers of 1024)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ConfigError(None, f"--max-memory {text!r}: expected a size such as 8G, 512M or "
                                "a number of bytes")
    value = float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower())
    if value < 2**20:
        raise ConfigError(None, f"--max-memory {text!r}: less than 1 MiB cannot measure "
                                "anything")
    return int(value)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate_memory(shape: tuple[int, int], role: str) -> int:
    """Estimated peak working memory (bytes) of measuring an image of `shape` in `role`."""
    px = int(shape[0]) * int(shape[1])
    network = NETWORK_BYTES_PER_PIXEL * min(px, _NETWORK_BLOCK_PX) if role == "psd" else 0
    return _BASE_BYTES + BYTES_PER_PIXEL[role] * px + network


def _check_memory(path, shape: tuple[int, int], role: str, limit: int | None) -> None:
    if limit is None:
        return
    need = estimate_memory(shape, role)
    if need > limit:
        raise MemoryLimitExceeded(path, (
            f"measuring this {shape[0]} x {shape[1]} {role.replace('_', '-')} image needs about "
            f"{_gib(need)}, more than the limit of {_gib(limit)} per job; raise --max-memory, "
            "lower --jobs, or crop the image"))


def _sem_preview(img: np.ndarray) -> tuple[np.ndarray, float]:
    import cv2

    a = np.asarray(img)
    if a.dtype == np.uint16:
        lo, hi = np.percentile(a, (0.5, 99.5))
        a = np.clip((a.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255)
        a = a.astype(np.uint8)
    scale = min(1.0, PREVIEW_SEM_PX / max(a.shape))
    if scale < 1.0:
        size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(a), scale


def _shrink_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if labels.shape == shape:
        return labels
    return cv2.resize(labels.astype(np.float32), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(np.int32)


def _attrs_record(da) -> dict[str, Any]:
    a = da.attrs
    return {
        "kind": a.get("kind"),
        "reader": a.get("reader"),
        "vendor": a.get("vendor"),
        "instrument": a.get("instrument"),
        "sha256": a.get("source_sha256"),
        "shape": [int(da.shape[0]), int(da.shape[1])],
        "pixel_size_um": a.get("pixel_size_um"),
        "pixel_size_source": a.get("pixel_size_source"),
        "calibration": a.get("calibration"),
        "calibration_profile": a.get("calibration_profile"),
        "pixel_size_uncertainty_rel": a.get("pixel_size_uncertainty_rel"),
        "z_scale_uncertainty_rel": a.get("z_scale_uncertainty_rel"),
    }


def _psd(da, ctx: dict[str, Any]):
    table, labels = find_particles(da, min_diameter_nm=ctx.get("expected_min_diameter_nm"),
                                   return_labels=True)
    inner = table[~table["touches_edge"]]
    # the particles every statistic counts (`psd.counted`): this median is the image's x50
    kept = table[counted(table)]
    results = {
        "n_particles": len(table),
        "n_inner": len(inner),
        "ag_area_frac": table.attrs.get("ag_area_frac"),
        "particle_area_frac": table.attrs.get("particle_area_frac"),
        "ecd_median_nm": float(kept["ecd_nm"].median()) if len(kept) else None,
        "primary_size_nm": float(prim.mean()) if (prim := aggregate_primaries(table)).size else None,
        "flags": list(table.attrs.get("flags", [])),
        # what found the particles: the method and, for the network, its weights and scale
        "method": table.attrs.get("method"),
        "model_sha256": (table.attrs.get("model") or {}).get("sha256"),
        "network_scale": table.attrs.get("network_scale"),
    }
    art = {}
    if ctx.get("previews"):
        prev, scale = _sem_preview(da.values)
        art = {"image": prev, "scale": scale, "labels": _shrink_labels(labels, prev.shape),
               "phase_of_label": dict(zip(table["label"].tolist(), table["phase"].tolist())),
               "points": None, "layer_rows": None}
    return results, table, art


def _surface(da, ctx: dict[str, Any]):
    df = find_protrusions(da)
    ps = da.attrs["pixel_size_um"]
    pixel_nm = 1e3 * max(float(ps["x"]), float(ps["y"]))
    results = {"count": len(df), "per_mm2": df.attrs.get("per_mm2"),
               "area_mm2": df.attrs.get("area_mm2"), "pixel_nm": pixel_nm,
               "magnification_class": magnification_class(pixel_nm, ctx.get("rules")),
               "off_specimen_share": df.attrs.get("off_specimen_share"),
               "median_diameter_um": (float(df["diameter_um"].median())
                                      if "diameter_um" in df and len(df) else None)}
    art = {}
    if ctx.get("previews"):
        prev, scale = _sem_preview(da.values)
        pts = [(float(x + 0.5) * scale, float(y + 0.5) * scale, float(d) * scale / 2)
               for x, y, d in zip(df["x_px"], df["y_px"], df["diameter_px"])]
        art = {"image": prev, "scale": scale, "labels": None, "phase_of_label": None,
               "points": pts, "layer_rows": None}
    return results, None, art


def _sublayers_record(s: dict[str, Any], da) -> dict[str, Any]:
    """A cross-section's sub-layers for the record: thicknesses also in um."""
    ps = da.attrs.get("pixel_size_um")
    py = float(ps["y"]) if ps else None
    out = dict(s)
    out["thickness_um"] = [t * py for t in s["thickness_px"]] if py else None
    out["U_thickness_um"] = ([2.0 * u * py for u in s["u_thickness_px"]]
                             if py and s.get("u_thickness_px") else None)
    return out


def _cross_section(da, ctx: dict[str, Any]):
    r = porosity_from_cross_section(da)
    results = {k: r[k] for k in ("porosity_frac", "u_porosity_frac", "U_porosity_frac",
                                 "uncertainty", "band", "layer_top_row", "layer_bottom_row",
                                 "collector_side", "thickness_px", "thickness_um",
                                 "U_thickness_um", "feature_px", "rim", "threshold", "flags")}
    results["sublayers"] = _sublayers_record(r["sublayers"], da)
    art = {}
    if ctx.get("previews"):
        prev, scale = _sem_preview(da.values)
        art = {"image": prev, "scale": scale, "labels": None, "phase_of_label": None,
               "points": None,
               "layer_rows": (r["layer_top_row"] * scale, r["layer_bottom_row"] * scale)}
    return results, None, art


def _height(da, ctx: dict[str, Any]):
    r = surface_texture(da, recipe=ctx.get("recipe"))
    keep = ("Sa_um", "Sq_um", "Sp_um", "Sv_um", "Sz_um", "Ssk", "Sku", "Sdq", "Sdr_pct",
            "Sal_um", "Str", "Spd_per_mm2", "invalid_fraction", "sz_without_outliers_um",
            "n_outliers", "sz_spike_sensitive", "flags")
    results = {k: r.get(k) for k in keep}
    art = {}
    if ctx.get("previews"):
        ps = da.attrs["pixel_size_um"]
        z = remove_plane(np.asarray(da.values, float), ps["x"], ps["y"])
        step = max(1, int(np.ceil(max(z.shape) / PREVIEW_HEIGHT_PX)))
        art = {"z_um": z[::step, ::step], "pixel_um": float(ps["x"]) * step,
               "Sa_um": r.get("Sa_um"), "Sz_um": r.get("Sz_um")}
    return results, None, art


_BY_ROLE = {"psd": _psd, "surface": _surface, "cross_section": _cross_section,
            "height": _height}


def measure_file(path: str | Path, ctx: dict[str, Any]) -> dict[str, Any]:
    """Read, calibrate, assign a role and measure one file.

    Parameters
    ----------
    ctx : dict
        ``rules`` (`DiscoveryRules`), ``profiles`` (instrument profiles),
        ``recipe`` (Recipe), ``role_overrides`` ({glob: role}), ``expected_min_diameter_nm``,
        ``previews`` (bool: build report previews), ``today`` (datetime.date),
        ``max_memory`` (bytes, or None: no limit): a file whose measurement would need more
        (`estimate_memory`) is refused before it is measured.

    Returns
    -------
    dict
        ``record`` (JSON-ready: path, role, status "ok" | "error" | "skipped", error,
        exit_code, attrs, results; ``retry`` True when the failure may not repeat: out of
        memory), ``table`` (particle table or None), ``artifact``.
    """
    rec = ImageRecord(str(path))
    out: dict[str, Any] = {"record": rec, "table": None, "artifact": None}
    try:
        # the run's digest when it hashed the file already (`identity.digests_of`)
        da = read(path, sha256=(ctx.get("digests") or {}).get(str(path), True))
        da = calibrate_image(da, profiles=ctx.get("profiles"), today=ctx.get("today"))
        rec.file = _attrs_record(da)
        role = assign_role(da, path, ctx["rules"], ctx.get("role_overrides"))
        rec.role = role
        if role is None:
            rec.status = "skipped"
            rec.error = f"{path}: no discovery rule gives this image a role"
            return _json_record(out)
        if da.attrs.get("calibration") == "missing" or not da.attrs.get("pixel_size_um"):
            raise MissingCalibration(path, "the image has no pixel size; add an instrument "
                                           "profile (calibration/instruments) that supplies one")
        _check_memory(path, da.shape, role, ctx.get("max_memory"))
        results, table, art = _BY_ROLE[role](da, ctx)
        rec.results = results
        out["table"] = table
        if art:
            out["artifact"] = {"path": str(path), "role": role, **art}
    except ConfigError:
        raise  # a bad recipe or profile stops the run: it is not this file's fault
    except ElectrodeQCError as exc:
        # a larger memory limit may measure it: not reused from the store
        rec.fail(str(exc), exc.exit_code, type(exc).__name__,
                 retry=isinstance(exc, MemoryLimitExceeded))
    except MemoryError:
        rec.fail(f"{path}: out of memory while measuring it; lower --jobs, or measure it alone",
                 EXIT_UNREADABLE, "MemoryError", retry=True)
    except Exception as exc:  # one file's failure must not stop the sample
        log.debug("internal error on %s", path, exc_info=True)
        rec.fail(f"{path}: internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL,
                 "InternalError")
    return _json_record(out)


def _json_record(out: dict[str, Any]) -> dict[str, Any]:
    out["record"] = out["record"].to_json()
    return out
