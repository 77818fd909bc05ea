"""Write a run's outputs: results.json, tables/ (CSV and Parquet) and report.html.

Every file is written through `pipeline.fsutil` (a temporary file of an unguessable name
beside it, flushed to disk and renamed into place), so an interrupted run leaves the
previous outputs whole, and a full disk is an `OutputError` naming the file.

CSV files are opened by spreadsheets, which evaluate a cell that starts with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return) as a formula: a sample id, path or error
message taken from the instrument's export folder could run commands on the reader's
machine. Such text cells are written with a leading single quote (``'=...``), which
spreadsheets show as text; numbers are written as they are (a negative number stays a
number). Parquet and results.json keep the text as it is. Records end in CRLF (RFC 4180),
so that a value holding a carriage return is quoted and stays in its row.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipeline.fsutil import atomic_open, atomic_write_bytes, ensure_folder
from pipeline.ingest.registry import sha256_file
from pipeline.jsonio import to_json
from pipeline.report.html import write_html

__all__ = ["RESULTS_SCHEMA_PATH", "csv_safe", "image_rows", "results_schema",
           "retire_particle_tables", "sample_rows", "write_outputs", "write_particle_table",
           "write_results_json"]

RESULTS_SCHEMA_PATH = Path(__file__).with_name("results.schema.json")

log = logging.getLogger(__name__)

_SCALAR = (str, int, float, bool, type(None))


def results_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) that results.json follows, shipped in the package."""
    return json.loads(RESULTS_SCHEMA_PATH.read_text(encoding="utf-8"))


def write_results_json(path: Path, results: dict[str, Any]) -> Path:
    text = to_json(results, indent=2)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def image_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per image: identity, calibration and its scalar results."""
    rows = []
    for s in results["samples"]:
        for im in s["images"]:
            ps = im.get("pixel_size_um") or {}
            row = {"sample_id": s["sample_id"], "path": im["path"], "role": im.get("role"),
                   "status": im["status"], "error": im.get("error"), "reader": im.get("reader"),
                   "sha256": im.get("sha256"), "pixel_size_x_um": ps.get("x"),
                   "pixel_size_y_um": ps.get("y"),
                   "pixel_size_source": im.get("pixel_size_source"),
                   "calibration": im.get("calibration")}
            for k, v in (im.get("results") or {}).items():
                if isinstance(v, _SCALAR):
                    row[k] = v
            rows.append(row)
    return rows


def sample_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per sample: the run's spec's values with U (claim 15 by default), verdicts,
    void reduction, modes."""
    rows = []
    for s in results["samples"]:
        row: dict[str, Any] = {"sample_id": s["sample_id"], "state": s["state"],
                               "spec_id": (s["spec"].get("spec") or {}).get("id"),
                               "spec_met": s["spec"].get("met"),
                               "gate_outcome": s["gate"].get("outcome"),
                               "gate_rule": s["gate"].get("decision_rule"),
                               "particle_claims_met": s["particle_claims"]["met"],
                               "layer_claims_met": (s.get("layer_claims") or {}).get("met"),
                               "void_reduction_pct": s.get("void_reduction_pct")}
        for name, p in s["spec"]["properties"].items():
            unit = "frac" if name == "porosity" else "um"
            row[f"{name.lower()}_{unit}"] = p["value"]
            row[f"{name.lower()}_U_{unit}"] = p["U"]
            row[f"{name.lower()}_met"] = p["met"]
            row[f"{name.lower()}_source"] = p["source"]
        psd = s["metrics"].get("psd") or {}
        modes = sorted(psd.get("modes") or [], key=lambda m: m["mean_nm"])
        for i, m in enumerate(modes, 1):
            row[f"mode{i}_mean_nm"] = m["mean_nm"]
            row[f"mode{i}_number_share"] = m["number_share"]
        row["bic_k"] = psd.get("bic_k")
        row["n_particles"] = psd.get("n")
        pr = s["metrics"].get("protrusions_per_mm2") or {}
        row["protrusions_per_mm2"] = pr.get("mean")  # empty over several magnification classes
        by = s["metrics"].get("protrusions_by_class") or {}
        row["protrusions_by_class"] = "; ".join(f"{c}: {v['mean']:.4g}" for c, v in by.items() if v)
        layers = s["metrics"].get("layers") or {}
        row["sublayer_ratio"] = layers.get("ratio_claim")
        row["sublayer_ratio_U"] = layers.get("U_ratio")
        row["n_flags"] = len(s["flags"])
        rows.append(row)
    return rows


# what a spreadsheet takes for the start of a formula (OWASP, "CSV injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(v: Any) -> Any:
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


def csv_safe(df):
    """`df` with every text cell that a spreadsheet would evaluate as a formula (starts
    with ``= + - @``, a tab or a carriage return) prefixed with a single quote. Columns of
    numbers, booleans and dates are left alone; `df` is not changed."""
    import pandas as pd

    out = None
    for i in range(df.shape[1]):
        s = df.iloc[:, i]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        elif not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        safe = s.map(_safe_cell)
        if not safe.equals(df.iloc[:, i]):
            if out is None:
                out = df.copy()
            out.isetitem(i, safe)
    return df if out is None else out


