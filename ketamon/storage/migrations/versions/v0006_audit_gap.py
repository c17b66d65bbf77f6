"""Retention: ``audit_gap``, the tombstones a purge leaves in the audit hash chain.

``ketamon purge`` deletes sessions past the retention period with their audit rows. Each run of
deleted audit rows becomes one ``audit_gap`` row: the hash the run started from
(``first_prev_hash``, the kept row before it) and the hash it ended on (``last_entry_hash``, which
the kept row after it, ``next_id``, names as its ``prev_hash``). ``audit verify`` accepts a break
in the chain only where a gap says so, and the purge's own audit row carries the SHA-256 of its
gaps, so a gap cannot be added or changed unseen. Append-only, like the audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = "audit_gap is append-only: tombstones cannot be changed or deleted"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_gap_no_update BEFORE UPDATE ON audit_gap
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER audit_gap_no_delete BEFORE DELETE ON audit_gap
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
)
PG_TRIGGERS = (
    f"""CREATE FUNCTION ketamon_audit_gap_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY} (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER audit_gap_append_only BEFORE UPDATE OR DELETE ON audit_gap
    FOR EACH ROW EXECUTE FUNCTION ketamon_audit_gap_append_only()""",
)


def upgrade() -> None:
    op.create_table(
        "audit_gap",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("purge_audit_id", sa.BigInteger(), nullable=False),
        sa.Column("after_id", sa.BigInteger(), nullable=True),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("first_prev_hash", sa.String(length=64), nullable=False),
        sa.Column("last_entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("next_id", name="uq_audit_gap_next_id"),
    )
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in PG_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_gap_append_only ON audit_gap")
        op.execute("DROP FUNCTION IF EXISTS ketamon_audit_gap_append_only()")
    op.drop_table("audit_gap")
