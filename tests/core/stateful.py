"""Random sessions: any command, by any role, at any time. The live state always equals the
state rebuilt from the record, and a refused command records nothing. The repository is a
parameter so the same machine runs on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ketamon.core import commands as c
from ketamon.core.ports import SessionRepository
from ketamon.core.session import Refused
from ketamon.domain.dosing import Supply
from ketamon.domain.record import fold
from ketamon.domain.session_rules import PrescriberDecision
from ketamon.domain.side_effects import BP_SYMPTOMS
from tests.core.helpers import (
    ADMIN,
    ALEX,
    AUDITOR,
    DOC,
    ESK,
    IM,
    IV,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    SAM,
    SL,
    THERAPIST,
    Chair,
    Clock,
    make_chair,
)

ACTORS = st.sampled_from([NURSE, NURSE, PHYSICIAN, ADMIN, AUDITOR, THERAPIST])
VIAL = Supply("Ketamine HCl 50 mg/mL", 50.0, "K1", "2027-06-30")
TROCHE = Supply("Ketamine troche 100 mg", 100.0, "T1", "2027-06-30")
AUTH = st.sampled_from(
    [None, DOC, c.Credentials("paul", "wrong"), c.Credentials("nina", PASSWORD)]
)
COMMANDS: st.SearchStrategy[Any] = st.one_of(
    st.builds(
        c.StartSession,
        st.sampled_from([ALEX, SAM]),
        st.sampled_from([ESK, IV, IM, SL]),
        confirmed=st.sampled_from([True, True, False]),
    ),
    st.builds(
        c.RecordScreening,
        bp=st.one_of(st.none(), st.tuples(st.integers(60, 220), st.integers(30, 130))),
        hr=st.one_of(st.none(), st.integers(30, 160)),
        bp_source=st.sampled_from(["monitor", "manual"]),
        fasting=st.booleans(),
        escort=st.booleans(),
        rems_enrolled=st.sampled_from([None, True, False]),
    ),
    st.builds(c.PrescriberDecide, st.sampled_from(list(PrescriberDecision)), authoriser=AUTH),
    st.builds(c.OverrideMissingBp, st.sampled_from(["", "cuff broken"]), authoriser=AUTH),
    st.builds(c.LogDevice, st.sampled_from(["LOT1", ""])),
    st.just(c.StartInfusion()),
    st.builds(c.StopInfusion, st.sampled_from(["", "hold"])),
    st.builds(c.RecordMoaas, st.integers(-1, 6)),
    st.builds(c.RecordRass, st.integers(-6, 5)),
    st.builds(c.RecordCadss, st.dictionaries(st.integers(0, 24), st.integers(-1, 5), max_size=23)),
    st.builds(c.AddNote, st.text(max_size=20)),
    st.builds(
        c.RecordVitals,
        st.dictionaries(
            st.sampled_from(["hr", "spo2", "rr", "nibp_sys", "nibp_dia"]),
            st.integers(0, 260),
            max_size=3,
        ),
    ),
    st.builds(
        c.RecordSymptomCheck,
        st.fixed_dictionaries({k: st.booleans() for k, _ in BP_SYMPTOMS}),
    ),
    st.builds(
        c.RecordSideEffects,
        st.lists(
            st.builds(
                c.SideEffectInput,
                st.sampled_from(["nausea", "dizziness", "psychosis", "bogus"]),
                st.sampled_from(["mild", "severe", "none"]),
                serious=st.sampled_from([None, True, False]),
            ),
            max_size=2,
        ),
    ),
    st.builds(c.Acknowledge, st.sampled_from([None, "spo2_low", "nibp_sys_high", "moaas"])),
    st.just(c.ResetAlarms()),
    st.builds(c.ResetEmergency, st.sampled_from(["", "treated"]), authoriser=AUTH),
    st.builds(
        c.ChangeLimit,
        st.sampled_from(["spo2", "hr", "nope"]),
        st.sampled_from([None, 45.0, 88.0]),
        st.sampled_from([None, 130.0]),
        st.sampled_from(["", "baseline"]),
        authoriser=AUTH,
    ),
    st.builds(
        c.Discharge,
        st.sampled_from(
            [{}, {"steady_gait": True, "escort_present": True, "instructions_given": True}]
        ),
        st.sampled_from([None, 60, 90]),
        password=st.sampled_from([PASSWORD, "bad"]),
        override_reason=st.sampled_from(["", "accepted"]),
        authoriser=AUTH,
    ),
    st.builds(c.Cancel, st.sampled_from(["", "wrong patient"]), authoriser=AUTH),
    # the treatment course (issue 15)
    st.builds(
        c.AdministerDose,
        st.sampled_from([VIAL, TROCHE]),
        st.sampled_from([30.0, 50.0, 200.0]),
        st.sampled_from(["", "deltoid_left"]),
    ),
    st.builds(
        c.RecordWaste,
        st.sampled_from([VIAL.product, TROCHE.product]),
        st.sampled_from(["K1", "T1"]),
        st.sampled_from([5.0, 15.0, 40.0]),
        st.sampled_from(["", "rest of the vial"]),
        st.sampled_from(
            [None, DOC, c.Credentials("nina", PASSWORD), c.Credentials("nora", PASSWORD)]
        ),
    ),
    st.builds(
        c.RecordScale,
        st.sampled_from(["phq9", "cgi_s", "madrs", "nope"]),
        st.dictionaries(st.integers(0, 10), st.integers(0, 3), min_size=1, max_size=10),
    ),
    st.builds(c.RecordSuicidalityAction, st.sampled_from(["", "risk assessed"])),
    st.builds(
        c.AssignTherapist,
        st.sampled_from([c.Credentials("tess", PASSWORD), c.Credentials("nina", PASSWORD)]),
    ),
    st.builds(c.AddTherapistNote, st.sampled_from(["", "grief work"])),
)


def machine(make_repo: Callable[[], SessionRepository]) -> type[RuleBasedStateMachine]:
    class SessionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = Clock()
            self.repo = make_repo()
            self.chair: Chair = make_chair(self.repo, self.clock)
            self.sessions: set[int] = set()

        def _count(self) -> dict[int, int]:
            return {sid: len(self.repo.load(sid)) for sid in self.sessions}

        @rule(cmd=COMMANDS, actor=ACTORS)
        def command(self, cmd: Any, actor: Any) -> None:
            before = self._count()
            try:
                out = self.chair.do(cmd, actor)
            except Refused:
                assert self._count() == before, "a refused command recorded something"
                event(f"refused {type(cmd).__name__}")
                return
            event(f"accepted {type(cmd).__name__}")
            self.sessions.add(out.state.session_id)

        @rule(
            minutes=st.floats(0, 40),
            values=st.dictionaries(
                st.sampled_from(["nibp_sys", "nibp_dia", "hr", "spo2", "rr"]),
                st.integers(0, 250),
                max_size=4,
            ),
        )
        def readings(self, minutes: float, values: dict[str, int]) -> None:
            self.clock.advance(minutes=minutes)
            self.chair.readings(**{k: float(v) for k, v in values.items()})

        @precondition(lambda self: self.chair.core.state is None)
        @rule(
            patient=st.sampled_from([ALEX, SAM]),
            plan=st.sampled_from([ESK, IV, IM, SL]),
            actor=st.sampled_from([NURSE, PHYSICIAN]),
        )
        def start(self, patient: Any, plan: Any, actor: Any) -> None:
            out = self.chair.do(c.StartSession(patient, plan, confirmed=True), actor)
            self.sessions.add(out.state.session_id)
            event("path StartSession")

        def _try(self, cmd: Any, actor: Any = NURSE) -> None:
            try:
                self.chair.do(cmd, actor)
                event(f"path {type(cmd).__name__}")
            except Refused:
                pass

        @precondition(lambda self: self.chair.core.state is not None)
        @rule(bp=st.tuples(st.integers(100, 160), st.integers(60, 95)))
        def screen_and_dose(self, bp: tuple[int, int]) -> None:
            """The usual way through: screening, a decision when needed, the dose."""
            self.chair.readings(nibp_sys=float(bp[0]), nibp_dia=float(bp[1]), hr=70.0)
            self._try(c.RecordScreening(bp, 70, "monitor", True, True, rems_enrolled=True))
            self._try(c.PrescriberDecide(PrescriberDecision.PROCEED), PHYSICIAN)
            self._try(c.LogDevice("LOT1"))
            self._try(c.StartInfusion())
            self._try(c.AdministerDose(VIAL, 35.0, "deltoid_left"))
            self._try(c.AdministerDose(TROCHE, 200.0))
            self.clock.advance(minutes=5)
            self._try(c.LogDevice("LOT1"))

        @precondition(lambda self: self.chair.core.state is not None)
        @rule(moaas=st.sampled_from([5, 5, 3]))
        def discharge_path(self, moaas: int) -> None:
            self.clock.advance(minutes=121)
            self._try(c.StopInfusion("done"))
            self.chair.readings(nibp_sys=120.0, nibp_dia=80.0, spo2=98.0, rr=14.0)
            self._try(c.RecordMoaas(moaas))
            ok = {"steady_gait": True, "escort_present": True, "instructions_given": True}
            self._try(c.Discharge(ok, 90, password=PASSWORD))

        @precondition(lambda self: self.chair.core.state is not None)
        @rule()
        def restart(self) -> None:
            state = self.chair.core.state
            assert state is not None
            fresh = make_chair(self.repo, self.clock)
            assert fresh.core.resume(state.session_id) == state
            fresh.latest = self.chair.latest
            self.chair = fresh

        @invariant()
        def live_equals_record(self) -> None:
            state = self.chair.core.last_state
            if state is not None:
                assert fold(self.repo.load(state.session_id)) == state

    return SessionMachine
