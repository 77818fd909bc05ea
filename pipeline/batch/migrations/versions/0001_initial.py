"""The first schema: runs, samples (append-only), images, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written out in full rather than imported from `pipeline.batch.store`, so that later changes to the
store's tables do not change what this revision did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("package_version", sa.String(64), nullable=False),
        sa.Column("started_utc", sa.String(32), nullable=False),
        sa.Column("finished_utc", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("meta_json", sa.Text, nullable=False),
    )
    op.create_table(
        "samples",
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sample_id", sa.String(255), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("created_utc", sa.String(32), nullable=False),
        sa.Column("package_version", sa.String(64), nullable=False),
        sa.Column("claim15_met", sa.Boolean),
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
        sa.CheckConstraint("supersedes IS NULL OR supersede_reason IS NOT NULL",
                           name="ck_samples_supersede_reason"),
    )
    op.create_index("ix_samples_sample_id", "samples", ["sample_id"])
    op.create_index("ix_samples_idempotency_key", "samples", ["idempotency_key"])
    # one first row per sample id; an idempotency key once unless re-measured on purpose
    op.create_index("uq_samples_first_row", "samples", ["sample_id"], unique=True,
                    sqlite_where=sa.text("supersedes IS NULL"),
                    postgresql_where=sa.text("supersedes IS NULL"))
    op.create_index("uq_samples_key_unforced", "samples", ["idempotency_key"], unique=True,
                    sqlite_where=sa.text("NOT forced"), postgresql_where=sa.text("NOT forced"))
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sample_row_id", sa.Integer, sa.ForeignKey("samples.row_id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("role", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("reader", sa.String(64)),
        sa.Column("results_json", sa.Text),
    )
    op.create_index("ix_images_sample_row_id", "images", ["sample_row_id"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_utc", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.run_id")),
    )


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("images")
    op.drop_table("samples")
    op.drop_table("runs")
