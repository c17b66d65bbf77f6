"""The clinic (issue 14): ``station`` (registration and heartbeat of each ketamon station on one
PostgreSQL, with its clock offset) and ``station_chair`` (which station runs which chair, its
session, link and next item due); ``server_time`` on ``vital_reading`` and ``alarm_event`` (the
server's clock beside the station's, for clock honesty: NULL for rows made before, and on SQLite).

On PostgreSQL, triggers publish each committed flag event (``alarm_event``), phase or session
change (``treatment_session``), session entry, chair row and station state change on the
``ketamon_clinic`` channel (``LISTEN ketamon_clinic``); NOTIFY is delivered at commit, so a central
view hears exactly what is committed. Readings are not published (they stay in their table).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
CHANNEL = "ketamon_clinic"

NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION ketamon_clinic_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload json;
BEGIN
    IF TG_TABLE_NAME = 'alarm_event' THEN
        payload := json_build_object('kind', 'alarm', 'session', NEW.session_id,
            'action', NEW.action, 'key', NEW.key, 'priority', NEW.priority,
            'technical', NEW.technical, 'id', NEW.id, 'time', NEW.time);
    ELSIF TG_TABLE_NAME = 'treatment_session' THEN
        IF TG_OP = 'UPDATE'
            AND NEW.phase IS NOT DISTINCT FROM OLD.phase
            AND NEW.ended_at IS NOT DISTINCT FROM OLD.ended_at
            AND NEW.first_dose_at IS NOT DISTINCT FROM OLD.first_dose_at
            AND NEW.patient_id IS NOT DISTINCT FROM OLD.patient_id THEN
            RETURN NULL;
        END IF;
        payload := json_build_object('kind', 'phase', 'session', NEW.id, 'chair', NEW.chair,
            'phase', NEW.phase, 'ended', NEW.ended_at IS NOT NULL);
    ELSIF TG_TABLE_NAME = 'session_entry' THEN
        payload := json_build_object('kind', 'entry', 'session', NEW.session_id,
            'entry', NEW.kind, 'id', NEW.id);
    ELSIF TG_TABLE_NAME = 'station_chair' THEN
        payload := json_build_object('kind', 'chair', 'chair', NEW.chair,
            'station', NEW.station_id, 'session', NEW.session_id, 'next_due', NEW.next_due);
    ELSIF TG_TABLE_NAME = 'station' THEN
        IF TG_OP = 'UPDATE' AND NEW.state IS NOT DISTINCT FROM OLD.state THEN
            RETURN NULL;
        END IF;
        payload := json_build_object('kind', 'station', 'station', NEW.id, 'name', NEW.name,
            'state', NEW.state);
    ELSE
        RETURN NULL;
    END IF;
    PERFORM pg_notify('{CHANNEL}', payload::text);
    RETURN NULL;
END
$$
"""

#: (trigger table, events)
TRIGGERS = (
    ("alarm_event", "INSERT"),
    ("treatment_session", "INSERT OR UPDATE"),
    ("session_entry", "INSERT"),
    ("station_chair", "INSERT OR UPDATE"),
    ("station", "INSERT OR UPDATE"),
)


def upgrade() -> None:
    op.create_table(
        "station",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ, nullable=False),
        sa.Column("station_time", TZ, nullable=False),
        sa.Column("clock_offset_s", sa.Float(), nullable=False),
        sa.Column("spooled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_station")),
        sa.UniqueConstraint("name", name=op.f("uq_station_name")),
    )
    op.create_table(
        "station_chair",
        sa.Column("chair", sa.String(length=64), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("link", sa.String(length=200), nullable=False),
        sa.Column("next_due", sa.String(length=200), nullable=False),
        sa.Column("next_due_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"], ["station.id"], name=op.f("fk_station_chair_station_id_station")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_station_chair_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("chair", name=op.f("pk_station_chair")),
    )
    op.create_index(
        op.f("ix_station_chair_station_id"), "station_chair", ["station_id"], unique=False
    )
    # Rows made before this revision have no server time (NULL); new ones get the server's
    # now() on PostgreSQL. (Added without a default first, so old rows are not back-dated.)
    op.add_column("vital_reading", sa.Column("server_time", TZ, nullable=True))
    op.add_column("alarm_event", sa.Column("server_time", TZ, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE vital_reading ALTER COLUMN server_time SET DEFAULT now()")
        op.execute("ALTER TABLE alarm_event ALTER COLUMN server_time SET DEFAULT now()")
        op.execute(NOTIFY_FUNCTION)
        for table, events in TRIGGERS:
            op.execute(
                f"CREATE TRIGGER ketamon_clinic_notify AFTER {events} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ketamon_clinic_notify()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, _events in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS ketamon_clinic_notify ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ketamon_clinic_notify()")
    with op.batch_alter_table("alarm_event") as batch:
        batch.drop_column("server_time")
    with op.batch_alter_table("vital_reading") as batch:
        batch.drop_column("server_time")
    op.drop_index(op.f("ix_station_chair_station_id"), table_name="station_chair")
    op.drop_table("station_chair")
    op.drop_table("station")
