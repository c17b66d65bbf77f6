from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.readings import Quality, make_reading
from ketamon.domain.alarms import (
    ActiveAlarm,
    AlarmAction,
    AlarmEngine,
    AlarmState,
    AudioPause,
    alarm_family,
    evaluate,
    evaluate_bp_rise,
)
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.side_effects import SIDE_EFFECTS_BY_KEY, suggested_side_effects
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
    ev = eng.acknowledge("spo2_low", T0 + timedelta(seconds=10))
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


# ---- direction: low and high are distinct conditions -------------------------------------------


def test_low_and_high_breaches_are_distinct_conditions_with_a_direction() -> None:
    eng = AlarmEngine(PROFILE)
    ev = eng.process([r("nibp_sys", 85)])
    assert [(e.key, e.action, e.direction) for e in ev] == [
        ("nibp_sys_low", AlarmAction.RAISED, "low")
    ]
    ev = eng.process([r("nibp_sys", 170, 60)])
    assert [(e.key, e.action, e.direction) for e in ev] == [
        ("nibp_sys_low", AlarmAction.CLEARED, "low"),
        ("nibp_sys_high", AlarmAction.RAISED, "high"),
    ]
    assert [(a.key, a.direction) for a in eng.active()] == [("nibp_sys_high", "high")]
    ev = eng.process([r("nibp_sys", 120, 120)])
    assert [(e.key, e.action) for e in ev] == [("nibp_sys_high", AlarmAction.CLEARED)]


@pytest.mark.parametrize(
    ("param", "value", "key"),
    [
        ("spo2", 85, "spo2_low"),
        ("hr", 130, "hr_high"),
        ("hr", 40, "hr_low"),
        ("rr", 3, "rr_low"),
        ("rr", 35, "rr_high"),
        ("nibp_dia", 95, "nibp_dia_high"),
    ],
)
def test_limit_condition_keys(param: str, value: float, key: str) -> None:
    assert [e.key for e in AlarmEngine(PROFILE).process([r(param, value)])] == [key]


def test_bp_rise_events_carry_direction_rise_and_other_conditions_none() -> None:
    eng = AlarmEngine(PROFILE)
    eng.process([r("nibp_sys", 110), r("nibp_dia", 70)])
    eng.first_dose = T0 + timedelta(seconds=60)
    ev = eng.process([r("nibp_sys", 150, 600)])
    assert [(e.key, e.direction) for e in ev] == [("bp_rise_nibp_sys", "rise")]
    ev = eng.set_condition("moaas", Priority.MEDIUM, "** MOAA/S 3", T0)
    assert ev[0].direction is None


@pytest.mark.parametrize(
    ("key", "family"),
    [
        ("nibp_sys_high", "bp_high"),
        ("nibp_dia_high", "bp_high"),
        ("nibp_mean_high", "bp_high"),
        ("bp_rise_nibp_sys", "bp_high"),
        ("bp_rise_nibp_dia", "bp_high"),
        ("iv_hold_sys", "bp_high"),
        ("iv_hold_dia", "bp_high"),
        ("nibp_sys_low", "bp_low"),
        ("nibp_mean_low", "bp_low"),
        ("hr_high", "hr_high"),
        ("pr_high", "hr_high"),
        ("iv_hold_hr", "hr_high"),
        ("hr_low", "hr_low"),
        ("pr_low", "hr_low"),
        ("spo2_low", "resp"),
        ("rr_low", "resp"),
        ("rr_high", None),
        ("moaas", None),
        ("tech_link", None),
        ("hypertensive_emergency", None),
    ],
)
def test_alarm_family(key: str, family: str | None) -> None:
    assert alarm_family(key) == family


# ---- IV hold ---------------------------------------------------------------------------------


