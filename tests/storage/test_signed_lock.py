"""A signed session is locked in the database itself, on SQLite and PostgreSQL: the repository
refuses every entry but an addendum or the PMF's submission, whoever writes it (the chair, the
desk, or code calling the repository directly); the signature's hash still matches what reads
back; ``list_sessions`` and ``ketamon sessions list`` show where each session stands."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devices.readings import make_reading
from ketamon.cli import main
from ketamon.core import commands as c
from ketamon.core import pmf
from ketamon.core.alarms import EngineAlarms
from ketamon.core.desk import SessionDesk
from ketamon.core.ports import AuthFailed, EntryDraft
from ketamon.core.session import ChairCore, Refused
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, PatientInfo, Plan, fold
from ketamon.domain.roles import Actor, Role
from ketamon.domain.session_rules import Treatment
from ketamon.domain.thresholds import parse_profile
from ketamon.resources import read_text
from ketamon.storage import users
from ketamon.storage.models import AuditEntry, SessionEntryRow
from ketamon.storage.records import RecordError
from ketamon.storage.repository import LOCKED_KINDS, SqlSessionRepository, list_sessions
from tests.storage.conftest import PASSWORD, Staff

T0 = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}
MEANING = "reviewed_discharge_criteria_met"
ALEX = PatientInfo(None, "MRN-1", "Alex", "Demo", weight_kg=70.0, rems_enrolled=True)


class DbPasswords:
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
class World:
    engine: Engine
    repo: SqlSessionRepository
    clock: Clock
    nurse: Actor
    doc: Actor
    chair_engine: AlarmEngine
    core: ChairCore
    desk: SessionDesk
    latest: dict[str, tuple[float, datetime]] = field(default_factory=dict)

    def do(self, cmd: c.Command, actor: Actor | None = None) -> None:
        self.core.execute(cmd, actor or self.nurse, self.latest)

    def readings(self, **values: float) -> None:
        rs = [make_reading(k, v, self.clock.now) for k, v in values.items()]
        for r in rs:
            self.latest[r.parameter] = (r.value, self.clock.now)
        events = self.chair_engine.process(rs)
        if events and self.core.state is not None:
            self.do(c.RecordAlarmEvents(events), self.core.system())

    def new_chair(self) -> ChairCore:
        prof = parse_profile(read_text("thresholds.toml"), "thresholds.toml")
        eng = AlarmEngine(prof)
        return ChairCore(
            "Chair 1",
            self.repo,
            DbPasswords(self.engine),
            prof,
            self.clock,
            alarms=EngineAlarms(eng, self.clock),
        )

    def session(self, *, discharge: bool = True) -> int:
        """An esketamine session at the chair: screened, dosed, observed (and discharged)."""
        self.do(c.StartSession(ALEX, Plan(Treatment.ESKETAMINE, dose_mg=56.0), confirmed=True))
        state = self.core.state
        assert state is not None
        self.readings(nibp_sys=120, nibp_dia=80, hr=70, spo2=98, rr=14)
        self.do(c.RecordScreening((120, 80), 70, "monitor", True, True, rems_enrolled=True))
        self.do(c.LogDevice("LOT-A"))
        self.clock.advance(5)
        self.do(c.LogDevice("LOT-A"))
        self.clock.advance(30)
        self.do(c.AddNote("resting — «quiet»"))
        if discharge:
            self.clock.advance(91)
            self.readings(nibp_sys=125, nibp_dia=80, hr=72, spo2=98, rr=14)
            self.do(c.RecordMoaas(5))
            self.do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
        return state.session_id


@pytest.fixture(autouse=True)
def _pmf_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PMF's required fields count as filled in (the PMF's own tests fill them); the tests
    about the PMF blocking a signature set their own ``missing_fields``."""
    monkeypatch.setattr(pmf, "missing_fields", lambda reviewed, site, **kw: [], raising=False)


