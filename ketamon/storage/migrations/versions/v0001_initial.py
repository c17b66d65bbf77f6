"""Initial schema: users, patients, sessions, doses, readings, observations, alarms, the
threshold profile in force, and the append-only audit trail (with its database triggers).

Revision ID: 0001
Revises:
Create Date: 2026-03-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APPEND_ONLY = "audit_entry is append-only: entries cannot be changed or deleted"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
)

PG_TRIGGERS = (
    f"""CREATE FUNCTION ketamon_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY} (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION ketamon_audit_append_only()""",
    """CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ketamon_audit_append_only()""",
)


def _append_only_triggers() -> None:
    statements = PG_TRIGGERS if op.get_context().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def _seed_system_user() -> None:
    """The built-in account automatic writes are made under (it has no password)."""
    now = datetime.now(UTC)
    user = sa.table(
        "app_user",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("full_name", sa.String),
        sa.column("role", sa.String),
        sa.column("credentials", sa.String),
        sa.column("phone", sa.String),
        sa.column("email", sa.String),
        sa.column("password_hash", sa.String),
        sa.column("active", sa.Boolean),
        sa.column("is_demo", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    row = {
        "id": 1,
        "username": "system",
        "full_name": "ketamon (automatic)",
        "role": "system",
        "credentials": "",
        "phone": "",
        "email": "",
        "password_hash": None,
        "active": True,
        "is_demo": False,
        "created_at": now,
    }
    op.bulk_insert(user, [row])
    if op.get_context().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('app_user', 'id'), 1)")
    audit = sa.table(
        "audit_entry",
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("utc_offset_s", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("entity", sa.String),
        sa.column("entity_id", sa.BigInteger),
        sa.column("new_value", sa.Text),
        sa.column("reason", sa.Text),
        sa.column("station", sa.String),
    )
    shown = {**row, "created_at": now.isoformat()}
    op.bulk_insert(
        audit,
        [
            {
                "at": now,
                "utc_offset_s": 0,
                "user_id": 1,
                "action": "create",
                "entity": "app_user",
                "entity_id": 1,
                "new_value": json.dumps(shown, sort_keys=True),
                "reason": "schema created (migration 0001)",
                "station": "",
            }
        ],
    )


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "nurse",
                "physician",
                "admin",
                "auditor",
                "system",
                name="role",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("credentials", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("is_demo", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mrn", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("middle_initial", sa.String(length=4), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column(
            "sex",
            sa.Enum("male", "female", "other", name="sex", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column(
            "rems_enrolment",
            sa.Enum(
                "unknown",
                "not_enrolled",
                "enrolled",
                "not_applicable",
                name="remsenrolment",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("rems_enrolled_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("weight_kg > 0", name=op.f("ck_patient_weight_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint("mrn", name=op.f("uq_patient_mrn")),
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_s", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "create",
                "update",
                "delete",
                "login",
                "resume",
                name="auditaction",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("station", sa.String(length=200), nullable=False),
        sa.Column("prev_hash", sa.String(length=128), nullable=True),
        sa.Column("entry_hash", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_audit_entry_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
    )
    op.create_index("ix_audit_entry_entity", "audit_entry", ["entity", "entity_id"])
    op.create_index("ix_audit_entry_session_id", "audit_entry", ["session_id"])

    op.create_table(
        "treatment_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("chair", sa.String(length=64), nullable=False),
        sa.Column(
            "treatment",
            sa.Enum(
                "esketamine",
                "iv_ketamine",
                "other",
                name="treatmenttype",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "phase",
            sa.Enum(
                "pre_dose",
                "dosing",
                "observation",
                "ready_for_discharge",
                "discharged",
                "abandoned",
                name="sessionphase",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_dose_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("device", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("first_treatment", sa.Boolean(), nullable=True),
        sa.Column("concomitant_benzodiazepine", sa.Boolean(), nullable=True),
        sa.Column("concomitant_hypnotic", sa.Boolean(), nullable=True),
        sa.Column("concomitant_opioid", sa.Boolean(), nullable=True),
        sa.Column("concomitant_psychostimulant", sa.Boolean(), nullable=True),
        sa.Column("concomitant_maoi", sa.Boolean(), nullable=True),
        sa.Column("vitals_ok_before", sa.Boolean(), nullable=True),
        sa.Column("vitals_ok_end", sa.Boolean(), nullable=True),
        sa.Column("sedation", sa.Boolean(), nullable=True),
        sa.Column("dissociation", sa.Boolean(), nullable=True),
        sa.Column("respiratory_depression", sa.Boolean(), nullable=True),
        sa.Column("pulse_oximetry_used", sa.Boolean(), nullable=True),
        sa.Column("serious_adverse_event", sa.Boolean(), nullable=True),
        sa.Column("ready_to_leave_min", sa.Integer(), nullable=True),
        sa.Column("planned_dose_mg", sa.Float(), nullable=True),
        sa.Column("planned_mg_per_kg", sa.Float(), nullable=True),
        sa.Column("planned_minutes", sa.Float(), nullable=True),
        sa.Column("fasting_confirmed", sa.Boolean(), nullable=True),
        sa.Column("escort_confirmed", sa.Boolean(), nullable=True),
        sa.Column(
            "predose_decision",
            sa.Enum("proceed", "delay", name="prescriberdecision", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column("predose_decision_by_id", sa.Integer(), nullable=True),
        sa.Column("predose_decision_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("predose_override_reason", sa.Text(), nullable=True),
        sa.Column("predose_override_by_id", sa.Integer(), nullable=True),
        sa.Column("discharge_checklist", sa.Text(), nullable=True),
        sa.Column("early_discharge_reason", sa.Text(), nullable=True),
        sa.Column("early_discharge_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "ready_to_leave_min >= 0",
            name=op.f("ck_treatment_session_ready_to_leave_not_negative"),
        ),
        sa.CheckConstraint("weight_kg > 0", name=op.f("ck_treatment_session_weight_positive")),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_treatment_session_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["predose_decision_by_id"],
            ["app_user.id"],
            name=op.f("fk_treatment_session_predose_decision_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["predose_override_by_id"],
            ["app_user.id"],
            name=op.f("fk_treatment_session_predose_override_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["early_discharge_by_id"],
            ["app_user.id"],
            name=op.f("fk_treatment_session_early_discharge_by_id_app_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_session")),
    )
    op.create_index("ix_treatment_session_open", "treatment_session", ["chair", "ended_at"])
    op.create_index("ix_treatment_session_patient_id", "treatment_session", ["patient_id"])

    op.create_table(
        "alarm_event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("technical", sa.Boolean(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_alarm_event_session_id_treatment_session"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_alarm_event_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_event")),
    )
    op.create_index("ix_alarm_event_session_id", "alarm_event", ["session_id"])

    op.create_table(
        "device_link_event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_device_link_event_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_link_event")),
    )
    op.create_index("ix_device_link_event_session_id", "device_link_event", ["session_id"])

    op.create_table(
        "dose_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "esketamine_device",
                "iv_infusion",
                "other",
                name="dosekind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drug", sa.String(length=64), nullable=False),
        sa.Column("mg", sa.Float(), nullable=False),
        sa.Column("device_number", sa.Integer(), nullable=True),
        sa.Column("lot", sa.String(length=64), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("mg_per_kg", sa.Float(), nullable=True),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("rate_unit", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "device_number >= 1", name=op.f("ck_dose_event_device_number_positive")
        ),
        sa.CheckConstraint("mg > 0", name=op.f("ck_dose_event_mg_positive")),
        sa.CheckConstraint("rate >= 0", name=op.f("ck_dose_event_rate_not_negative")),
        sa.CheckConstraint("weight_kg > 0", name=op.f("ck_dose_event_weight_positive")),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["app_user.id"], name=op.f("fk_dose_event_recorded_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_dose_event_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_event")),
    )
    op.create_index("ix_dose_event_session_id", "dose_event", ["session_id"])

    op.create_table(
        "observation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "moaas",
                "rass",
                "cadss",
                "side_effect",
                "note",
                name="observationkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("item", sa.String(length=64), nullable=True),
        sa.Column(
            "severity",
            sa.Enum(
                "none", "mild", "moderate", "severe", name="severity", native_enum=False, length=32
            ),
            nullable=True,
        ),
        sa.Column("onset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("serious", sa.Boolean(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("amends_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["amends_id"], ["observation.id"], name=op.f("fk_observation_amends_id_observation")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_observation_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_observation_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation")),
    )
    op.create_index("ix_observation_session_time", "observation", ["session_id", "observed_at"])

    op.create_table(
        "session_staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "monitoring",
                "prescriber",
                "administering",
                "discharging",
                name="staffrole",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_session_staff_session_id_treatment_session"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_session_staff_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_staff")),
        sa.UniqueConstraint(
            "session_id", "user_id", "role", name=op.f("uq_session_staff_session_id_user_id_role")
        ),
    )
    op.create_index("ix_session_staff_session_id", "session_staff", ["session_id"])

    op.create_table(
        "session_threshold_profile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("origin", sa.String(length=500), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_session_threshold_profile_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_threshold_profile")),
    )
    op.create_index(
        "ix_session_threshold_profile_session_id", "session_threshold_profile", ["session_id"]
    )

    op.create_table(
        "vital_reading",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("parameter", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("mdc", sa.String(length=64), nullable=True),
        sa.Column("host_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("entered_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entered_by_id"],
            ["app_user.id"],
            name=op.f("fk_vital_reading_entered_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_vital_reading_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vital_reading")),
    )
    op.create_index("ix_vital_reading_session_time", "vital_reading", ["session_id", "host_time"])

    op.create_table(
        "observation_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.CheckConstraint("item >= 1", name=op.f("ck_observation_item_item_positive")),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observation.id"],
            name=op.f("fk_observation_item_observation_id_observation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_item")),
        sa.UniqueConstraint(
            "observation_id", "item", name=op.f("uq_observation_item_observation_id_item")
        ),
    )
    op.create_index("ix_observation_item_observation_id", "observation_item", ["observation_id"])
    _append_only_triggers()
    _seed_system_user()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_entry")
        op.execute("DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION IF EXISTS ketamon_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_delete")
    op.drop_index("ix_observation_item_observation_id", table_name="observation_item")

    op.drop_table("observation_item")
    op.drop_index("ix_vital_reading_session_time", table_name="vital_reading")

    op.drop_table("vital_reading")
    op.drop_index(
        "ix_session_threshold_profile_session_id", table_name="session_threshold_profile"
    )

    op.drop_table("session_threshold_profile")
    op.drop_index("ix_session_staff_session_id", table_name="session_staff")

    op.drop_table("session_staff")
    op.drop_index("ix_observation_session_time", table_name="observation")

    op.drop_table("observation")
    op.drop_index("ix_dose_event_session_id", table_name="dose_event")

    op.drop_table("dose_event")
    op.drop_index("ix_device_link_event_session_id", table_name="device_link_event")

    op.drop_table("device_link_event")
    op.drop_index("ix_alarm_event_session_id", table_name="alarm_event")

    op.drop_table("alarm_event")
    op.drop_index("ix_treatment_session_patient_id", table_name="treatment_session")
    op.drop_index("ix_treatment_session_open", table_name="treatment_session")

    op.drop_table("treatment_session")
    op.drop_index("ix_audit_entry_session_id", table_name="audit_entry")
    op.drop_index("ix_audit_entry_entity", table_name="audit_entry")

    op.drop_table("audit_entry")
    op.drop_table("patient")
    op.drop_table("app_user")
