"""One sample's unit of work, as a worker runs it: measure the sample, write its particle
table and keep its pictures, return a small record (`measure_task`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.batch.execute import worker_info
from pipeline.batch.sample import measure_sample
from pipeline.errors import ElectrodeQCError, one_line
from pipeline.report import preview_cache
from pipeline.report.tables import write_particle_table

__all__ = ["TASK_IMPORTS", "measure_task", "needs_attention", "table_name"]

log = logging.getLogger(__name__)

# what a worker imports before its first task (the science layers load these lazily)
TASK_IMPORTS = (__name__, "cv2", "pandas", "xarray", "tifffile", "pyarrow.parquet",
                "scipy.ndimage", "skimage.segmentation", "sklearn.mixture")


def table_name(sample_id: str, key: str) -> str:
    """The file stem of a sample's particle table for the measurement with idempotency key
    `key`."""
    return f"{sample_id}-{key[:12]}"


def needs_attention(rec: dict[str, Any]) -> bool:
    """A sample the report shows pictures of when only some get them: not conforming at
    the gate, the run's spec (claim 15 by default) not met or undecided, or a file that could
    not be measured."""
    return (rec.get("gate", {}).get("outcome") != "conforming"
            or rec.get("spec", {}).get("met") is not True
            or any(im.get("status") == "error" for im in rec.get("images") or []))


def measure_task(payload: tuple) -> dict[str, Any]:
    """One sample in a worker: measure, write its particle table, return a small record.

    `payload` is ``(sample, config, out or None, pictures, key, digests)``, `digests` the
    SHA-256 of each file the run hashed already (path -> hex), so no file is hashed twice;
    the record is
    ``{"record", "artifacts" (None without pictures), "particles" (the table's reference),
    "worker", "write_error"}``. The sample's older tables are retired by the parent once
    this record is stored.
    """
    sample, cfg, out, pictures, key, digests = payload
    previews = pictures in ("all", "attention")
    rec, art, tabs = measure_sample(sample, cfg, previews=previews, digests=digests)
    if pictures == "attention" and not needs_attention(rec):
        art, previews = None, False
    ref = write_error = None
    if out is not None and tabs.get("particles") is not None:
        try:
            ref = write_particle_table(tabs["particles"], Path(out), table_name(sample.id, key))
        except (OSError, ElectrodeQCError) as exc:  # the measurement is kept all the same
            write_error = f"{sample.id}: particle table not written: {one_line(exc)}"
            rec["flags"].append(write_error)
    if previews and out is not None:
        try:
            preview_cache.save(Path(out), sample.id, key, art)
        except (OSError, ElectrodeQCError) as exc:  # in this run's report all the same
            log.warning("%s: previews not kept for later runs: %s", sample.id, one_line(exc))
    return {"record": rec, "artifacts": art if previews else None, "particles": ref,
            "worker": worker_info(), "write_error": write_error}
