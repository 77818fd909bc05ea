"""The sample record's decision against the run's spec is stored under ``spec`` (results
schema 2), and its column is ``spec_met``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

Until now the decision was stored under ``claim15`` whatever spec the run used, and the
spec's and the gate's decisions had different fields (``rule`` meant how the properties
combine in one and the decision rule in the other). Each stored record is rewritten to the
schema-2 shape: ``claim15`` becomes ``spec``; both decisions hold ``outcome``, ``met``,
``combine``, ``decision_rule``, ``reasons``, ``properties`` and ``spec``. No measured value or
verdict changes. The downgrade writes the old shape back.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_MET = {"conforming": True, "non-conforming": False}
_OUTCOME = {True: "conforming", False: "non-conforming", None: "indeterminate"}
_ORDER = ("outcome", "met", "combine", "decision_rule", "reasons", "properties", "spec")


def _decision_v2(d: dict, *, gate: bool) -> dict:
    """A schema-1 decision in the schema-2 shape. Records of the first releases lack some
    fields: ``combine`` comes from the spec's ``rule`` ("all" or "one or more"), the outcome
    from ``met``, the reasons are empty; what cannot be known (a failed task's gate did not
    record how its properties combine) is None."""
    d = dict(d)
    rule = d.pop("rule", None)
    if gate:
        d.setdefault("decision_rule", rule)
        d.setdefault("met", _MET.get(d.get("outcome")))
    else:
        d.setdefault("combine", {"all": "all", "one or more": "any"}.get(rule))
        d.setdefault("outcome", _OUTCOME.get(d.get("met"), "indeterminate"))
    d.setdefault("combine", None)
    d.setdefault("decision_rule", None)
    d.setdefault("reasons", [])
    d.setdefault("properties", {})
    return {**{k: d[k] for k in _ORDER if k in d}, **{k: v for k, v in d.items()
                                                      if k not in _ORDER}}


def _decision_v1(d: dict, *, gate: bool) -> dict:
    d = dict(d)
    if gate:
        rule = d.pop("decision_rule", None)
        d.pop("met", None)
        return {"outcome": d.pop("outcome", None), "rule": rule, **d}
    rule = "all" if d.get("combine") == "all" else "one or more"
    return {"outcome": d.pop("outcome", None), "met": d.pop("met", None), "rule": rule, **d}


def record_v2(rec: dict) -> dict:
    """A schema-1 sample record in the schema-2 shape (a schema-2 record unchanged)."""
    if "claim15" not in rec:
        return rec
    out = {}
    for k, v in rec.items():
        if k == "claim15":
            out["spec"] = _decision_v2(v or {}, gate=False)
        elif k == "gate":
            out["gate"] = _decision_v2(v or {}, gate=True)
        else:
            out[k] = v
    return out


def record_v1(rec: dict) -> dict:
    """A schema-2 sample record in the schema-1 shape."""
    if "spec" not in rec or "claim15" in rec:
        return rec
    out = {}
    for k, v in rec.items():
        if k == "spec":
            out["claim15"] = _decision_v1(v or {}, gate=False)
        elif k == "gate":
            out["gate"] = _decision_v1(v or {}, gate=True)
        else:
            out[k] = v
    return out


def _rewrite(convert, page: int = 500) -> None:
    """Rewrite each stored record with `convert`, `page` rows at a time (a large store is
    never held in memory whole)."""
    samples = sa.table("samples", sa.column("row_id", sa.Integer),
                       sa.column("record_json", sa.Text))
    conn = op.get_bind()
    ids = [r for (r,) in conn.execute(sa.select(samples.c.row_id).order_by(samples.c.row_id))]
    for i in range(0, len(ids), page):
        chunk = conn.execute(sa.select(samples.c.row_id, samples.c.record_json)
                             .where(samples.c.row_id.in_(ids[i:i + page]))).all()
        for row_id, text in chunk:
            try:
                rec = json.loads(text)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            new = convert(rec)
            if new is not rec:
                conn.execute(samples.update().where(samples.c.row_id == row_id)
                             .values(record_json=json.dumps(new, ensure_ascii=False)))


def upgrade() -> None:
    op.execute("ALTER TABLE samples RENAME COLUMN claim15_met TO spec_met")
    _rewrite(record_v2)


def downgrade() -> None:
    op.execute("ALTER TABLE samples RENAME COLUMN spec_met TO claim15_met")
    _rewrite(record_v1)
