from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.readings import Quality, make_reading
from ketamon.domain.alarms import AlarmAction, AlarmEngine, evaluate, evaluate_bp_rise
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.thresholds import Priority, parse_profile
from ketamon.resources import read_text

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PROFILE = parse_profile(read_text("thresholds.toml"))


def r(param: str, value: float, s: float = 0, q: Quality = Quality.NONE):  # type: ignore[no-untyped-def]
    return make_reading(param, value, T0 + timedelta(seconds=s), quality=q)


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("nibp_sys", 160, None),
        ("nibp_sys", 161, ("high", Priority.MEDIUM)),
        ("nibp_sys", 90, None),
        ("nibp_sys", 89, ("low", Priority.MEDIUM)),
        ("nibp_dia", 90, None),
        ("nibp_dia", 91, ("high", Priority.MEDIUM)),
        ("hr", 120, None),
        ("hr", 121, ("high", Priority.MEDIUM)),
        ("hr", 49, ("low", Priority.MEDIUM)),
        ("spo2", 90, None),
        ("spo2", 89, ("low", Priority.MEDIUM)),
        ("spo2", 80, ("low", Priority.MEDIUM)),
        ("spo2", 79, ("low", Priority.HIGH)),
        ("rr", 5, None),
        ("rr", 4, ("low", Priority.HIGH)),
        ("rr", 30, None),
        ("rr", 31, ("high", Priority.MEDIUM)),
    ],
)
def test_limit_boundaries(param: str, value: float, expected: tuple[str, Priority] | None) -> None:
    b = evaluate(r(param, value), PROFILE)
    if expected is None:
        assert b is None
    else:
        assert b is not None
        assert (b.direction, b.priority) == expected


def test_invalid_readings_never_flag() -> None:
    assert evaluate(r("spo2", 50, q=Quality.INVALID), PROFILE) is None


@pytest.mark.parametrize(
    ("param", "value", "flag"),
    [
        ("nibp_sys", 159, False),
        ("nibp_sys", 160, True),
        ("nibp_dia", 104, False),
        ("nibp_dia", 105, True),
    ],
)
def test_bp_rise_boundaries(param: str, value: float, flag: bool) -> None:
    baseline = {"nibp_sys": 120.0, "nibp_dia": 80.0}
    b = evaluate_bp_rise(r(param, value), baseline, PROFILE)
    assert (b is not None) is flag
    if b:
        assert b.priority is Priority.MEDIUM and b.direction == "rise"


def test_medium_alarm_clears_by_itself() -> None:
    eng = AlarmEngine(PROFILE)
    ev = eng.process([r("hr", 130)])
    assert [e.action for e in ev] == [AlarmAction.RAISED]
    assert eng.process([r("hr", 131, 1)]) == []  # still active, no duplicate event
    ev = eng.process([r("hr", 80, 2)])
    assert [e.action for e in ev] == [AlarmAction.CLEARED]
    assert eng.active() == []


def test_high_alarm_latches_until_acknowledged() -> None:
    eng = AlarmEngine(PROFILE)
    ev = eng.process([r("spo2", 78)])
    assert ev[0].action is AlarmAction.RAISED and ev[0].priority is Priority.HIGH
    assert eng.process([r("spo2", 97, 5)]) == []  # back in range, but latched
    assert eng.worst() is Priority.HIGH
    ev = eng.acknowledge("spo2", T0 + timedelta(seconds=10))
    assert [e.action for e in ev] == [AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED]
    assert eng.worst() is None


def test_escalation_from_medium_to_high() -> None:
    eng = AlarmEngine(PROFILE)
    assert eng.process([r("spo2", 88)])[0].priority is Priority.MEDIUM
    ev = eng.process([r("spo2", 78, 1)])
    assert [(e.action, e.priority) for e in ev] == [(AlarmAction.ESCALATED, Priority.HIGH)]


def test_bp_rise_in_engine_uses_latest_predose_cuff_reading_as_baseline() -> None:
    eng = AlarmEngine(PROFILE)
    # Before a dose everything is pre-dose: it sets the baseline and never raises a rise.
    assert eng.process([r("nibp_sys", 150), r("nibp_dia", 80)]) == []
    assert eng.process([r("nibp_sys", 112, 60), r("nibp_dia", 70, 60)]) == []
    eng.first_dose = T0 + timedelta(seconds=120)
    assert eng.baseline == {"nibp_sys": 112, "nibp_dia": 70}
    assert eng.process([r("nibp_sys", 151, 600)]) == []  # +39
    events = eng.process([r("nibp_sys", 152, 900), r("nibp_dia", 95, 900)])
    keys = {e.key for e in events if e.key.startswith("bp_rise")}
    assert keys == {"bp_rise_nibp_sys", "bp_rise_nibp_dia"}  # +40 / +25


def test_session_clock_negative_before_dose() -> None:
    c = SessionClock(T0, T0 + timedelta(minutes=5))
    assert c.minutes(T0) == -5
    assert c.minutes(T0 + timedelta(minutes=45)) == 40
    assert c.observation_remaining_min(T0 + timedelta(minutes=65)) == 60
    assert SessionClock(T0).observation_remaining_min(T0) is None


def test_process_flagged_gives_each_reading_its_worst_breach_including_bp_rise() -> None:
    eng = AlarmEngine(PROFILE)
    eng.process([r("nibp_sys", 110), r("nibp_dia", 70)])
    eng.first_dose = T0 + timedelta(seconds=60)
    _, flags = eng.process_flagged(
        [
            r("nibp_sys", 150, 600),
            r("nibp_dia", 95, 600),
            r("hr", 70, 600),
            r("spo2", 50, 600, Quality.INVALID),
            r("spo2", 78, 601),
        ]
    )
    # sys 150: inside the limits but +40 over baseline (medium); dia 95: both (medium);
    # hr in range; an invalid reading never flags; SpO2 78 is high.
    assert flags == [2, 2, 0, 0, 3]
