"""The treatment course (issue 15): ``treatment_course`` (a patient's course: plan, where its
screening stands), ``course_entry`` (the course's append-only record: opened, screened,
overridden, closed; triggers refuse UPDATE, DELETE and TRUNCATE), and ``dose_waste`` (drug
wasted, witnessed by a second user).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
APPEND_ONLY = "course_entry is append-only: entries cannot be changed or deleted"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER course_entry_no_update BEFORE UPDATE ON course_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER course_entry_no_delete BEFORE DELETE ON course_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
)
PG_TRIGGERS = (
    f"""CREATE FUNCTION ketamon_course_entry_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY} (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER course_entry_append_only BEFORE UPDATE OR DELETE ON course_entry
    FOR EACH ROW EXECUTE FUNCTION ketamon_course_entry_append_only()""",
    """CREATE TRIGGER course_entry_no_truncate BEFORE TRUNCATE ON course_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ketamon_course_entry_append_only()""",
)


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "treatment_course",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("indication", sa.String(length=200), nullable=False),
        sa.Column("treatment", sa.String(length=32), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("induction_sessions", sa.Integer(), nullable=False),
        sa.Column("induction_per_week", sa.Float(), nullable=False),
        sa.Column("maintenance_sessions", sa.Integer(), nullable=False),
        sa.Column("maintenance_interval_days", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("opened_by_id", sa.Integer(), nullable=False),
        sa.Column("screened_at", TS, nullable=True),
        sa.Column("contraindications_open", sa.Text(), nullable=False),
        sa.Column("precautions", sa.Text(), nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["opened_by_id"],
            ["app_user.id"],
            name=op.f("fk_treatment_course_opened_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_treatment_course_patient_id_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_course")),
    )
    op.create_index("ix_treatment_course_patient", "treatment_course", ["patient_id"])
    op.create_table(
        "course_entry",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["app_user.id"], name=op.f("fk_course_entry_author_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_course.id"],
            name=op.f("fk_course_entry_course_id_treatment_course"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course_entry")),
    )
    op.create_index("ix_course_entry_course", "course_entry", ["course_id", "id"])
    op.create_table(
        "dose_waste",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("wasted_at", TS, nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("mg", sa.Float(), nullable=False),
        sa.Column("device_number", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("witnessed_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("mg > 0", name=op.f("ck_dose_waste_mg_positive")),
        sa.CheckConstraint(
            "witnessed_by_id <> recorded_by_id", name=op.f("ck_dose_waste_witness_is_second_user")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["app_user.id"], name=op.f("fk_dose_waste_recorded_by_id_app_user")
        ),
        sa.ForeignKeyConstraint(
            ["witnessed_by_id"],
            ["app_user.id"],
            name=op.f("fk_dose_waste_witnessed_by_id_app_user"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_session.id"],
            name=op.f("fk_dose_waste_session_id_treatment_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_waste")),
    )
    op.create_index(op.f("ix_dose_waste_session_id"), "dose_waste", ["session_id"])
    for statement in PG_TRIGGERS if _postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if _postgres():
        op.execute("DROP TRIGGER IF EXISTS course_entry_no_truncate ON course_entry")
        op.execute("DROP TRIGGER IF EXISTS course_entry_append_only ON course_entry")
        op.execute("DROP FUNCTION IF EXISTS ketamon_course_entry_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS course_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS course_entry_no_delete")
    op.drop_index(op.f("ix_dose_waste_session_id"), table_name="dose_waste")
    op.drop_table("dose_waste")
    op.drop_index("ix_course_entry_course", table_name="course_entry")
    op.drop_table("course_entry")
    op.drop_index("ix_treatment_course_patient", table_name="treatment_course")
    op.drop_table("treatment_course")
