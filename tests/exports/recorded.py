"""A real recorded session on a real database, for the exports and HL7 out tests.

Made through the chair core, the SQL repository, the database writer (monitor readings as the
station stores them), the alarm engine and the review desk: an esketamine session with two
devices (lots LOT-A, LOT-B), monitor readings every minute for two hours, a low-SpO2 flag
raised, acknowledged and cleared, a cuff BP typed in by hand, a MOAA/S corrected with a reason,
a CADSS, a serious adverse event, discharge, the physician's signature and a signed addendum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from devices.readings import Reading, make_reading
from ketamon.core import commands as c
from ketamon.core import pmf
from ketamon.core.alarms import EngineAlarms
from ketamon.core.desk import SessionDesk
from ketamon.core.ports import AuthFailed
from ketamon.core.session import ChairCore
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.record import EntryKind
from ketamon.domain.roles import Actor, Role
from ketamon.services import open_database
from ketamon.storage import users
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role as DbRole
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.users import create_user, system_user_id
from ketamon.storage.writer import DatabaseWriter
from tests.core.helpers import ESK as ESK_PLAN
from tests.core.helpers import PASSWORD, Clock, profile, screening
from tests.core.test_pmf import CHECKLIST, FULL

MONITOR = "Chair 1 monitor (hl7)"
MEANING = "reviewed_discharge_criteria_met"


class DbPasswords:
    def __init__(self, people: dict[str, Actor]) -> None:
        self.people = people

    def verify(self, username: str, password: str) -> Actor:
        if username in self.people and password == PASSWORD:
            return self.people[username]
        raise AuthFailed("wrong username or password")


@dataclass
class Recorded:
    url: str
    sid: int
    nurse: Actor
    doc: Actor
    clock: Clock
    monitor_readings: int
    corrected_moaas: int  # the MOAA/S entry that was corrected


def fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    monkeypatch.setattr(users, "_DUMMY_HASH", None)


def record_session(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    minutes: int = 122,
    sign: bool = True,
    every_s: int = 60,
) -> Recorded:
    fast_hashes(monkeypatch)
    # the PMF's own tests fill its fields; here they count as filled so the session can be signed
    monkeypatch.setattr(pmf, "missing_fields", lambda reviewed, site, **kw: [], raising=False)
    engine = open_database(url)
    try:
        return _record(engine, url, minutes=minutes, sign=sign, every_s=every_s)
    finally:
        engine.dispose()


def _record(engine: Engine, url: str, *, minutes: int, sign: bool, every_s: int) -> Recorded:
    with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        n = create_user(
            s, username="nina", full_name="Nina Nurse", role=DbRole.NURSE, password=PASSWORD
        )
        d = create_user(
            s,
            username="paul",
            full_name="Dr Paul Physician",
            role=DbRole.PHYSICIAN,
            password=PASSWORD,
            credentials="MD",
        )
        nurse = Actor(n.id, "nina", "Nina Nurse", Role.NURSE)
        doc = Actor(d.id, "paul", "Dr Paul Physician", Role.PHYSICIAN)
    writer = DatabaseWriter(engine, user_id=system_user_id(engine)).start()
    repo = SqlSessionRepository(engine, writer, profile=profile(), profile_origin="test")
    clock = Clock()
    alarm_engine = AlarmEngine(profile())
    auth = DbPasswords({"nina": nurse, "paul": doc})
    core = ChairCore(
        "Chair 1", repo, auth, profile(), clock, alarms=EngineAlarms(alarm_engine, clock)
    )
    latest: dict[str, tuple[float, datetime]] = {}

    def do(cmd: object, actor: Actor = nurse) -> object:
        return core.execute(cmd, actor, latest)  # type: ignore[arg-type]

    sid_box: list[int] = []
    count = [0]

    def feed(**values: float) -> None:
        now = clock.now
        rs: list[Reading] = []
        for k, v in values.items():
            r = make_reading(k, v, now)
            rs.append(Reading(r.parameter, r.value, r.unit, now, r.mdc, None, r.quality, MONITOR))
            latest[k] = (v, now)
        if sid_box:
            writer.submit_readings(sid_box[0], rs)
            count[0] += len(rs)
        events = alarm_engine.process(rs)
        if events and core.state is not None:
            do(c.RecordAlarmEvents(events), core.system())

    try:
        do(c.StartSession(FULL, ESK_PLAN, confirmed=True))
        assert core.state is not None
        sid = core.state.session_id
        sid_box.append(sid)
        feed(nibp_sys=120, nibp_dia=80, nibp_mean=93, hr=70, spo2=98, rr=14)
        do(screening((120, 80)))
        do(c.LogDevice("LOT-A"))
        clock.advance(minutes=5)
        do(c.LogDevice("LOT-B"))
        moaas_id = 0
        steps = int(minutes * 60 / every_s)
        for step in range(1, steps + 1):
            clock.advance(seconds=every_s)
            t = step * every_s / 60.0
            spo2 = 85.0 if 20 <= t < 22 else 97.0 + (step % 3)
            values = {"hr": 70.0 + step % 7, "spo2": spo2, "rr": 14.0 + step % 2}
            if step % max(1, int(900 / every_s)) == 0:
                values |= {"nibp_sys": 124.0 + step % 9, "nibp_dia": 79.0, "nibp_mean": 94.0}
            feed(**values)
            if 21 <= t < 21 + every_s / 60.0:
                do(c.Acknowledge())
            if 35 <= t < 35 + every_s / 60.0:
                do(c.RecordVitals({"nibp_sys": 138, "nibp_dia": 88}))
                do(c.RecordMoaas(4))
                assert core.state is not None
                moaas_id = core.state.live(EntryKind.MOAAS)[-1].entry_id
                do(c.Correct(moaas_id, {"score": 3}, "misread the response"))
                do(c.RecordCadss({i: (1 if i <= 6 else 0) for i in range(1, 24)}))
                do(
                    c.RecordSideEffects(
                        [
                            c.SideEffectInput("nausea", "mild"),
                            c.SideEffectInput(
                                "psychosis", "severe", serious=True, text="brief, resolved"
                            ),
                        ]
                    )
                )
        do(c.RecordMoaas(5))
        do(c.RecordCadss(dict.fromkeys(range(1, 24), 0)))
        do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
        writer.wait_idle()
    finally:
        writer.stop()
    if sign:
        desk = SessionDesk(
            SqlSessionRepository(engine), auth, clock, site={"credentials": {"paul": "MD"}}
        )
        clock.advance(minutes=30)
        desk.execute(sid, c.Sign(MEANING, PASSWORD), doc)
        clock.advance(minutes=5)
        desk.execute(sid, c.AddAddendum("Called the patient next day: well.", PASSWORD), doc)
    return Recorded(url, sid, nurse, doc, clock, count[0], moaas_id)