def test_iv_hold_is_evaluated_only_while_infusing_and_at_or_above() -> None:
    eng = AlarmEngine(PROFILE)
    eng.first_dose = T0
    assert not eng.infusing
    ev = eng.process([r("nibp_sys", 185, 60)])
    assert [e.key for e in ev] == ["nibp_sys_high"]  # no IV hold without an infusion
    assert eng.set_infusing(True, T0 + timedelta(minutes=2)) == []
    assert eng.infusing
    ev = eng.process([r("nibp_sys", 179, 180)])
    assert "iv_hold_sys" not in {e.key for e in ev}
    ev, flags = eng.process_flagged([r("nibp_sys", 180, 240)])
    hold = [e for e in ev if e.key == "iv_hold_sys"]
    assert [(e.action, e.priority, e.direction) for e in hold] == [
        (AlarmAction.RAISED, Priority.HIGH, "high")
    ]
    assert hold[0].message == "*** IV hold: systolic 180 ≥ 180 (site protocol)"
    assert flags == [3]  # the chart flag includes the IV hold (high), not just the medium limit


def test_iv_hold_diastolic_and_heart_rate() -> None:
    eng = AlarmEngine(PROFILE)
    eng.set_infusing(True, T0)
    keys = {e.key for e in eng.process([r("nibp_dia", 100), r("hr", 110)])}
    assert {"iv_hold_dia", "iv_hold_hr"} <= keys
    msgs = {a.key: a.message for a in eng.active()}
    assert msgs["iv_hold_dia"] == "*** IV hold: diastolic 100 ≥ 100 (site protocol)"
    assert "110 ≥ 110" in msgs["iv_hold_hr"]


def test_iv_hold_hr_shared_by_hr_and_pr_does_not_flap() -> None:
    eng = AlarmEngine(PROFILE, latch_high=False)
    eng.set_infusing(True, T0)
    assert [e.key for e in eng.process([r("hr", 112)])] == ["iv_hold_hr"]
    assert eng.process([r("pr", 100, 1)]) == []  # HR still ≥ 110: the condition stays
    ev = eng.process([r("hr", 100, 2)])
    assert [(e.key, e.action) for e in ev] == [("iv_hold_hr", AlarmAction.CLEARED)]


def test_stopping_the_infusion_clears_iv_hold_respecting_latching() -> None:
    eng = AlarmEngine(PROFILE)  # high latches
    eng.set_infusing(True, T0)
    eng.process([r("nibp_sys", 190)])
    assert eng.set_infusing(False, T0 + timedelta(minutes=1)) == []  # latched, not cleared
    assert not eng.infusing
    latched = [a for a in eng.active() if a.key == "iv_hold_sys"]
    assert latched and latched[0].state is AlarmState.LATCHED
    ev = eng.process([r("nibp_sys", 195, 120)])  # no infusion: the hold is not evaluated
    assert all(e.key != "iv_hold_sys" for e in ev)
    ev = eng.acknowledge("iv_hold_sys", T0 + timedelta(minutes=3))
    assert [e.action for e in ev] == [AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED]

    eng = AlarmEngine(PROFILE, latch_high=False)
    eng.set_infusing(True, T0)
    eng.process([r("nibp_sys", 190)])
    ev = eng.set_infusing(False, T0 + timedelta(minutes=1))
    assert [(e.key, e.action) for e in ev] == [("iv_hold_sys", AlarmAction.CLEARED)]


def test_profile_without_iv_hold_never_raises_it() -> None:
    text = read_text("thresholds.toml")
    profile = parse_profile(text[: text.index("[iv_hold]")])
    assert profile.iv_hold is None
    eng = AlarmEngine(profile)
    eng.set_infusing(True, T0)
    assert all(not e.key.startswith("iv_hold") for e in eng.process([r("nibp_sys", 200)]))


# ---- ALARM RESET, clear_all, snapshot/restore -----------------------------------------------


def test_reset_ends_latched_conditions_and_leaves_existing_ones() -> None:
    eng = AlarmEngine(PROFILE)
    eng.process([r("spo2", 78), r("rr", 3)])
    eng.process([r("spo2", 97, 5)])  # SpO2 back in range: latched; RR still low
    ev = eng.reset(T0 + timedelta(seconds=10))
    assert [(e.key, e.action) for e in ev] == [
        ("spo2_low", AlarmAction.RESET),
        ("spo2_low", AlarmAction.CLEARED),
    ]
    assert [(a.key, a.state) for a in eng.active()] == [("rr_low", AlarmState.ACTIVE)]
    assert eng.reset(T0 + timedelta(seconds=11)) == []