@pytest.fixture(params=["own_session", "writer"])
def world(request: pytest.FixtureRequest, engine: Engine, staff: Staff) -> World:
    writer = request.getfixturevalue("writer") if request.param == "writer" else None
    prof = parse_profile(read_text("thresholds.toml"), "thresholds.toml")
    repo = SqlSessionRepository(engine, writer, profile=prof, profile_origin="test")
    clock = Clock()
    eng = AlarmEngine(prof)
    core = ChairCore(
        "Chair 1", repo, DbPasswords(engine), prof, clock, alarms=EngineAlarms(eng, clock)
    )
    desk = SessionDesk(repo, DbPasswords(engine), clock, site={"credentials": {"paul": "MD"}})
    return World(
        engine,
        repo,
        clock,
        Actor(staff.nurse, "nina", "Nina Nurse", Role.NURSE),
        Actor(staff.physician, "paul", "Paul Physician", Role.PHYSICIAN),
        eng,
        core,
        desk,
    )


def counts(engine: Engine, sid: int) -> tuple[int, int]:
    with Session(engine) as s:
        entries = s.scalar(
            select(func.count())
            .select_from(SessionEntryRow)
            .where(SessionEntryRow.session_id == sid)
        )
        audit = s.scalar(select(func.count()).select_from(AuditEntry))
    return int(entries or 0), int(audit or 0)


#: a well-formed draft of every kind (what each would carry if the lock let it through)
def drafts(at: datetime, last: int, target: int) -> dict[EntryKind, dict[str, Any]]:
    sig = {
        "meaning_id": MEANING,
        "meaning": "Reviewed",
        "name": "Paul Physician",
        "credentials": "MD",
        "content_sha256": "0" * 64,
        "covers_entry_id": last,
    }
    return {
        EntryKind.STARTED: {"chair": "Chair 1", "patient": {}, "plan": {}},
        EntryKind.SCREENING: {"bp": None, "hr": None, "bp_source": "manual", "fasting": True},
        EntryKind.DECISION: {"decision": "proceed", "note": ""},
        EntryKind.BP_OVERRIDE: {"reason": "late"},
        EntryKind.DEVICE: {"number": 3, "mg": 28.0, "lot": "LOT-B"},
        EntryKind.INFUSION_STARTED: {
            "planned_mg": 35.0,
            "rate_mg_per_min": 1.0,
            "mg_per_kg": 0.5,
            "weight_kg": 70.0,
            "planned_minutes": 40.0,
        },
        EntryKind.INFUSION_STOPPED: {"given_mg": 10.0},
        EntryKind.OTHER_DOSE: {"description": "ondansetron"},
        EntryKind.MOAAS: {"score": 4},
        EntryKind.RASS: {"score": 0},
        EntryKind.CADSS: {"items": {"1": 0}},
        EntryKind.SIDE_EFFECT: {"item": "nausea", "severity": "mild"},
        EntryKind.NOTE: {"text": "late note"},
        EntryKind.VITALS: {"values": {"hr": 70.0}},
        EntryKind.SYMPTOM_CHECK: {"answers": {"chest_pain": False}, "yes": []},
        EntryKind.BP40_REASON: {"reason": "asleep"},
        EntryKind.CORRECTION: {
            "target": target,
            "target_kind": "note",
            "changes": {"text": "changed"},
            "old": {},
            "reason": "typo",
        },
        EntryKind.ALARM: {"key": "spo2_low", "action": "raised", "priority": "medium"},
        EntryKind.LINK: {"state": "lost", "reason": "cable"},
        EntryKind.LIMIT_CHANGED: {"limit_id": "spo2", "low": 88, "high": None, "reason": "x"},
        EntryKind.DISCHARGED: {"checklist": CHECKLIST, "ready_to_leave_min": 90, "total_min": 1},
        EntryKind.CANCELLED: {"reason": "oops"},
        EntryKind.ENDED: {"reason": "stop"},
        EntryKind.SIGNED: sig,
        EntryKind.ADDENDUM: {"text": "late", **sig, "meaning_id": "addendum"},
        EntryKind.COUNTERSIGNED: {"addendum_id": target, **sig, "meaning_id": "countersign"},
        EntryKind.PMF_FIELDS: {"values": {"lot": "X"}, "form_version": "v1"},
        EntryKind.PMF_SUBMITTED: {"method": "fax", "submitted_at": "2026-11-30", "reference": "R"},
        # the treatment course (issue 15): refused on a signed session like the rest
        EntryKind.ADMINISTERED: {
            "route": "im",
            "product": "Ketamine 50 mg/mL",
            "concentration": 50.0,
            "lot": "K1",
            "expiry": "2027-01-01",
            "drawn_mg": 40.0,
            "given_mg": 35.0,
        },
        EntryKind.WASTE: {"product": "Ketamine 50 mg/mL", "lot": "K1", "mg": 5.0, "reason": "x"},
        EntryKind.SCALE: {"scale": "cgi_s", "items": {"1": 4}, "total": 4, "band": ""},
        EntryKind.SUICIDALITY_ACTION: {"action": "assessed"},
        EntryKind.THERAPIST_ASSIGNED: {"user_id": 1, "username": "tess", "name": "Tess"},
        EntryKind.THERAPIST_NOTE: {"text": "late thought"},
    }