class _KeptTables:
    """The images and samples tables are rewritten only when their rows change: the rows'
    SHA-256 and the files' own are kept in ``previews/tables.json``, and a table whose rows
    and files match what was written is left as it is (pandas is then not even imported)."""

    def __init__(self, out: Path):
        self.path = Path(out) / "previews" / "tables.json"
        try:
            self.state = json.loads(self.path.read_bytes())
            if not isinstance(self.state, dict):
                self.state = {}
        except (OSError, ValueError):
            self.state = {}
        self.changed = False

    def write(self, rows: list[dict[str, Any]], folder: Path, name: str) -> list[Path]:
        import hashlib

        digest = hashlib.sha256(to_json(rows, sort_keys=True).encode("utf-8")).hexdigest()
        files = [folder / f"{name}.csv", folder / f"{name}.parquet"]
        was = self.state.get(name) or {}
        if was.get("rows") == digest and all(
                was.get(p.name) == _sha256_or_none(p) for p in files):
            return files
        import pandas as pd

        files = _write_table(pd.DataFrame(rows), folder, name)
        self.state[name] = {"rows": digest, **{p.name: _sha256_or_none(p) for p in files}}
        self.changed = True
        return files

    def save(self) -> None:
        if not self.changed:
            return
        try:
            ensure_folder(self.path.parent)
            atomic_write_bytes(self.path, to_json(self.state, indent=1).encode("utf-8"))
        except OSError as exc:  # the tables are written; only the next run's shortcut is lost
            log.warning("%s not written (%s): the next run rewrites the tables", self.path, exc)


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _write_table(df, folder: Path, name: str) -> list[Path]:
    # CRLF ends a record (RFC 4180): a value holding a bare carriage return is then quoted,
    # where with LF it would split its row for a reader
    text = csv_safe(df).to_csv(index=False, lineterminator="\r\n")
    csv = atomic_write_bytes(folder / f"{name}.csv", text.encode("utf-8"))
    pq = folder / f"{name}.parquet"
    with atomic_open(pq) as f:
        df.to_parquet(f, index=False)
    return [csv, pq]


def retire_particle_tables(out: Path, sample_id: str, keep: str) -> None:
    """Move a sample's particle tables other than `keep` (a name without suffix) to
    tables/particles-superseded/, so that tables/particles/ read as one dataset holds each
    sample once. `pipeline.batch.persist.retire_tables` calls it once the new table's row is
    stored, so the stored latest row never points at a moved file."""
    import re

    pat = re.compile(rf"^{re.escape(sample_id)}-[0-9a-f]{{12}}\.(parquet|csv)$")
    for sub in ("particles", "particles-csv"):
        for p in (out / "tables" / sub).glob(f"{sample_id}-*"):
            if pat.match(p.name) and p.stem != keep:
                dest = out / "tables" / "particles-superseded" / p.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)


def write_particle_table(df, out: Path, name: str) -> dict[str, Any]:
    """One sample's particle table as tables/particles/<name>.parquet and
    tables/particles-csv/<name>.csv (pyarrow).

    Written by the worker that measured the sample (names are ``<sample_id>-<12 hex digits
    of its key>``); `retire_particle_tables` moves the sample's earlier ones aside once the
    new row is stored. Returns the reference the record and the store keep:
    ``{"path"`` (relative to `out`), ``"sha256"`` (of the Parquet file), ``"rows"}``.
    """
    import hashlib

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder = ensure_folder(out / "tables" / "particles")
    df = df.copy()
    df.attrs = {}
    table = pa.Table.from_pandas(df, preserve_index=False)
    target = folder / f"{name}.parquet"
    with atomic_open(target) as f:
        pq.write_table(table, f)
    # apart: pyarrow reads particles/ as one dataset
    csv_dir = ensure_folder(out / "tables" / "particles-csv")
    safe = csv_safe(df)
    with atomic_open(csv_dir / f"{name}.csv") as f:
        pacsv.write_csv(table if safe is df else pa.Table.from_pandas(safe, preserve_index=False),
                        f)
    h = hashlib.sha256(target.read_bytes()).hexdigest()
    return {"path": str(target.relative_to(out)), "sha256": h, "rows": int(table.num_rows)}


def write_outputs(out: Path, results: dict[str, Any], artifacts: dict[str, Any], *,
                  html: bool = True, trends: list | None = None) -> list[Path]:
    """Write results.json, tables/{images,samples}.{csv,parquet} and report.html (the
    per-sample particle tables are written by the workers, `write_particle_table`)."""
    tdir = ensure_folder(out / "tables")
    written = [write_results_json(out / "results.json", results)]
    kept = _KeptTables(out)
    written += kept.write(image_rows(results), tdir, "images")
    written += kept.write(sample_rows(results), tdir, "samples")
    kept.save()
    if html:
        written.append(write_html(out / "report.html", results, artifacts, trends,
                                  keep_pictures=out))
    log.info("wrote %d files to %s", len(written), out)
    return written
