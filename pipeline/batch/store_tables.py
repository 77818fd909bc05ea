"""The results store's tables, as the migrations leave them, and the rows of a sample record.

`pipeline.batch.store` queries through these; the tests compare them with what the migrations in
``pipeline/batch/migrations`` create. Values are stored as plain JSON text, finite floats or NULL,
never NaN; text holds no NUL.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

import sqlalchemy as sa

from pipeline.jsonio import to_json

__all__ = ["IMAGES", "IS_LATEST", "LATER", "METADATA", "QUARANTINE", "ROWS", "RUNS", "SAMPLES",
           "SCHEMA_HEAD", "STATES",
           "decode", "finite_float", "json_text", "now", "sample_values"]

STATES = ("before", "after")  # samples.state; anything else is stored as NULL
SCHEMA_HEAD = "0003"  # the newest migration (a test checks it against the migrations)

# The tables as the migrations leave them (tests compare the two). Queries use these.
METADATA = sa.MetaData()
RUNS = sa.Table(
    "runs", METADATA,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("folder", sa.Text, nullable=False),
    sa.Column("package_version", sa.String(64), nullable=False),
    sa.Column("started_utc", sa.String(32), nullable=False),
    sa.Column("finished_utc", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("meta_json", sa.Text, nullable=False),
)
SAMPLES = sa.Table(
    "samples", METADATA,
    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sample_id", sa.String(255), nullable=False, index=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, index=True),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("package_version", sa.String(64), nullable=False),
    sa.Column("spec_met", sa.Boolean),  # named claim15_met before revision 0003
    sa.Column("gate_outcome", sa.String(32)),
    sa.Column("gate_rule", sa.String(64)),
    sa.Column("porosity_frac", sa.Float),
    sa.Column("porosity_U", sa.Float),
    sa.Column("porosity_source", sa.Text),
    sa.Column("sa_um", sa.Float),
    sa.Column("sa_U", sa.Float),
    sa.Column("sz_um", sa.Float),
    sa.Column("sz_U", sa.Float),
    sa.Column("void_reduction_pct", sa.Float),
    sa.Column("supersedes", sa.Integer, sa.ForeignKey("samples.row_id"), unique=True),
    sa.Column("supersede_reason", sa.Text),
    sa.Column("record_json", sa.Text, nullable=False),
    sa.Column("particles_path", sa.Text),
    sa.Column("particles_sha256", sa.String(64)),
    sa.Column("particles_rows", sa.Integer),
    sa.Column("state", sa.String(16)),  # "before"/"after" pressing (revision 0002)
    sa.CheckConstraint("supersedes IS NULL OR supersede_reason IS NOT NULL",
                       name="ck_samples_supersede_reason"),
)
# one first row per sample id, and an idempotency key once unless re-measured on purpose
sa.Index("uq_samples_first_row", SAMPLES.c.sample_id, unique=True,
         sqlite_where=sa.text("supersedes IS NULL"), postgresql_where=sa.text("supersedes IS NULL"))
sa.Index("uq_samples_key_unforced", SAMPLES.c.idempotency_key, unique=True,
         sqlite_where=sa.text("NOT forced"), postgresql_where=sa.text("NOT forced"))
IMAGES = sa.Table(
    "images", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sample_row_id", sa.Integer, sa.ForeignKey("samples.row_id"), nullable=False,
              index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("role", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("reader", sa.String(64)),
    sa.Column("results_json", sa.Text),
)
QUARANTINE = sa.Table(
    "quarantine", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_utc", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.run_id")),
)
# sample rows joined to the row that supersedes each (superseded_by None: the latest). Built
# once: an alias rebuilds its column collection every time it is made.
LATER = SAMPLES.alias("later")
ROWS = (sa.select(SAMPLES, LATER.c.row_id.label("superseded_by"))
         .select_from(SAMPLES.outerjoin(LATER, LATER.c.supersedes == SAMPLES.c.row_id)))
IS_LATEST = LATER.c.row_id.is_(None)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def finite_float(v: Any) -> float | None:
    """A finite float or None (NULL; never NaN)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def json_text(v: Any) -> str:
    return to_json(v, ensure_ascii=False)


def _str(v: Any) -> str | None:
    """Text for a column, or None. A NUL (which a file can put into an error message) is
    stored as U+FFFD: PostgreSQL's text holds no NUL. The JSON columns keep it escaped."""
    return None if v is None else str(v).replace("\x00", "\ufffd")


def sample_values(record: dict, key: str, particles: dict | None) -> tuple[dict, list[dict]]:
    """The `samples` columns (but run, version and supersedes) and the `images` rows of a
    sample record."""
    props = (record.get("spec") or {}).get("properties") or {}
    gate = record.get("gate") or {}
    par = particles or {}

    def prop(name: str, field: str) -> Any:
        return (props.get(name) or {}).get(field)

    values = {
        "sample_id": str(record["sample_id"]), "idempotency_key": key, "created_utc": now(),
        "spec_met": (record.get("spec") or {}).get("met"),
        "gate_outcome": _str(gate.get("outcome")), "gate_rule": _str(gate.get("decision_rule")),
        "porosity_frac": finite_float(prop("porosity", "value")),
        "porosity_U": finite_float(prop("porosity", "U")),
        "porosity_source": _str(prop("porosity", "source")),
        "sa_um": finite_float(prop("Sa", "value")), "sa_U": finite_float(prop("Sa", "U")),
        "sz_um": finite_float(prop("Sz", "value")), "sz_U": finite_float(prop("Sz", "U")),
        "void_reduction_pct": finite_float(record.get("void_reduction_pct")),
        "record_json": json_text(record),
        "particles_path": _str(par.get("path")), "particles_sha256": _str(par.get("sha256")),
        "particles_rows": None if par.get("rows") is None else int(par["rows"]),
        "state": record.get("state") if record.get("state") in STATES else None,
    }
    images = [{"position": i, "path": _str(im.get("path")), "sha256": _str(im.get("sha256")),
               "role": _str(im.get("role")), "status": _str(im.get("status")),
               "error": _str(im.get("error")), "reader": _str(im.get("reader")),
               "results_json": None if im.get("results") is None else json_text(im["results"])}
              for i, im in enumerate(record.get("images") or [])]
    return values, images


def decode(row, column: str, name: str) -> dict:
    d = dict(row)
    text = d.pop(column)
    d[name] = None if text is None else json.loads(text)
    return d
