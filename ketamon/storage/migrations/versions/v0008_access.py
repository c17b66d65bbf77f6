"""Access (issue 13): account lockout after failed sign-ins, and emergency (break-glass)
access.

``app_user.failed_logins`` counts failed sign-ins since the last good one; ``locked_at`` is set
when they reach the site's limit, and only an admin clears it. ``emergency_access`` holds each
break-glass sign-in: who, why, until when, and the admin's review (an open review shows on the
review board).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ALTER TABLE ADD/DROP COLUMN (SQLite 3.35+): a batch copy of app_user would trip
    # the foreign keys every other table holds on it
    op.add_column(
        "app_user", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("app_user", sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "emergency_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("station", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"]),
        sa.ForeignKeyConstraint(["reviewed_by_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("emergency_access")
    op.drop_column("app_user", "locked_at")
    op.drop_column("app_user", "failed_logins")
