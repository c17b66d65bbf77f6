"""SqlSessionRepository: every entry reads back exactly as appended, on both backends; the
record folded equals the core's live state; a failed append leaves nothing; entries are an
append-only log with an audit row each; the tidy tables follow the entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from devices.readings import make_reading
from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.memory import MemoryRepository
from ketamon.core.ports import AuthFailed, EntryDraft
from ketamon.core.session import ChairCore, Refused
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.record import EntryKind, PatientInfo, Plan, SessionEntry, fold
from ketamon.domain.roles import Actor, Role
from ketamon.domain.session_rules import PrescriberDecision, Treatment
from ketamon.domain.thresholds import ThresholdProfile, parse_profile
from ketamon.resources import read_text
from ketamon.storage import users
from ketamon.storage.audit import AuditImmutableError, set_user
from ketamon.storage.models import (
    AlarmRecord,
    AuditEntry,
    DeviceLinkEvent,
    DoseEvent,
    Observation,
    ObservationKind,
    Patient,
    RemsEnrolment,
    SessionEntryRow,
    SessionPhase,
    SessionStaff,
    SessionThresholdProfile,
    Severity,
    StaffRole,
    TreatmentSession,
    VitalReading,
)
from ketamon.storage.records import RecordError
from ketamon.storage.repository import PROJECTIONS, SqlSessionRepository
from tests.storage.conftest import PASSWORD, Staff

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}


def profile() -> ThresholdProfile:
    return parse_profile(read_text("thresholds.toml"), "thresholds.toml")


@dataclass
class People:
    nurse: Actor
    physician: Actor
    system: Actor


@pytest.fixture
def people(staff: Staff) -> People:
    return People(
        Actor(staff.nurse, "nina", "Nina Nurse", Role.NURSE),
        Actor(staff.physician, "paul", "Paul Physician", Role.PHYSICIAN),
        Actor(staff.system, "system", "ketamon (automatic)", Role.SYSTEM),
    )


@pytest.fixture(params=["own_session", "writer"])
def repo(request: pytest.FixtureRequest, engine: Engine, staff: Staff) -> SqlSessionRepository:
    writer = request.getfixturevalue("writer") if request.param == "writer" else None
    return SqlSessionRepository(engine, writer, profile=profile(), profile_origin="test")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def started(patient: dict[str, Any], plan: dict[str, Any], when: datetime = T0) -> EntryDraft:
    base = {
        "id": None,
        "mrn": "MRN-1",
        "first_name": "Alex",
        "last_name": "Demo",
        "middle_initial": "Q",
        "date_of_birth": "1980-02-03",
        "sex": "female",
        "weight_kg": 70.0,
        "rems_enrolled": True,
    }
    full_plan = {
        "treatment": "esketamine",
        "dose_mg": 56.0,
        "iv_mg_per_kg": None,
        "iv_minutes": None,
        "first_treatment": True,
    }
    return EntryDraft(
        EntryKind.STARTED,
        when,
        {
            "chair": "Chair 1",
            "device": "simulator",
            "patient": {**base, **patient},
            "plan": {**full_plan, **plan},
        },
    )


def comparable(e: SessionEntry) -> tuple[Any, ...]:
    data = dict(e.data)
    if e.kind is EntryKind.STARTED:
        data["patient"] = {**data["patient"], "id": None}
    return (e.kind, e.at, e.author_id, e.author, data, e.authorised_by_id, e.authorised_by)


class Twin:
    """Appends the same drafts to the database and to the in-memory repository."""

    def __init__(self, repo: SqlSessionRepository, actor: Actor) -> None:
        self.repo, self.mem, self.actor = repo, MemoryRepository(), actor
        self.sql: list[SessionEntry] = []
        self.memory: list[SessionEntry] = []

    def create(self, draft: EntryDraft) -> int:
        e = self.repo.create(draft, self.actor)
        self.sql.append(e)
        self.memory.append(self.mem.create(draft, self.actor))
        return e.session_id

    def add(self, sid: int, *drafts: EntryDraft, actor: Actor | None = None) -> list[int]:
        who = actor or self.actor
        out = self.repo.append(sid, drafts, who)
        self.sql += out
        self.memory += self.mem.append(self.memory[0].session_id, drafts, who)
        return [e.id for e in out]


def _count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ---- every kind through append and load -----------------------------------------------------


def esketamine_record(twin: Twin, p: People) -> int:
    """A session with an entry of every kind an esketamine session has (and a few more)."""
    sid = twin.create(started({}, {}))
    D = EntryDraft
    screening = {
        "bp": [150.0, 92.0],
        "hr": 71.0,
        "bp_source": "manual",
        "fasting": True,
        "escort": True,
        "benzodiazepine": False,
        "hypnotic": True,
        "opioid": False,
        "psychostimulant": False,
        "maoi": False,
        "rems_enrolled": True,
        "above_advisory": True,
    }
    [scr] = twin.add(sid, D(EntryKind.SCREENING, at(1), screening))
    twin.add(
        sid,
        D(EntryKind.DECISION, at(2), {"decision": "delay", "note": "recheck"}, p.physician),
        D(EntryKind.DECISION, at(3), {"decision": "proceed", "note": ""}, p.physician),
        D(EntryKind.BP_OVERRIDE, at(3), {"reason": "cuff failed once"}, p.physician),
        D(
            EntryKind.DEVICE,
            at(5),
            {"number": 1, "mg": 28.0, "lot": "LOT-A", "baseline": [150.0, 92.0]},
        ),
    )
    twin.add(sid, D(EntryKind.DEVICE, at(10), {"number": 2, "mg": 28.0, "lot": "LOT-A"}))
    alarm = {
        "key": "spo2_low",
        "action": "raised",
        "priority": "high",
        "message": "!!! SpO2 86 below 90",
        "technical": False,
        "family": "resp",
        "direction": "low",
    }
    twin.add(
        sid,
        D(EntryKind.ALARM, at(12), alarm, author=p.system),
        D(EntryKind.ALARM, at(12.5), {**alarm, "action": "acknowledged"}),
        D(EntryKind.LINK, at(13), {"state": "lost", "reason": "cable pulled"}, author=p.system),
    )
    moaas, rass, cadss, se, note, vit = twin.add(
        sid,
        D(EntryKind.MOAAS, at(15), {"score": 3}),
        D(EntryKind.RASS, at(15), {"score": -1}),
        D(EntryKind.CADSS, at(16), {"items": {str(i): (1 if i < 4 else 0) for i in range(1, 24)}}),
        D(
            EntryKind.SIDE_EFFECT,
            at(17),
            {"item": "nausea", "severity": "mild", "serious": None, "onset": "09:14", "text": ""},
        ),
        D(EntryKind.NOTE, at(18), {"text": "Comfortable — resting, «quiet»"}),
        D(EntryKind.VITALS, at(19), {"values": {"nibp_sys": 138.0, "nibp_dia": 85.0, "hr": 70.0}}),
    )
    twin.add(
        sid,
        D(EntryKind.SYMPTOM_CHECK, at(20), {"answers": {"chest_pain": False}, "yes": []}),
        D(EntryKind.BP40_REASON, at(45), {"reason": "patient asleep"}),
        D(
            EntryKind.LIMIT_CHANGED,
            at(46),
            {"limit_id": "spo2_low", "low": 88.0, "high": None, "reason": "COPD"},
            p.physician,
        ),
    )

    def corr(
        target: int, kind: EntryKind, changes: dict[str, Any], old: dict[str, Any], **kw: Any
    ) -> EntryDraft:
        data = {
            "target": target,
            "target_kind": kind.value,
            "changes": changes,
            "old": old,
            "reason": "typo",
            "in_error": False,
            **kw,
        }
        return D(EntryKind.CORRECTION, at(50), data)

    items = {str(i): (2 if i < 3 else 0) for i in range(1, 24)}
    twin.add(
        sid,
        corr(moaas, EntryKind.MOAAS, {"score": 4}, {"score": 3}),
        corr(rass, EntryKind.RASS, {}, {"score": -1}, in_error=True),
        corr(cadss, EntryKind.CADSS, {"items": items}, {}),
        corr(se, EntryKind.SIDE_EFFECT, {"severity": "moderate", "text": "vomited once"}, {}),
        corr(note, EntryKind.NOTE, {"text": "Comfortable"}, {}),
        corr(vit, EntryKind.VITALS, {"values": {"nibp_sys": 128.0, "nibp_dia": 85.0}}, {}),
        corr(
            scr,
            EntryKind.SCREENING,
            {"bp": [130.0, 85.0], "hypnotic": False},
            {},
            above_advisory=False,
        ),
    )
    discharge = {
        "checklist": CHECKLIST,
        "ready_to_leave_min": 90,
        "total_min": 110,
        "unmet": ["Minimum observation time not reached"],
        "early_reason": "reviewed, well",
        "override_reason": "reviewed, well",
        "pulse_oximetry_used": True,
        "end_bp": [125.0, 80.0],
        "rems": {
            "sedation": True,
            "dissociation": False,
            "respiratory_depression": True,
            "serious_adverse_event": False,
            "vitals_ok_before": False,
            "vitals_ok_end": True,
            "pulse_oximetry_used": True,
        },
    }
    twin.add(
        sid,
        D(EntryKind.ALARM, at(115), {**alarm, "action": "cleared"}, author=p.system),
        D(EntryKind.DISCHARGED, at(115), discharge, p.physician),
    )
    return sid


def iv_record(twin: Twin, p: People) -> int:
    sid = twin.create(
        started(
            {
                "mrn": "MRN-2",
                "first_name": "Sam",
                "last_name": "Sample",
                "sex": None,
                "date_of_birth": None,
                "rems_enrolled": None,
                "weight_kg": 80.0,
            },
            {"treatment": "iv_ketamine", "dose_mg": None, "iv_mg_per_kg": 0.5, "iv_minutes": 40.0},
            at(200),
        )
    )
    D = EntryDraft
    twin.add(
        sid,
        D(
            EntryKind.SCREENING,
            at(201),
            {
                "bp": [120.0, 80.0],
                "hr": 66.0,
                "bp_source": "monitor",
                "fasting": True,
                "escort": True,
                "rems_enrolled": None,
                "above_advisory": False,
            },
        ),
        D(
            EntryKind.INFUSION_STARTED,
            at(205),
            {
                "planned_mg": 40.0,
                "rate_mg_per_min": 1.0,
                "mg_per_kg": 0.5,
                "weight_kg": 80.0,
                "planned_minutes": 40.0,
                "baseline": [120.0, 80.0],
            },
        ),
    )
    twin.add(
        sid,
        D(
            EntryKind.INFUSION_STOPPED,
            at(225),
            {"given_mg": 20.0, "minutes": 20.0, "reason": "agitation"},
        ),
    )
    twin.add(sid, D(EntryKind.OTHER_DOSE, at(226), {"description": "ondansetron 4 mg iv"}))
    twin.add(sid, D(EntryKind.CANCELLED, at(230), {"reason": "entered in error"}, p.physician))
    return sid


def im_record(twin: Twin, p: People) -> int:
    """An IM session (issue 15): the dose with its supply, a witnessed waste, scales with the
    PHQ-9 item-9 action, a therapist and their note."""
    sid = twin.create(
        started(
            {"mrn": "MRN-3", "first_name": "Ira", "last_name": "Muscle", "weight_kg": 70.0},
            {"treatment": "im_ketamine", "dose_mg": None, "im_mg_per_kg": 0.5},
            at(400),
        )
    )
    D = EntryDraft
    dose = {
        "route": "im",
        "product": "Ketamine HCl 50 mg/mL",
        "concentration": 50.0,
        "lot": "K1",
        "expiry": "2027-06-30",
        "drawn_mg": 50.0,
        "given_mg": 35.0,
        "mg_per_kg": 0.5,
        "weight_kg": 70.0,
        "site": "deltoid_left",
        "form": "",
        "baseline": [120.0, 80.0],
    }
    waste = {
        "product": "Ketamine HCl 50 mg/mL",
        "lot": "K1",
        "mg": 15.0,
        "reason": "drawn a full vial",
        "device_number": None,
        "witness_id": p.physician.id,
    }
    phq = {
        "scale": "phq9",
        "items": {str(i): (1 if i == 9 else 2) for i in range(1, 10)},
        "total": 17,
        "band": "moderately severe",
        "suicidality": True,
    }
    therapist = {"user_id": p.physician.id, "username": "paul", "name": "Paul Physician"}
    twin.add(
        sid,
        D(EntryKind.ADMINISTERED, at(401), dose),
        D(EntryKind.WASTE, at(402), waste, p.physician),
        D(EntryKind.SCALE, at(403), phq),
        D(EntryKind.SUICIDALITY_ACTION, at(404), {"action": "risk assessed; prescriber told"}),
        D(EntryKind.THERAPIST_ASSIGNED, at(405), therapist, p.physician),
    )
    twin.add(sid, D(EntryKind.THERAPIST_NOTE, at(406), {"text": "settled"}), actor=p.physician)
    return sid


def recording_record(twin: Twin, p: People) -> int:
    """A headless recording: opened and closed by the system account, no patient identified."""
    sid = twin.create(
        started(
            {
                "mrn": "UNIDENTIFIED",
                "first_name": "Unidentified",
                "last_name": "Patient",
                "sex": None,
                "date_of_birth": None,
                "rems_enrolled": None,
                "weight_kg": None,
            },
            {"treatment": "other", "dose_mg": None},
            at(300),
        )
    )
    twin.add(
        sid, EntryDraft(EntryKind.ENDED, at(330), {"reason": "recording stopped"}), actor=p.system
    )
    return sid


def after_session(twin: Twin, sid: int, p: People) -> None:
    """The review desk's kinds: PMF fields, a signature, an addendum, the PMF's submission."""

    def last() -> int:
        return max(e.id for e in twin.sql if e.session_id == sid)

    def signature(meaning_id: str) -> dict[str, Any]:
        return {
            "meaning_id": meaning_id,
            "meaning": "Reviewed and approved",
            "name": "Paul Physician",
            "credentials": "MD",
            "content_sha256": "0" * 64,
            "covers_entry_id": last(),
        }

    D = EntryDraft
    twin.add(sid, D(EntryKind.PMF_FIELDS, at(340), {"values": {"a": 1}, "form_version": "v1"}))
    twin.add(sid, D(EntryKind.SIGNED, at(341), signature("reviewed")), actor=p.physician)
    addendum = {"text": "late entry", **signature("addendum")}
    twin.add(sid, D(EntryKind.ADDENDUM, at(342), addendum), actor=p.physician)
    late = {"text": "escort called", "countersign_required": True, **signature("late_entry")}
    late_id = twin.add(sid, D(EntryKind.ADDENDUM, at(342.5), late))[0]
    countersigned = {"addendum_id": late_id, **signature("countersign")}
    twin.add(sid, D(EntryKind.COUNTERSIGNED, at(342.7), countersigned), actor=p.physician)
    submitted = {"method": "fax", "submitted_at": "2026-11-30T15:00:00+00:00", "reference": "R1"}
    twin.add(sid, D(EntryKind.PMF_SUBMITTED, at(343), submitted))


def test_every_kind_reads_back_exactly_as_appended(
    repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    twin = Twin(repo, people.nurse)
    esk = esketamine_record(twin, people)
    iv = iv_record(twin, people)
    rec = recording_record(twin, people)
    after_session(twin, rec, people)
    im = im_record(twin, people)
    assert {e.kind for e in twin.sql} == set(EntryKind) == set(PROJECTIONS)
    # what append returned is what the in-memory repository makes of the same drafts
    assert [comparable(e) for e in twin.sql] == [comparable(e) for e in twin.memory]
    # and what load gives back, in id order
    loaded = repo.load(esk) + repo.load(iv) + repo.load(rec) + repo.load(im)
    assert loaded == twin.sql
    assert [e.id for e in loaded] == sorted(e.id for e in loaded)
    for e in loaded:
        assert e.at.tzinfo is UTC or e.at.utcoffset() == timedelta(0)
    # the patient's id went into the started entry, so the fold sees it
    state = fold(repo.load(esk))
    assert state is not None and state.patient.id is not None
    assert state.patient.label == "Alex Demo (MRN-1)"
    assert state.discharge is not None and state.decision is not None
    assert state.decision.by == "Paul Physician"
    iv_state = fold(repo.load(iv))
    assert iv_state is not None and iv_state.cancelled is not None
    assert iv_state.infusion is not None and iv_state.infusion.given_mg == 20.0
    rec_state = fold(repo.load(rec))
    assert rec_state is not None and rec_state.closed is not None and rec_state.ended
    im_state = fold(repo.load(im))
    assert im_state is not None and im_state.administration is not None
    assert im_state.unaccounted_mg == 0.0 and not im_state.suicidality_pending
    assert im_state.wastes[0].witness == "Paul Physician"
    assert [n.text for n in im_state.therapist_notes] == ["settled"]
    assert repo.load(999_999) == []


def test_the_tidy_tables_follow_the_entries(
    repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    twin = Twin(repo, people.nurse)
    esk = esketamine_record(twin, people)
    iv = iv_record(twin, people)
    with Session(engine) as s:
        ts = s.get(TreatmentSession, esk)
        assert ts is not None
        assert (ts.phase, ts.ended_at, ts.first_dose_at) == (
            SessionPhase.DISCHARGED,
            at(115),
            at(5),
        )
        assert ts.fasting_confirmed and ts.escort_confirmed and ts.concomitant_hypnotic is False
        assert ts.vitals_ok_before is True  # corrected: 130/85 is below the advisory
        assert ts.predose_decision is not None and ts.predose_decision.value == "proceed"
        assert ts.predose_decision_by_id == people.physician.id
        assert ts.predose_override_reason == "cuff failed once"
        assert (ts.sedation, ts.respiratory_depression, ts.vitals_ok_end) == (True, True, True)
        assert (
            ts.ready_to_leave_min == 90 and json.loads(ts.discharge_checklist or "") == CHECKLIST
        )
        assert ts.early_discharge_by_id == people.physician.id
        assert ts.planned_dose_mg == 56.0 and ts.first_treatment is True
        assert ts.patient.rems_enrolment is RemsEnrolment.ENROLLED
        assert (
            ts.patient.date_of_birth is not None
            and ts.patient.date_of_birth.isoformat() == "1980-02-03"
        )
        roles = {
            (st.user_id, st.role)
            for st in s.scalars(select(SessionStaff).where(SessionStaff.session_id == esk))
        }
        assert roles == {
            (people.nurse.id, StaffRole.MONITORING),
            (people.nurse.id, StaffRole.DISCHARGING),
        }
        assert (
            s.scalar(
                select(func.count())
                .select_from(SessionThresholdProfile)
                .where(SessionThresholdProfile.session_id == esk)
            )
            == 1
        )
        doses = s.scalars(
            select(DoseEvent).where(DoseEvent.session_id == esk).order_by(DoseEvent.id)
        ).all()
        assert [(d.device_number, d.mg, d.lot) for d in doses] == [
            (1, 28.0, "LOT-A"),
            (2, 28.0, "LOT-A"),
        ]
        obs = {
            o.kind: o
            for o in s.scalars(
                select(Observation).where(
                    Observation.session_id == esk, Observation.amends_id.is_(None)
                )
            )
        }
        assert obs[ObservationKind.MOAAS].score == 4
        assert obs[ObservationKind.SIDE_EFFECT].severity is Severity.MODERATE
        assert obs[ObservationKind.CADSS].total == 4
        in_error = s.scalars(select(Observation).where(Observation.amends_id.is_not(None))).all()
        assert [o.amends_id for o in in_error] == [obs[ObservationKind.RASS].id]
        manual = {
            (r.parameter, r.value, r.host_time)
            for r in s.scalars(select(VitalReading).where(VitalReading.session_id == esk))
        }
        assert manual == {
            ("nibp_sys", 130.0, at(1)),
            ("nibp_dia", 85.0, at(1)),
            ("hr", 71.0, at(1)),
            ("nibp_sys", 128.0, at(19)),
            ("nibp_dia", 85.0, at(19)),
        }
        alarms = s.scalars(
            select(AlarmRecord).where(AlarmRecord.session_id == esk).order_by(AlarmRecord.id)
        ).all()
        assert [(a.action, a.user_id) for a in alarms] == [
            ("raised", None),
            ("acknowledged", people.nurse.id),
            ("cleared", None),
        ]
        assert s.scalars(select(DeviceLinkEvent.state)).all() == ["lost"]
        iv_ts = s.get(TreatmentSession, iv)
        assert (
            iv_ts is not None
            and iv_ts.phase is SessionPhase.ABANDONED
            and iv_ts.ended_at == at(230)
        )
        [inf] = s.scalars(select(DoseEvent).where(DoseEvent.session_id == iv)).all()
        assert (inf.mg, inf.stopped_at, inf.mg_per_kg) == (20.0, at(225), 0.25)
        assert iv_ts.patient.rems_enrolment is RemsEnrolment.UNKNOWN
        reasons = s.scalars(
            select(AuditEntry.reason).where(
                AuditEntry.entity == "dose_event", AuditEntry.field == "mg"
            )
        ).all()
        assert reasons == ["dose actually given (rate × time)"]


# ---- audit and the append-only log ----------------------------------------------------------


def test_each_entry_has_its_audit_row_by_its_author(
    repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    twin = Twin(repo, people.nurse)
    esketamine_record(twin, people)
    with Session(engine) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.entity == "session_entry")).all()
        by_id = {r.entity_id: r for r in rows}
        assert len(rows) == len(twin.sql) == len(by_id)
        for e in twin.sql:
            a = by_id[e.id]
            assert a.action.value == "create" and a.session_id == e.session_id
            assert a.user_id == e.author_id
            assert json.loads(a.new_value or "") == e.data
        # the projection's rows are audited under the entry's author too
        alarm_by_system = [
            e for e in twin.sql if e.kind is EntryKind.ALARM and e.author_id == people.system.id
        ]
        assert alarm_by_system and all(
            by_id[e.id].user_id == people.system.id for e in alarm_by_system
        )


def test_entries_cannot_be_changed_or_deleted(
    repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    sid = repo.create(started({}, {}), people.nurse).session_id
    [note] = repo.append(sid, [EntryDraft(EntryKind.NOTE, at(1), {"text": "hello"})], people.nurse)
    statements = [
        "UPDATE session_entry SET data = '{}' WHERE id = :i",
        "DELETE FROM session_entry WHERE id = :i",
    ]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE session_entry CASCADE")
    for sql in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql), {"i": note.id})
    for change in ("update", "delete"):
        with Session(engine) as s:
            set_user(s, people.nurse.id)
            row = s.get(SessionEntryRow, note.id)
            assert row is not None
            if change == "update":
                row.data = "{}"
            else:
                s.delete(row)
            with pytest.raises(AuditImmutableError):
                s.flush()
            s.rollback()
    assert repo.load(sid)[-1] == note


@pytest.mark.parametrize(
    "bad",
    [
        EntryDraft(
            EntryKind.CORRECTION,
            at(3),
            {"target": 987_654, "target_kind": "moaas", "changes": {"score": 5}, "reason": "typo"},
        ),
        EntryDraft(EntryKind.MOAAS, at(3), {"score": 9}),  # the tidy table refuses it
        EntryDraft(EntryKind.STARTED, at(3), {}),
        EntryDraft(EntryKind.INFUSION_STOPPED, at(3), {"given_mg": 1.0}),
        EntryDraft(EntryKind.NOTE, datetime(2026, 11, 30, 9, 3), {"text": "naive time"}),
    ],
    ids=["unknown-target", "bad-score", "second-start", "no-infusion", "naive-time"],
)
def test_a_failing_append_leaves_nothing_behind(
    repo: SqlSessionRepository, engine: Engine, people: People, bad: EntryDraft
) -> None:
    sid = repo.create(started({}, {}), people.nurse).session_id
    repo.append(sid, [EntryDraft(EntryKind.MOAAS, at(1), {"score": 5})], people.nurse)
    before = repo.load(sid)
    counts = [_count(engine, m) for m in (SessionEntryRow, AuditEntry, Observation)]
    good = [
        EntryDraft(EntryKind.NOTE, at(2), {"text": "first part of the command"}),
        EntryDraft(EntryKind.MOAAS, at(2), {"score": 4}),
    ]
    with pytest.raises((RecordError, ValueError, KeyError)):
        repo.append(sid, [*good, bad], people.nurse)
    assert repo.load(sid) == before
    assert [_count(engine, m) for m in (SessionEntryRow, AuditEntry, Observation)] == counts
    with pytest.raises(RecordError):
        repo.append(123_456, good, people.nurse)
    assert _count(engine, SessionEntryRow) == counts[0]


# ---- the other reads ------------------------------------------------------------------------


def test_open_sessions_patients_and_the_system_actor(
    repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    a = repo.create(started({}, {}), people.nurse).session_id
    b = repo.create(
        started(
            {"mrn": "MRN-2", "first_name": "Sam", "last_name": "Sample", "rems_enrolled": False},
            {},
            at(5),
        ),
        people.physician,
    ).session_id
    refs = repo.open_sessions()
    assert [(r.session_id, r.chair, r.patient, r.started) for r in refs] == [
        (a, "Chair 1", "Alex Demo (MRN-1)", T0),
        (b, "Chair 1", "Sam Sample (MRN-2)", at(5)),
    ]
    repo.append(
        a, [EntryDraft(EntryKind.CANCELLED, at(6), {"reason": "wrong patient"})], people.nurse
    )
    assert [r.session_id for r in repo.open_sessions()] == [b]
    with Session(engine) as s:
        roles = s.scalars(select(SessionStaff.role).where(SessionStaff.session_id == b)).all()
        assert roles == [StaffRole.PRESCRIBER]
    [alex] = repo.find_patients("alex")
    assert alex == PatientInfo(
        alex.id, "MRN-1", "Alex", "Demo", "Q", "1980-02-03", "female", 70.0, True
    )
    [sam] = repo.find_patients("mrn-2")
    assert sam.rems_enrolled is False and sam.date_of_birth == "1980-02-03"
    assert {p.mrn for p in repo.find_patients("")} == {"MRN-1", "MRN-2"}
    # a returning patient: the same row, weight and REMS enrolment kept up to date
    again = repo.create(
        started({"weight_kg": 72.5, "rems_enrolled": None}, {}, at(300)), people.nurse
    )
    assert again.data["patient"]["id"] == alex.id
    with Session(engine) as s:
        p = s.get(Patient, alex.id)
        assert p is not None and p.weight_kg == 72.5 and p.rems_enrolment is RemsEnrolment.ENROLLED
        assert s.scalar(select(func.count()).select_from(Patient)) == 2
    system = repo.system_actor()
    assert system == people.system


# ---- the core on the database ---------------------------------------------------------------


class DbPasswords:
    """Checks the password against the users in the database (real argon2id)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def verify(self, username: str, password: str) -> Actor:
        try:
            u = users.authenticate(self.engine, username, password)
        except users.AuthError as exc:
            raise AuthFailed(str(exc)) from exc
        return Actor(u.id, u.username, u.full_name, Role(u.role.value))


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@dataclass
class Chair:
    core: ChairCore
    engine: AlarmEngine
    clock: Clock
    latest: dict[str, tuple[float, datetime]]

    def do(self, cmd: c.Command, actor: Actor) -> None:
        self.core.execute(cmd, actor, self.latest)

    def readings(self, **values: float) -> None:
        now = self.clock.now
        rs = [make_reading(k, v, now) for k, v in values.items()]
        for r in rs:
            self.latest[r.parameter] = (r.value, now)
        events = self.engine.process(rs)
        if events and self.core.state is not None:
            self.do(c.RecordAlarmEvents(events), self.core.system())


