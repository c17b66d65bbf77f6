"""The session record: doses, observations, manual vitals, corrections, open sessions, the
threshold profile in force. Run through the writer, as the app does."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.readings import Quality, make_reading
from ketamon.config import Config
from ketamon.services import (
    RecordError,
    assign_staff,
    audit_entries,
    discharge_session,
    edit_with_reason,
    end_session,
    find_patients,
    get_or_create_patient,
    list_open_sessions,
    load_profile,
    profile_in_force,
    record_cadss,
    record_esketamine_device,
    record_manual_vitals,
    record_moaas,
    record_note,
    record_profile,
    record_rass,
    record_screening,
    record_side_effect,
    resume_session,
    set_phase,
    start_infusion,
    start_session,
    stop_infusion,
)
from ketamon.storage.audit import AuditReasonRequired
from ketamon.storage.models import (
    AuditAction,
    DoseEvent,
    DoseKind,
    Observation,
    ObservationKind,
    PrescriberDecision,
    SessionPhase,
    SessionStaff,
    Severity,
    Sex,
    StaffRole,
    TreatmentSession,
    TreatmentType,
    VitalReading,
)
from ketamon.storage.writer import DatabaseWriter

from .conftest import Staff

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_session(
    writer: DatabaseWriter,
    treatment: TreatmentType = TreatmentType.ESKETAMINE,
    *,
    chair: str = "Chair 1",
    mrn: str = "M1",
) -> int:
    def op(s: Session) -> int:
        p = get_or_create_patient(
            s, mrn, "Ada", "Lovelace", sex=Sex.FEMALE, weight_kg=80.0, middle_initial="B"
        )
        return start_session(
            s, chair=chair, patient=p, device="masimo", started=T0, treatment=treatment
        ).id

    return writer.call(op)


def test_esketamine_devices_start_the_clock_and_keep_lot_and_author(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer)
    for n in (1, 2, 3):
        when = T0 + timedelta(minutes=10 + 5 * (n - 1))
        writer.call(
            lambda s, n=n, when=when: record_esketamine_device(
                s, sid, device_number=n, when=when, lot="LOT-7"
            )
        )
    with pytest.raises(RecordError, match="already recorded"):
        writer.call(lambda s: record_esketamine_device(s, sid, device_number=2, when=T0))
    with pytest.raises(RecordError, match="starts at 1"):
        writer.call(lambda s: record_esketamine_device(s, sid, device_number=0, when=T0))
    with pytest.raises(RecordError, match="is an esketamine session"):
        writer.call(lambda s: start_infusion(s, sid, mg=40, when=T0))
    with Session(engine) as s:
        ts = s.get_one(TreatmentSession, sid)
        assert ts.first_dose_at == T0 + timedelta(minutes=10)
        assert ts.phase is SessionPhase.DOSING
        doses = ts.doses
        assert [d.device_number for d in doses] == [1, 2, 3]
        assert sum(d.mg for d in doses) == 84.0
        assert {d.lot for d in doses} == {"LOT-7"}
        assert {d.recorded_by_id for d in doses} == {staff.nurse}


def test_iv_infusion_mg_per_kg_from_the_weight_and_stop(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer, TreatmentType.IV_KETAMINE)
    start = T0 + timedelta(minutes=5)
    did = writer.call(
        lambda s: start_infusion(s, sid, mg=40.0, when=start, rate=60.0, rate_unit="mg/h").id
    )
    with pytest.raises(RecordError, match="before it started"):
        writer.call(lambda s: stop_infusion(s, did, T0))
    writer.call(lambda s: stop_infusion(s, did, start + timedelta(minutes=40)))
    with pytest.raises(RecordError, match="already stopped"):
        writer.call(lambda s: stop_infusion(s, did, start + timedelta(minutes=41)))
    with pytest.raises(RecordError, match="esketamine session"):
        other = make_session(writer, TreatmentType.ESKETAMINE, chair="Chair 2", mrn="M2")
        writer.call(lambda s: start_infusion(s, other, mg=40, when=T0))
    with Session(engine) as s:
        d = s.get_one(DoseEvent, did)
        assert d.kind is DoseKind.IV_INFUSION
        assert (d.weight_kg, d.mg_per_kg, d.rate, d.rate_unit) == (80.0, 0.5, 60.0, "mg/h")
        assert d.stopped_at == start + timedelta(minutes=40)
        assert s.get_one(TreatmentSession, sid).first_dose_at == start
    # A given weight wins over the patient's.
    did2 = writer.call(lambda s: start_infusion(s, sid, mg=35.0, when=start, weight_kg=70.0).id)
    with Session(engine) as s:
        assert s.get_one(DoseEvent, did2).mg_per_kg == 0.5


def test_observations(engine: Engine, staff: Staff, writer: DatabaseWriter) -> None:
    sid = make_session(writer)
    t = T0 + timedelta(minutes=40)
    writer.call(lambda s: record_moaas(s, sid, 4, t, note="lethargic"))
    writer.call(lambda s: record_rass(s, sid, -1, t))
    cid = writer.call(lambda s: record_cadss(s, sid, {1: 2, 5: 4, 23: 0}, t).id)
    writer.call(
        lambda s: record_side_effect(
            s, sid, "nausea", "moderate", when=t, onset=t - timedelta(minutes=5), serious=False
        )
    )
    writer.call(lambda s: record_note(s, sid, "patient comfortable", t))
    for bad in (
        lambda s: record_moaas(s, sid, 6, t),
        lambda s: record_rass(s, sid, 5, t),
        lambda s: record_cadss(s, sid, {24: 1}, t),
        lambda s: record_cadss(s, sid, {1: 5}, t),
        lambda s: record_cadss(s, sid, {}, t),
        lambda s: record_side_effect(s, sid, "nausea", "awful", when=t),
        lambda s: record_side_effect(s, sid, " ", "mild", when=t),
        lambda s: record_note(s, sid, "  ", t),
        lambda s: record_moaas(s, 9999, 3, t),
        lambda s: record_moaas(s, sid, 3, datetime(2026, 3, 1, 9)),
    ):
        with pytest.raises(RecordError):
            writer.call(bad)
    with Session(engine) as s:
        obs = s.scalars(select(Observation).order_by(Observation.id)).all()
        assert [o.kind for o in obs] == [
            ObservationKind.MOAAS,
            ObservationKind.RASS,
            ObservationKind.CADSS,
            ObservationKind.SIDE_EFFECT,
            ObservationKind.NOTE,
        ]
        assert {o.author_id for o in obs} == {staff.nurse}
        assert obs[0].score == 4 and obs[0].text == "lethargic" and obs[0].total is None
        cadss = s.get_one(Observation, cid)
        assert [(i.item, i.score) for i in cadss.items] == [(1, 2), (5, 4), (23, 0)]
        assert cadss.total == 6
        se = obs[3]
        assert (se.item, se.severity, se.serious) == ("nausea", Severity.MODERATE, False)
        assert se.onset_at == t - timedelta(minutes=5)
    items = audit_entries(engine, entity="observation_item")
    assert len(items) == 3 and {e.session_id for e in items} == {sid}


def test_manual_vitals_are_marked_and_attributed(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer)
    writer.call(lambda s: record_manual_vitals(s, sid, {"nibp_sys": 142, "nibp_dia": 91}, T0))
    with pytest.raises(RecordError, match="unknown parameter"):
        writer.call(lambda s: record_manual_vitals(s, sid, {"bp": 1}, T0))
    with pytest.raises(RecordError, match="number"):
        writer.call(lambda s: record_manual_vitals(s, sid, {"hr": float("nan")}, T0))
    with Session(engine) as s:
        rows = s.scalars(select(VitalReading).order_by(VitalReading.parameter)).all()
        assert [(r.parameter, r.value, r.unit) for r in rows] == [
            ("nibp_dia", 91.0, "mm[Hg]"),
            ("nibp_sys", 142.0, "mm[Hg]"),
        ]
        for r in rows:
            assert r.source == "manual" and r.entered_by_id == staff.nurse
            assert Quality(r.quality) is Quality.MANUAL
            assert r.mdc is not None


def test_corrections_keep_old_and_new_with_the_reason(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer, TreatmentType.IV_KETAMINE)
    did = writer.call(lambda s: start_infusion(s, sid, mg=40.0, when=T0).id)
    (vid,) = writer.call(lambda s: [r.id for r in record_manual_vitals(s, sid, {"hr": 88}, T0)])
    writer.submit_readings(sid, [make_reading("spo2", 97, T0, source="Chair 1")])
    assert writer.wait_idle()
    writer.call(
        lambda s: edit_with_reason(s, DoseEvent, did, {"mg": 48.0}, "pump read 48 mg"),
        user_id=staff.physician,
    )
    writer.call(lambda s: edit_with_reason(s, VitalReading, vid, {"value": 86}, "misheard"))
    with pytest.raises(RecordError, match="needs a reason"):
        writer.call(lambda s: edit_with_reason(s, DoseEvent, did, {"mg": 1.0}, " "))
    with pytest.raises(RecordError, match="cannot edit recorded_by_id"):
        writer.call(lambda s: edit_with_reason(s, DoseEvent, did, {"recorded_by_id": 1}, "x"))
    with Session(engine) as s:
        device_id = s.scalars(
            select(VitalReading.id).where(VitalReading.source == "Chair 1")
        ).one()
    with pytest.raises(RecordError, match="device data"):
        writer.call(lambda s: edit_with_reason(s, VitalReading, device_id, {"value": 1}, "x"))
    with Session(engine) as s:
        d = s.get_one(DoseEvent, did)
        assert d.mg == 48.0 and d.mg_per_kg == 0.6  # worked out again from 80 kg
    changes = {
        (e.entity, e.field): (e.old_value, e.new_value, e.reason, e.user_id)
        for e in audit_entries(engine, session_id=sid)
        if e.action is AuditAction.UPDATE
    }
    assert changes[("dose_event", "mg")] == ("40.0", "48.0", "pump read 48 mg", staff.physician)
    assert changes[("dose_event", "mg_per_kg")][:2] == ("0.5", "0.6")
    assert changes[("vital_reading", "value")] == ("88.0", "86", "misheard", staff.nurse)


def test_open_sessions_can_be_listed_resumed_and_ended(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    a = make_session(writer, chair="Chair 1", mrn="M1")
    b = make_session(writer, chair="Chair 2", mrn="M2")
    writer.submit_readings(a, [make_reading("hr", 70, T0 + timedelta(seconds=s)) for s in (1, 9)])
    assert writer.wait_idle()
    listed = {o.id: o for o in list_open_sessions(engine)}
    assert set(listed) == {a, b}
    assert listed[a].last_reading_at == T0 + timedelta(seconds=9)
    assert listed[b].last_reading_at is None
    assert listed[a].patient_name == "Ada Lovelace" and listed[a].mrn == "M1"
    assert [o.id for o in list_open_sessions(engine, chair="Chair 2")] == [b]
    resumed = writer.call(lambda s: resume_session(s, a))
    assert resumed.id == a and resumed.chair == "Chair 1"
    (entry,) = [e for e in audit_entries(engine, session_id=a) if e.action is AuditAction.RESUME]
    assert entry.user_id == staff.nurse and entry.reason == "resumed after restart"
    writer.call(lambda s: set_phase(s, b, SessionPhase.READY_FOR_DISCHARGE))
    writer.call(lambda s: end_session(s, b, T0 + timedelta(hours=2, minutes=5)))
    assert [o.id for o in list_open_sessions(engine)] == [a]
    with pytest.raises(RecordError, match="cannot be resumed"):
        writer.call(lambda s: resume_session(s, b))
    with pytest.raises(RecordError, match="already ended"):
        writer.call(lambda s: end_session(s, b, T0))
    with Session(engine) as s:
        ended = s.get_one(TreatmentSession, b)
        assert ended.phase is SessionPhase.DISCHARGED
        assert ended.ended_at == T0 + timedelta(hours=2, minutes=5)


def test_staff_and_the_threshold_profile_in_force(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    profile = load_profile(Config())

    def op(s: Session) -> int:
        p = get_or_create_patient(s, "M1", "Ada", "Lovelace")
        return start_session(
            s,
            chair="Chair 1",
            patient=p,
            device="masimo",
            started=T0,
            profile=profile,
            profile_origin="resources/thresholds.toml",
            staff=[(staff.nurse, StaffRole.MONITORING), (staff.physician, StaffRole.PRESCRIBER)],
        ).id

    sid = writer.call(op)
    later = T0 + timedelta(minutes=30)
    writer.call(lambda s: record_profile(s, sid, profile, later, origin="edited"))
    with pytest.raises(RecordError, match="no user"):
        writer.call(lambda s: assign_staff(s, sid, 9999, StaffRole.DISCHARGING))
    with Session(engine) as s:
        first = profile_in_force(s, sid, T0 + timedelta(minutes=1))
        latest = profile_in_force(s, sid)
        assert first is not None and latest is not None
        assert first.origin == "resources/thresholds.toml" and latest.origin == "edited"
        assert first.name == profile.name
        assert first.sha256 == hashlib.sha256(first.content.encode()).hexdigest()
        content = json.loads(first.content)
        assert {lim["id"] for lim in content["limits"]} == {lim.id for lim in profile.limits}
        assert profile_in_force(s, sid, T0 - timedelta(minutes=1)) is None
        roles = {
            (r.user_id, r.role)
            for r in s.scalars(select(SessionStaff).where(SessionStaff.session_id == sid))
        }
        assert roles == {
            (staff.nurse, StaffRole.MONITORING),
            (staff.physician, StaffRole.PRESCRIBER),
        }


def test_times_are_stored_as_utc_with_their_zone(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer)
    local = datetime(2026, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    oid = writer.call(lambda s: record_moaas(s, sid, 5, local).id)
    with Session(engine) as s:
        got = s.get_one(Observation, oid).observed_at
        assert got == local and got.utcoffset() == timedelta(0)
        assert got == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_replacing_a_recorded_value_outside_the_helpers_still_needs_a_reason(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    sid = make_session(writer)

    def sneak(s: Session) -> None:
        s.get_one(TreatmentSession, sid).started_at = T0 - timedelta(hours=1)

    with pytest.raises(AuditReasonRequired):
        writer.call(sneak)


def test_find_patients_by_mrn_or_name(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    def add(s: Session) -> None:
        get_or_create_patient(s, "MRN-100", "Ada", "Lovelace")
        get_or_create_patient(s, "MRN-200", "Alan", "Turing")
        get_or_create_patient(s, "X_1%", "Grace", "Hopper")

    writer.call(add)
    assert [p.mrn for p in find_patients(engine, "mrn-")] == ["MRN-100", "MRN-200"]
    assert [p.last_name for p in find_patients(engine, "TUR")] == ["Turing"]
    assert [p.last_name for p in find_patients(engine, "ada love")] == ["Lovelace"]
    assert [p.mrn for p in find_patients(engine, "_1%")] == ["X_1%"]  # no wildcards
    assert [p.mrn for p in find_patients(engine, "%")] == ["X_1%"]
    assert len(find_patients(engine, "")) == 3
    assert len(find_patients(engine, "", limit=2)) == 2


def test_screening_and_discharge(engine: Engine, staff: Staff, writer: DatabaseWriter) -> None:
    sid = make_session(writer)
    t = T0 + timedelta(minutes=2)
    writer.call(
        lambda s: record_screening(
            s,
            sid,
            when=t,
            fasting=True,
            escort=True,
            first_treatment=False,
            benzodiazepine=False,
            opioid=True,
            decision="proceed",
            decision_by_id=staff.physician,
        )
    )
    with pytest.raises(RecordError, match="active physician"):
        writer.call(
            lambda s: record_screening(
                s, sid, when=t, decision="proceed", decision_by_id=staff.nurse
            )
        )
    with pytest.raises(RecordError, match="typed reason"):
        writer.call(lambda s: record_screening(s, sid, when=t, override_by_id=staff.physician))
    with pytest.raises(RecordError, match="proceed or delay"):
        writer.call(
            lambda s: record_screening(
                s, sid, when=t, decision="maybe", decision_by_id=staff.physician
            )
        )
    with pytest.raises(AuditReasonRequired):  # an answer given is changed only with a reason
        writer.call(lambda s: record_screening(s, sid, when=t, opioid=False))
    end = T0 + timedelta(minutes=100)
    with pytest.raises(RecordError, match="active physician"):
        writer.call(
            lambda s: discharge_session(
                s, sid, when=end, checklist={}, ready_to_leave_min=90, early_reason="stable"
            )
        )
    writer.call(
        lambda s: discharge_session(
            s,
            sid,
            when=end,
            checklist={"bp_baseline": True, "steady_gait": True},
            ready_to_leave_min=90,
            early_reason="stable, transport waiting",
            early_by_id=staff.physician,
        )
    )
    with pytest.raises(RecordError, match="already ended"):
        writer.call(
            lambda s: discharge_session(s, sid, when=end, checklist={}, ready_to_leave_min=90)
        )
    with Session(engine) as s:
        ts = s.get_one(TreatmentSession, sid)
        assert (ts.fasting_confirmed, ts.escort_confirmed, ts.first_treatment) == (
            True,
            True,
            False,
        )
        assert (ts.concomitant_benzodiazepine, ts.concomitant_opioid) == (False, True)
        assert ts.concomitant_maoi is None  # not answered
        assert ts.predose_decision is PrescriberDecision.PROCEED
        assert (ts.predose_decision_by_id, ts.predose_decision_at) == (staff.physician, t)
        assert json.loads(ts.discharge_checklist or "") == {
            "bp_baseline": True,
            "steady_gait": True,
        }
        assert (ts.ended_at, ts.phase, ts.ready_to_leave_min) == (
            end,
            SessionPhase.DISCHARGED,
            90,
        )
        assert ts.early_discharge_by_id == staff.physician
        discharging = s.scalars(
            select(SessionStaff.user_id).where(
                SessionStaff.session_id == sid, SessionStaff.role == StaffRole.DISCHARGING
            )
        ).all()
        assert discharging == [staff.nurse]
