"""Every command for every role, allowed or refused as clinical.md §8 item 42 says."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ketamon.core import commands as c
from ketamon.core.session import Refused
from ketamon.domain.roles import Action, Actor, Role, allowed
from ketamon.domain.session_rules import PrescriberDecision
from tests.core.helpers import (
    ADMIN,
    ALEX,
    AUDITOR,
    ESK,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    Chair,
    make_chair,
    screening,
    start_and_dose,
)

ROLES = {"nurse": NURSE, "physician": PHYSICIAN, "admin": ADMIN, "auditor": AUDITOR}
CLINICAL = {"nurse", "physician"}
PHYS = {"physician"}


def _started(chair: Chair) -> None:
    chair.do(c.StartSession(ALEX, ESK, confirmed=True))


def _screened(chair: Chair) -> None:
    _started(chair)
    chair.do(screening((150, 94)))


def _dosed(chair: Chair) -> None:
    start_and_dose(chair)


def _flagged(chair: Chair) -> None:
    start_and_dose(chair)
    chair.clock.advance(minutes=20)
    chair.readings(spo2=85)


def _escalated(chair: Chair) -> None:
    start_and_dose(chair)
    chair.clock.advance(minutes=20)
    chair.readings(nibp_sys=190, nibp_dia=100)
    chair.do(
        c.RecordSymptomCheck(
            {
                "chest_pain": True,
                **{
                    k: False
                    for k in (
                        "shortness_of_breath",
                        "severe_headache",
                        "visual_change",
                        "confusion",
                        "seizure",
                        "weakness",
                    )
                },
            }
        )
    )


def _ready(chair: Chair) -> None:
    start_and_dose(chair)
    chair.clock.advance(minutes=121)
    chair.readings(nibp_sys=120, nibp_dia=80, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))


def _first_moaas(chair: Chair) -> int:
    start_and_dose(chair)
    return chair.do(c.RecordMoaas(4)).entries[0].id


Setup = Callable[[Chair], object]
CASES: list[tuple[str, Setup, Callable[[object], c.Command], set[str]]] = [
    ("start", lambda ch: None, lambda _: c.StartSession(ALEX, ESK, confirmed=True), CLINICAL),
    ("screening", _started, lambda _: screening(), CLINICAL),
    ("decision", _screened, lambda _: c.PrescriberDecide(PrescriberDecision.PROCEED), PHYS),
    ("bp override", _started, lambda _: c.OverrideMissingBp("cuff broken"), PHYS),
    ("moaas", _dosed, lambda _: c.RecordMoaas(4), CLINICAL),
    ("rass", _dosed, lambda _: c.RecordRass(0), CLINICAL),
    ("cadss", _dosed, lambda _: c.RecordCadss({i: 0 for i in range(1, 24)}), CLINICAL),
    ("note", _dosed, lambda _: c.AddNote("comfortable"), CLINICAL),
    ("vitals", _dosed, lambda _: c.RecordVitals({"hr": 70}), CLINICAL),
    (
        "side effect",
        _dosed,
        lambda _: c.RecordSideEffects([c.SideEffectInput("nausea", "mild")]),
        CLINICAL,
    ),
    ("bp40", _dosed, lambda _: c.RecordBp40Reason("patient asleep"), CLINICAL),
    ("correction", _first_moaas, lambda eid: c.Correct(int(eid), {"score": 5}, "typo"), CLINICAL),  # type: ignore[call-overload]
    ("acknowledge", _flagged, lambda _: c.Acknowledge("spo2_low"), CLINICAL),
    ("alarm reset", _flagged, lambda _: c.ResetAlarms(), CLINICAL),
    ("reset emergency", _escalated, lambda _: c.ResetEmergency("treated"), PHYS),
    ("session limit", _dosed, lambda _: c.ChangeLimit("spo2", 88, None, "COPD"), PHYS),
    (
        "discharge",
        _ready,
        lambda _: c.Discharge(
            {"steady_gait": True, "escort_present": True, "instructions_given": True},
            90,
            password=PASSWORD,
        ),
        CLINICAL,
    ),
    ("cancel before dose", _started, lambda _: c.Cancel("wrong patient"), CLINICAL),
    ("cancel after dose", _dosed, lambda _: c.Cancel("wrong patient"), PHYS),
]


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize(("name", "setup", "make", "who"), CASES, ids=[x[0] for x in CASES])
def test_role_matrix(
    role: str,
    name: str,
    setup: Setup,
    make: Callable[[object], c.Command],
    who: set[str],
) -> None:
    chair = make_chair()
    ctx = setup(chair)
    actor: Actor = ROLES[role]
    sid = chair.core.state.session_id if chair.core.state else None
    before = len(chair.repo.load(sid)) if sid else 0
    cmd = make(ctx)
    if role in who:
        chair.do(cmd, actor)
    else:
        with pytest.raises(Refused) as err:
            chair.do(cmd, actor)
        if role == "auditor":
            assert "read-only" in str(err.value)
        else:
            assert "physician" in str(err.value) or "nurse" in str(err.value)
        assert (len(chair.repo.load(sid)) if sid else 0) == before


def test_the_matrix_itself() -> None:
    assert [a for a in Action if allowed(Role.AUDITOR, a)] == [Action.REVIEW]  # reads only
    assert allowed(Role.PHYSICIAN, Action.SIGN) and not allowed(Role.NURSE, Action.SIGN)
    assert allowed(Role.ADMIN, Action.CLINIC_LIMITS) and not allowed(
        Role.NURSE, Action.CLINIC_LIMITS
    )
    assert not allowed(Role.ADMIN, Action.DOSE)
    assert allowed(Role.PHYSICIAN, Action.SESSION_LIMITS)
    assert not allowed(Role.NURSE, Action.SESSION_LIMITS)