def test_the_repository_refuses_every_other_kind_on_a_signed_session(world: World) -> None:
    sid = world.session()
    world.clock.advance(10)
    signed = world.desk.execute(sid, c.Sign(MEANING, PASSWORD), world.doc)
    note = next(e.id for e in signed.entries if e.kind is EntryKind.NOTE)
    kinds = drafts(world.clock.now, signed.entries[-1].id, note)
    assert set(kinds) == set(EntryKind)
    before = counts(world.engine, sid)
    for kind in sorted(set(EntryKind) - LOCKED_KINDS):
        for actor in (world.nurse, world.doc, world.repo.system_actor()):
            with pytest.raises(RecordError, match=f"session {sid} is signed and locked"):
                world.repo.append(sid, [EntryDraft(kind, world.clock.now, kinds[kind])], actor)
    # a locked kind first does not open the door for the rest of the same call
    with pytest.raises(RecordError, match="locked"):
        world.repo.append(
            sid,
            [
                EntryDraft(
                    EntryKind.PMF_SUBMITTED, world.clock.now, kinds[EntryKind.PMF_SUBMITTED]
                ),
                EntryDraft(EntryKind.NOTE, world.clock.now, kinds[EntryKind.NOTE]),
            ],
            world.nurse,
        )
    assert counts(world.engine, sid) == before  # nothing recorded, not even an audit row
    assert world.repo.load(sid) == list(signed.entries)
    # what a signed session still takes
    world.repo.append(
        sid,
        [EntryDraft(EntryKind.PMF_SUBMITTED, world.clock.now, kinds[EntryKind.PMF_SUBMITTED])],
        world.nurse,
    )
    out = world.desk.execute(sid, c.AddAddendum("Called the patient: well.", PASSWORD), world.doc)
    assert out.state.addenda[0].text == "Called the patient: well."
    assert len(out.state.pmf_submissions) == 1


def test_signatures_in_the_repository(world: World) -> None:
    running = world.session(discharge=False)
    last = world.repo.load(running)[-1].id
    kinds = drafts(world.clock.now, last, 0)
    with pytest.raises(RecordError, match="still running"):
        world.repo.append(
            running,
            [EntryDraft(EntryKind.SIGNED, world.clock.now, kinds[EntryKind.SIGNED])],
            world.doc,
        )
    with pytest.raises(RecordError, match="not signed"):
        world.repo.append(
            running,
            [EntryDraft(EntryKind.ADDENDUM, world.clock.now, kinds[EntryKind.ADDENDUM])],
            world.doc,
        )
    world.clock.advance(91)
    world.readings(nibp_sys=125, nibp_dia=80, hr=72, spo2=98, rr=14)
    world.do(c.RecordMoaas(5))
    world.do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
    # a signature must cover every entry before it (one slipped in since it was decided)
    stale = {**kinds[EntryKind.SIGNED], "covers_entry_id": last}
    with pytest.raises(RecordError, match="cover every entry"):
        world.repo.append(
            running, [EntryDraft(EntryKind.SIGNED, world.clock.now, stale)], world.doc
        )
    assert not fold(world.repo.load(running)).signed  # type: ignore[union-attr]


