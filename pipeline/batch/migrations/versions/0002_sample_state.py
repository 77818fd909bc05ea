"""samples.state: "before" or "after" pressing, or NULL, so trends can keep them apart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The new column repeats the ``state`` field of each row's own ``record_json``; rows stored
before this revision get it from there. No measured value or verdict changes.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STATES = ("before", "after")


def upgrade() -> None:
    with op.batch_alter_table("samples", recreate="never") as batch:  # a plain ADD COLUMN
        batch.add_column(sa.Column("state", sa.String(16)))
    samples = sa.table("samples", sa.column("row_id", sa.Integer),
                       sa.column("record_json", sa.Text), sa.column("state", sa.String(16)))
    conn = op.get_bind()
    by_state: dict[str, list[int]] = {s: [] for s in _STATES}
    for row_id, text in conn.execute(sa.select(samples.c.row_id, samples.c.record_json)):
        try:
            state = json.loads(text).get("state")
        except (ValueError, AttributeError):
            continue
        if state in by_state:
            by_state[state].append(row_id)
    for state, ids in by_state.items():
        for i in range(0, len(ids), 500):
            conn.execute(samples.update().where(samples.c.row_id.in_(ids[i:i + 500]))
                         .values(state=state))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): copying the table, as batch mode would, is refused
    # while image rows refer to it with foreign keys on
    with op.batch_alter_table("samples", recreate="never") as batch:
        batch.drop_column("state")
