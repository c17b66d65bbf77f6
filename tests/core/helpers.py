"""A chair core on the in-memory repository with a real alarm engine and a manual clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from devices.readings import Reading, make_reading
from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.memory import MemoryRepository
from ketamon.core.ports import AuthFailed, SessionRepository
from ketamon.core.session import ChairCore, Outcome
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.roles import Actor, Role
from ketamon.domain.session_rules import PrescriberDecision, Treatment
from ketamon.domain.thresholds import ThresholdProfile, parse_profile
from ketamon.resources import read_text

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NURSE = Actor(10, "nina", "Nina Nurse", Role.NURSE)
PHYSICIAN = Actor(11, "paul", "Dr Paul Physician", Role.PHYSICIAN)
ADMIN = Actor(12, "ada", "Ada Admin", Role.ADMIN)
AUDITOR = Actor(13, "otto", "Otto Auditor", Role.AUDITOR)
THERAPIST = Actor(14, "tess", "Tess Therapist", Role.THERAPIST)
NURSE2 = Actor(15, "nora", "Nora Nurse", Role.NURSE)  # a second user (a witness)
PEOPLE = {a.username: a for a in (NURSE, PHYSICIAN, ADMIN, AUDITOR, THERAPIST, NURSE2)}
PASSWORD = "correct horse"
DOC = c.Credentials("paul", PASSWORD)


class Passwords:
    """Every test person's password is PASSWORD."""

    def verify(self, username: str, password: str) -> Actor:
        who = PEOPLE.get(username)
        if who is None or password != PASSWORD:
            raise AuthFailed("wrong username or password")
        return who


def profile() -> ThresholdProfile:
    return parse_profile(read_text("thresholds.toml"), "thresholds.toml")


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float = 0, seconds: float = 0) -> datetime:
        self.now += timedelta(minutes=minutes, seconds=seconds)
        return self.now


@dataclass
class Chair:
    core: ChairCore
    engine: AlarmEngine
    clock: Clock
    repo: SessionRepository
    latest: dict[str, tuple[float, datetime]] = field(default_factory=dict)

    def do(self, cmd: c.Command, actor: Actor = NURSE) -> Outcome:
        return self.core.execute(cmd, actor, self.latest)

    def readings(self, **values: float) -> Outcome | None:
        """Monitor readings now: the engine evaluates them; its events are recorded."""
        now = self.clock.now
        rs: list[Reading] = [make_reading(k, v, now) for k, v in values.items()]
        for r in rs:
            self.latest[r.parameter] = (r.value, now)
        events = self.engine.process(rs)
        if events and self.core.state is not None:
            return self.do(c.RecordAlarmEvents(events), self.core.system())
        return None


def make_chair(repo: SessionRepository | None = None, clock: Clock | None = None) -> Chair:
    clock = clock or Clock()
    prof = profile()
    engine = AlarmEngine(prof)
    repo = repo or MemoryRepository()
    core = ChairCore("Chair 1", repo, Passwords(), prof, clock, alarms=EngineAlarms(engine, clock))
    return Chair(core, engine, clock, repo)


ALEX = PatientInfo(None, "MRN-1", "Alex", "Demo", weight_kg=70.0, rems_enrolled=True)
SAM = PatientInfo(None, "MRN-2", "Sam", "Sample", weight_kg=90.0, rems_enrolled=True)
ESK = Plan(Treatment.ESKETAMINE, dose_mg=56.0)
IV = Plan(Treatment.IV_KETAMINE, iv_mg_per_kg=0.5, iv_minutes=40.0)
IM = Plan(Treatment.IM_KETAMINE, im_mg_per_kg=0.5)
SL = Plan(Treatment.ORAL_KETAMINE, oral_mg=200.0, oral_form="sublingual_troche")


def screening(bp: tuple[float, float] = (120, 80), hr: float = 70) -> c.RecordScreening:
    return c.RecordScreening(
        bp=bp, hr=hr, bp_source="monitor", fasting=True, escort=True, rems_enrolled=True
    )


def start_and_dose(
    chair: Chair, patient: PatientInfo = ALEX, bp: tuple[float, float] = (120, 80)
) -> None:
    """Start, screen at ``bp`` and give both esketamine devices 5 minutes apart."""
    chair.do(c.StartSession(patient, ESK, confirmed=True))
    chair.readings(nibp_sys=bp[0], nibp_dia=bp[1], hr=70, spo2=98, rr=14)
    chair.do(screening(bp))
    if chair.core.profile.predose_advisory.applies(*bp):
        chair.do(c.PrescriberDecide(PrescriberDecision.PROCEED), PHYSICIAN)
    chair.do(c.LogDevice("LOT-A"))
    chair.clock.advance(minutes=5)
    chair.do(c.LogDevice("LOT-A"))
