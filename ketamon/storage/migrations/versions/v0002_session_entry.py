"""The session record as entries: ``session_entry``, an event log (append-only, with database
triggers refusing UPDATE and DELETE, and TRUNCATE on PostgreSQL).

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APPEND_ONLY = "session_entry is append-only: entries cannot be changed or deleted"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER session_entry_no_update BEFORE UPDATE ON session_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER session_entry_no_delete BEFORE DELETE ON session_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
)

PG_TRIGGERS = (
    f"""CREATE FUNCTION ketamon_session_entry_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY} (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER session_entry_append_only BEFORE UPDATE OR DELETE ON session_entry
    FOR EACH ROW EXECUTE FUNCTION ketamon_session_entry_append_only()""",
    """CREATE TRIGGER session_entry_no_truncate BEFORE TRUNCATE ON session_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ketamon_session_entry_append_only()""",
)


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "session_entry",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("authorised_by_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("ref_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_session_entry_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["authorised_by_id"],
            ["app_user.id"],
            name=op.f("fk_session_entry_authorised_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_session_entry_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_entry")),
    )
    op.create_index("ix_session_entry_session", "session_entry", ["session_id", "id"])
    for statement in PG_TRIGGERS if _postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if _postgres():
        op.execute("DROP TRIGGER IF EXISTS session_entry_no_truncate ON session_entry")
        op.execute("DROP TRIGGER IF EXISTS session_entry_append_only ON session_entry")
        op.execute("DROP FUNCTION IF EXISTS ketamon_session_entry_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS session_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS session_entry_no_delete")
    op.drop_index("ix_session_entry_session", table_name="session_entry")
    op.drop_table("session_entry")