def test_reset_key_clears_a_condition_even_if_it_still_exists() -> None:
    eng = AlarmEngine(PROFILE)
    eng.set_condition("hypertensive_emergency", Priority.HIGH, "*** escalate", T0)
    ev = eng.reset_key("hypertensive_emergency", T0 + timedelta(minutes=5))
    assert [(e.key, e.action, e.priority) for e in ev] == [
        ("hypertensive_emergency", AlarmAction.RESET, Priority.HIGH),
        ("hypertensive_emergency", AlarmAction.CLEARED, Priority.HIGH),
    ]
    assert eng.active() == []
    assert eng.reset_key("hypertensive_emergency", T0) == []


def test_clear_all_ends_every_condition_at_discharge() -> None:
    eng = AlarmEngine(PROFILE)
    eng.process([r("spo2", 78), r("hr", 130)])
    eng.process([r("spo2", 97, 5)])  # latched
    eng.set_condition("tech_link", Priority.MEDIUM, "** link", T0, technical=True)
    ev = eng.clear_all(T0 + timedelta(minutes=1))
    assert {e.key for e in ev} == {"spo2_low", "hr_high", "tech_link"}
    assert all(e.action is AlarmAction.CLEARED for e in ev)
    assert [e.technical for e in ev if e.key == "tech_link"] == [True]
    assert eng.active() == [] and eng.worst() is None


def test_snapshot_and_restore_continue_without_events() -> None:
    eng = AlarmEngine(PROFILE)
    eng.process([r("spo2", 78), r("hr", 130), r("nibp_sys", 85)])
    eng.process([r("spo2", 97, 5)])  # latched
    eng.acknowledge("hr_high", T0 + timedelta(seconds=6))
    eng.set_condition("tech_link", Priority.MEDIUM, "** link", T0, technical=True)
    snap = eng.snapshot()
    assert all(isinstance(a, ActiveAlarm) for a in snap)

    fresh = AlarmEngine(PROFILE)
    assert fresh.restore(snap) is None
    assert fresh.snapshot() == snap
    # the restored state behaves like the original: no duplicate RAISED for what is active …
    assert fresh.process([r("hr", 131, 10)]) == []
    # … the latched high one waits for acknowledgement …
    ev = fresh.acknowledge("spo2_low", T0 + timedelta(seconds=11))
    assert [e.action for e in ev] == [AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED]
    # … and an active one clears with its direction.
    ev = fresh.process([r("nibp_sys", 120, 12)])
    assert [(e.key, e.action, e.direction) for e in ev] == [
        ("nibp_sys_low", AlarmAction.CLEARED, "low")
    ]


# ---- AUDIO PAUSED ---------------------------------------------------------------------------


def test_audio_pause_length_and_a_new_high_flag_ends_it() -> None:
    pause = AudioPause(60.0)
    pause.toggle(100.0)
    assert pause.paused(159.0) and not pause.paused(160.0)
    assert pause.new_flag(Priority.MEDIUM, 110.0) is False  # silenced
    assert pause.paused(110.0)
    assert pause.new_flag(Priority.HIGH, 111.0) is True  # a new high flag ends the pause
    assert not pause.paused(111.0)
    pause.toggle(200.0)
    pause.toggle(201.0)  # a second press ends it
    assert not pause.paused(202.0)


def test_side_effect_suggestions_follow_the_direction_of_the_flag() -> None:
    eng = AlarmEngine(PROFILE)
    low = eng.process([r("nibp_sys", 80), r("hr", 40), r("spo2", 85)])
    families = {alarm_family(e.key) for e in low} - {None}
    assert families == {"bp_low", "hr_low", "resp"}
    assert suggested_side_effects(families) == []  # low BP / low HR suggest nothing
    high = eng.process([r("nibp_sys", 170, 60), r("hr", 130, 60)])
    families = {f for e in high if (f := alarm_family(e.key)) is not None}
    assert suggested_side_effects(families) == ["bp_increased", "tachycardia"]
    assert suggested_side_effects(["bp_high"]) == ["bp_increased"]
    crisis = SIDE_EFFECTS_BY_KEY["hypertensive_crisis"]
    assert crisis.serious and crisis.suggested_by == "bp_high"  # serious: never pre-ticked
    assert suggested_side_effects({"bp", "hr"}) == []  # the old undirected families are gone