def test_the_desk_and_the_chair_on_a_signed_session(world: World) -> None:
    sid = world.session()
    with pytest.raises(Refused, match="Sign with your password"):
        world.desk.execute(sid, c.Sign(MEANING, "not it"), world.doc)
    with pytest.raises(Refused, match="Only a physician"):
        world.desk.execute(sid, c.Sign(MEANING, PASSWORD), world.nurse)
    world.clock.advance(15)
    signed = world.desk.execute(sid, c.Sign(MEANING, PASSWORD), world.doc)
    sig = signed.state.signature
    assert sig is not None
    assert (sig.name, sig.credentials, sig.at) == ("Paul Physician", "MD", world.clock.now)
    # the hash still matches what reads back from the database (times, floats, text, order)
    loaded = world.repo.load(sid)
    assert canonical_sha256([e for e in loaded if e.id <= sig.covers_entry_id]) == (
        sig.content_sha256
    )
    assert fold(loaded) == signed.state
    before = counts(world.engine, sid)
    for cmd in (c.Sign(MEANING, PASSWORD), c.EnterPmfFields({"lot": "X"}, "v1")):
        with pytest.raises(Refused):
            world.desk.execute(sid, cmd, world.doc)
    chair = world.new_chair()
    with pytest.raises(Refused, match="has ended"):
        chair.resume(sid)  # a chair does not take an ended (and here signed) session back
    assert chair.state is None
    for chair_cmd in (c.AddNote("late"), c.RecordMoaas(4), c.Cancel("x"), c.EndMonitoring("x")):
        with pytest.raises(Refused):
            chair.execute(chair_cmd, world.doc, {})
    assert counts(world.engine, sid) == before
    out = world.desk.execute(sid, c.AddAddendum("Seen again at home.", PASSWORD), world.doc)
    add = out.state.addenda[0]
    assert add.signature.content_sha256 == canonical_sha256(loaded)
    assert fold(world.repo.load(sid)) == out.state


def test_list_sessions_and_the_command(
    world: World,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid_signed = world.session()
    world.desk.execute(sid_signed, c.Sign(MEANING, PASSWORD), world.doc)
    sid_added = world.session()
    world.desk.execute(sid_added, c.Sign(MEANING, PASSWORD), world.doc)
    world.desk.execute(sid_added, c.AddAddendum("late", PASSWORD), world.doc)
    sid_pending = world.session()
    world.desk.execute(sid_pending, c.Sign(MEANING, PASSWORD), world.doc)
    world.desk.execute(sid_pending, c.AddLateEntry("escort confirmed", PASSWORD), world.nurse)
    sid_waiting = world.session()
    sid_open = world.session(discharge=False)
    rows = {r.id: r for r in list_sessions(world.engine)}
    status = {sid: rows[sid].status for sid in rows}
    assert status == {
        sid_signed: "signed",
        sid_added: "addendum",
        sid_pending: "addendum_pending",
        sid_waiting: "awaiting_signature",
        sid_open: "open",
    }
    r = rows[sid_waiting]
    assert (r.chair, r.patient, r.treatment) == ("Chair 1", "Alex Demo (MRN-1)", "esketamine")
    assert r.ended is not None and r.started < r.ended and rows[sid_open].ended is None
    run: Callable[..., tuple[int, str]] = lambda *a: (main(list(a)), capsys.readouterr().out)  # noqa: E731
    rc, out = run("sessions", "list", "--db", db_url, "--json")
    assert rc == 0
    listed = json.loads(out)
    assert [x["id"] for x in listed] == [sid_signed, sid_added, sid_pending, sid_waiting, sid_open]
    assert listed[4]["ended"] is None and listed[4]["status"] == "open"
    assert listed[3]["ended"] == rows[sid_waiting].ended.isoformat()  # type: ignore[union-attr]
    keys = {"id", "chair", "patient", "treatment", "started", "ended", "status", "pmf"}
    assert set(listed[0]) == keys
    forms = {"due", "warned", "overdue", "submitted", "not_required"}
    assert {x["pmf"] for x in listed} <= forms  # (a dosed esketamine session needs a PMF)
    rc, out = run("sessions", "list", "--db", db_url, "--status", "awaiting_signature")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[0] == "ID" and len(lines) == 2
    assert lines[1].split()[0] == str(sid_waiting) and "awaiting_signature" in lines[1].split()
    rc, out = run("sessions", "list", "--db", db_url, "--status", "addendum_pending", "--json")
    assert rc == 0 and [x["id"] for x in json.loads(out)] == [sid_pending]
