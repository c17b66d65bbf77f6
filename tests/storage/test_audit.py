"""The audit trail: every create/update/delete of session data in the same transaction, with
user, UTC time, old → new and reason; append-only in the ORM and in the database itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from devices.readings import make_reading
from ketamon.services import (
    audit_entries,
    get_or_create_patient,
    record_alarm,
    record_esketamine_device,
    record_manual_vitals,
    start_session,
)
from ketamon.storage.audit import (
    REDACTED,
    AuditError,
    AuditImmutableError,
    AuditReasonRequired,
    MissingUserError,
    acting_as,
    reason,
)
from ketamon.storage.models import (
    AlarmRecord,
    AuditAction,
    AuditEntry,
    DoseEvent,
    Patient,
    SessionPhase,
    TreatmentSession,
    User,
)
from ketamon.storage.writer import DatabaseWriter

from .conftest import Staff

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def new_session(s: Session, mrn: str = "M1") -> TreatmentSession:
    p = get_or_create_patient(s, mrn, "Ada", "Lovelace")
    return start_session(s, chair="Chair 1", patient=p, device="masimo", started=T0)


def count_audit(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_creates_are_audited_with_user_utc_time_and_the_whole_row(
    engine: Engine, staff: Staff
) -> None:
    before = datetime.now(UTC)
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        ts = new_session(s)
        sid, pid = ts.id, ts.patient_id
    entries = audit_entries(engine, session_id=sid)
    assert [(e.action, e.entity, e.entity_id) for e in entries] == [
        (AuditAction.CREATE, "treatment_session", sid)
    ]
    e = entries[0]
    assert e.user_id == staff.nurse
    assert e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= e.at <= datetime.now(UTC) + timedelta(seconds=5)
    row = json.loads(e.new_value or "")
    assert row["chair"] == "Chair 1" and row["started_at"] == T0.isoformat()
    assert row["patient_id"] == pid and row["phase"] == "pre_dose"
    local = datetime.now().astimezone().utcoffset()
    assert local is not None and e.utc_offset_s == int(local.total_seconds())
    (p,) = audit_entries(engine, entity="patient", entity_id=pid)
    assert p.action is AuditAction.CREATE and p.session_id is None


def test_a_write_without_a_user_fails_and_writes_nothing(engine: Engine, staff: Staff) -> None:
    n = count_audit(engine)
    with (
        pytest.raises(MissingUserError, match="must name its user"),
        Session(engine) as s,
        s.begin(),
    ):
        new_session(s)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 0
    assert count_audit(engine) == n
    # The same through the writer, with no user given anywhere.
    w = DatabaseWriter(engine).start()
    try:
        with pytest.raises(MissingUserError):
            w.call(new_session)
    finally:
        w.stop()


def test_updates_record_old_and_new_and_corrections_need_a_reason(
    engine: Engine, staff: Staff
) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        ts = new_session(s)
        dose = record_esketamine_device(s, ts.id, device_number=1, when=T0, lot="A1")
        sid, did = ts.id, dose.id
    # Filling in a blank and moving the phase on need no reason.
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        ts = s.get_one(TreatmentSession, sid)
        ts.phase = SessionPhase.OBSERVATION
        ts.ready_to_leave_min = 95
    # Replacing a recorded value does.
    with (
        pytest.raises(AuditReasonRequired, match=r"dose_event\.lot from \"A1\" to \"A2\""),
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.nurse),
    ):
        s.get_one(DoseEvent, did).lot = "A2"
    with (
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.physician),
        reason(s, "lot number misread"),
    ):
        s.get_one(DoseEvent, did).lot = "A2"
    updates = [e for e in audit_entries(engine, session_id=sid) if e.action is AuditAction.UPDATE]
    got = [(e.entity, e.field, e.old_value, e.new_value, e.reason, e.user_id) for e in updates]
    assert ("treatment_session", "phase", '"dosing"', '"observation"', None, staff.nurse) in got
    assert ("treatment_session", "ready_to_leave_min", "null", "95", None, staff.nurse) in got
    assert ("dose_event", "lot", '"A1"', '"A2"', "lot number misread", staff.physician) in got
    with Session(engine) as s:
        assert s.get_one(DoseEvent, did).lot == "A2"


def test_the_old_value_is_read_from_the_database_when_it_was_not_loaded(
    engine: Engine, staff: Staff
) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        sid = new_session(s).id
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        ts = s.get_one(TreatmentSession, sid)
        s.expire(ts, ["chair"])
        with reason(s, "moved to another chair"):
            ts.chair = "Chair 2"
    (e,) = [e for e in audit_entries(engine, session_id=sid) if e.field == "chair"]
    assert (e.old_value, e.new_value) == ('"Chair 1"', '"Chair 2"')


def test_deletes_need_a_reason_and_keep_the_old_row(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        ts = new_session(s)
        did = record_esketamine_device(s, ts.id, device_number=1, when=T0).id
    with (
        pytest.raises(AuditReasonRequired, match="deleting"),
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.nurse),
    ):
        s.delete(s.get_one(DoseEvent, did))
    with (
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.nurse),
        reason(s, "recorded on the wrong patient"),
    ):
        s.delete(s.get_one(DoseEvent, did))
    (e,) = audit_entries(engine, entity="dose_event", entity_id=did)[-1:]
    assert e.action is AuditAction.DELETE and e.reason == "recorded on the wrong patient"
    assert json.loads(e.old_value or "")["device_number"] == 1


def test_password_hashes_never_reach_the_trail(engine: Engine, staff: Staff) -> None:
    for e in audit_entries(engine, entity="app_user", entity_id=staff.nurse):
        assert "argon2" not in (e.new_value or "") + (e.old_value or "")
    (created,) = audit_entries(engine, entity="app_user", entity_id=staff.nurse)
    assert json.loads(created.new_value or "")["password_hash"] == REDACTED


def test_monitor_readings_are_not_audited_but_manual_vitals_are(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = writer.call(lambda s: new_session(s).id)
    writer.submit_readings(sid, [make_reading("hr", 70, T0, source="Chair 1")])
    writer.call(lambda s: record_manual_vitals(s, sid, {"nibp_sys": 128}, T0))
    assert writer.wait_idle(10)
    readings = audit_entries(engine, entity="vital_reading")
    assert len(readings) == 1 and readings[0].user_id == staff.nurse
    assert json.loads(readings[0].new_value or "")["source"] == "manual"


def test_orm_cannot_change_or_delete_audit_entries(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        new_session(s)
    n = count_audit(engine)
    with pytest.raises(AuditImmutableError), Session(engine) as s, s.begin():
        s.scalars(select(AuditEntry)).first().reason = "rewritten"  # type: ignore[union-attr]
    with pytest.raises(AuditImmutableError), Session(engine) as s, s.begin():
        s.delete(s.scalars(select(AuditEntry)).first())
    with pytest.raises(AuditImmutableError), Session(engine) as s, s.begin():
        s.execute(update(AuditEntry).values(reason="x"))
    with pytest.raises(AuditImmutableError), Session(engine) as s, s.begin():
        s.execute(delete(AuditEntry))
    assert count_audit(engine) == n


def test_bulk_orm_statements_on_audited_data_are_refused(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        new_session(s)
    with pytest.raises(AuditError, match="bypass the audit"), Session(engine) as s, s.begin():
        s.execute(update(TreatmentSession).values(chair="X"))
    with pytest.raises(AuditError, match="bypass the audit"), Session(engine) as s, s.begin():
        s.execute(delete(Patient))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_entry SET reason = 'rewritten'",
        "UPDATE audit_entry SET user_id = user_id",
        "DELETE FROM audit_entry",
        "DELETE FROM audit_entry WHERE id = (SELECT max(id) FROM audit_entry)",
    ],
)
def test_raw_sql_cannot_change_or_delete_audit_entries(
    engine: Engine, staff: Staff, sql: str
) -> None:
    n = count_audit(engine)
    assert n >= 3
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))
    assert count_audit(engine) == n


def test_the_database_triggers_are_in_place(engine: Engine, staff: Staff) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            assert set(names) == {
                "audit_entry_no_update",
                "audit_entry_no_delete",
                "session_entry_no_update",
                "session_entry_no_delete",
                "audit_gap_no_update",
                "audit_gap_no_delete",
                "course_entry_no_update",  # the treatment course's record (migration 0009)
                "course_entry_no_delete",
            }
        return
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_entry CASCADE"))


def test_event_logs_are_insert_only(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        sid = new_session(s).id
        record_alarm(
            s, sid, key="spo2", action="raised", priority="high", message="SpO2 88", when=T0
        )
    with pytest.raises(AuditImmutableError, match="event log"), Session(engine) as s, s.begin():
        s.scalars(select(AlarmRecord)).one().message = "nothing happened"
    with pytest.raises(AuditImmutableError, match="event log"), Session(engine) as s, s.begin():
        s.delete(s.scalars(select(AlarmRecord)).one())


def test_audit_rows_are_written_in_the_same_transaction(engine: Engine, staff: Staff) -> None:
    n = count_audit(engine)
    with pytest.raises(RuntimeError), Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        new_session(s)
        s.flush()
        raise RuntimeError("power cut")
    assert count_audit(engine) == n
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(TreatmentSession)) == 0


def test_user_changes_are_audited(engine: Engine, staff: Staff) -> None:
    with (
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.system),
        reason(s, "left the clinic"),
    ):
        s.get_one(User, staff.nurse).active = False
    (e,) = [e for e in audit_entries(engine, entity="app_user", entity_id=staff.nurse) if e.field]
    assert (e.field, e.old_value, e.new_value, e.user_id) == (
        "active",
        "true",
        "false",
        staff.system,
    )
