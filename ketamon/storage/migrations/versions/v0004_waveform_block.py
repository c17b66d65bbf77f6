"""Waveforms (the 125 Hz pleth) stored with the session: ``waveform_block``, one row per
contiguous block of samples (about ten seconds), the samples packed as little-endian float32.

A block is device data like ``vital_reading``: inserted by the one writer, never updated, not
audited row by row. Ten seconds of pleth is 1,250 samples (5,000 bytes); an 8-hour session is
some 2,900 rows and 14 MB.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "waveform_block",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("parameter", sa.String(length=32), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rate_hz", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("samples", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["treatment_session.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_waveform_block_session_time", "waveform_block", ["session_id", "parameter", "start_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_waveform_block_session_time", table_name="waveform_block")
    op.drop_table("waveform_block")
