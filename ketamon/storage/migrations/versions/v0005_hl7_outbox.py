"""The outbound HL7 v2 queue: ``hl7_outbox`` (one ORU^R01 per reading batch or signed session,
queued until the interface engine acknowledges it; unique control ids) and ``hl7_out_cursor``
(how far the readings and the record have been scanned). See :mod:`ketamon.storage.outbox`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hl7_outbox",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_code", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_outbox")),
        sa.UniqueConstraint("control_id", name=op.f("uq_hl7_outbox_control_id")),
    )
    op.create_index("ix_hl7_outbox_state_next", "hl7_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_hl7_outbox_session_id", "hl7_outbox", ["session_id"])
    op.create_table(
        "hl7_out_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_hl7_out_cursor")),
    )


def downgrade() -> None:
    op.drop_table("hl7_out_cursor")
    op.drop_index("ix_hl7_outbox_session_id", table_name="hl7_outbox")
    op.drop_index("ix_hl7_outbox_state_next", table_name="hl7_outbox")
    op.drop_table("hl7_outbox")