@pytest.fixture
def chair(repo: SqlSessionRepository, engine: Engine) -> Iterator[Chair]:
    clock = Clock()
    prof = profile()
    alarm_engine = AlarmEngine(prof)
    core = ChairCore(
        "Chair 1", repo, DbPasswords(engine), prof, clock, alarms=EngineAlarms(alarm_engine, clock)
    )
    yield Chair(core, alarm_engine, clock, {})


def test_the_record_folded_is_the_cores_state_after_an_esketamine_session(
    chair: Chair, repo: SqlSessionRepository, engine: Engine, people: People
) -> None:
    nurse, doc = people.nurse, people.physician
    alex = PatientInfo(
        None,
        "MRN-7",
        "Alex",
        "Demo",
        date_of_birth="1980-02-03",
        sex="female",
        weight_kg=70.0,
        rems_enrolled=None,
    )
    chair.do(
        c.StartSession(alex, Plan(Treatment.ESKETAMINE, dose_mg=56.0), "simulator", True), nurse
    )
    state = chair.core.state
    assert state is not None and state.patient.id is not None
    sid = state.session_id
    chair.readings(nibp_sys=152, nibp_dia=94, hr=72, spo2=98, rr=14)
    chair.clock.advance(1)
    chair.do(c.RecordScreening((152, 94), 72, "manual", True, True, rems_enrolled=True), nurse)
    chair.do(
        c.PrescriberDecide(
            PrescriberDecision.PROCEED, "reviewed", c.Credentials("paul", PASSWORD)
        ),
        nurse,
    )
    chair.clock.advance(2)
    chair.do(c.LogDevice("LOT-A"), nurse)
    chair.clock.advance(5)
    chair.do(c.LogDevice("LOT-A"), nurse)
    chair.clock.advance(3)
    chair.readings(spo2=86, rr=14)
    chair.do(c.Acknowledge(), nurse)
    chair.clock.advance(2)
    chair.readings(spo2=97)
    chair.do(c.RecordMoaas(3), nurse)
    chair.do(c.RecordRass(-1), nurse)
    chair.do(c.RecordCadss({i: (1 if i < 3 else 0) for i in range(1, 24)}), nurse)
    chair.do(c.RecordSideEffects([c.SideEffectInput("nausea", "mild")]), nurse)
    chair.do(c.AddNote("resting"), nurse)
    chair.do(c.RecordVitals({"nibp_sys": 135, "nibp_dia": 85, "hr": 70}), nurse)
    state = chair.core.state
    assert state is not None
    moaas = state.live(EntryKind.MOAAS)[-1].entry_id
    vitals = state.vitals[-1].entry_id
    chair.clock.advance(1)
    chair.do(c.Correct(moaas, {"score": 4}, "scored the wrong row"), nurse)
    chair.do(
        c.Correct(vitals, {"values": {"nibp_sys": 131, "nibp_dia": 85, "hr": 70}}, "typo"), nurse
    )
    chair.do(c.RecordLink("lost", "cable"), chair.core.system())
    chair.do(c.RecordLink("connected", ""), chair.core.system())
    chair.do(c.ChangeLimit("spo2", 88, None, "COPD"), doc)
    chair.clock.advance(30)
    chair.do(c.RecordBp40Reason("patient asleep"), nurse)
    mid = chair.core.state
    assert fold(repo.load(sid)) == mid  # as a restart would find it
    assert [r.session_id for r in repo.open_sessions()] == [sid]
    chair.clock.advance(90)
    chair.readings(nibp_sys=128, nibp_dia=80, hr=68, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5), nurse)
    chair.do(c.Discharge(CHECKLIST, 90, password=PASSWORD), nurse)
    final = chair.core.last_state
    assert final is not None and final.discharge is not None
    loaded = repo.load(sid)
    assert fold(loaded) == final
    assert len(loaded) == final.entry_count and loaded[-1].id == final.last_entry_id
    assert repo.open_sessions() == []
    kinds = {e.kind for e in loaded}
    assert {EntryKind.ALARM, EntryKind.CORRECTION, EntryKind.DECISION, EntryKind.LINK} <= kinds
    with Session(engine) as s:
        ts = s.get(TreatmentSession, sid)
        assert ts is not None and ts.phase is SessionPhase.DISCHARGED
        assert ts.ended_at == chair.clock.now and ts.first_dose_at == T0 + timedelta(minutes=3)
        assert ts.predose_decision_by_id == doc.id and ts.vitals_ok_before is False
        assert ts.patient.rems_enrolment is RemsEnrolment.ENROLLED
        n_audit = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.entity == "session_entry", AuditEntry.session_id == sid)
        )
        assert n_audit == len(loaded)
    # the record alone rebuilds the state; a chair no longer takes the ended session
    clock = Clock(chair.clock.now)
    prof = profile()
    fresh = ChairCore("Chair 1", repo, DbPasswords(engine), prof, clock)
    assert fold(repo.load(sid)) == final
    with pytest.raises(Refused, match="has ended"):
        fresh.resume(sid)
