"""A flag reads like a monitor's: parameter, value, limit and direction; a BP rise names its
rise and the baseline it is measured from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.readings import make_reading
from ketamon.domain.alarms import AlarmEngine, evaluate, evaluate_bp_rise
from ketamon.domain.thresholds import Priority, ThresholdProfile, parse_profile
from ketamon.resources import read_text

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _profile() -> ThresholdProfile:
    return parse_profile(read_text("thresholds.toml"))


def test_a_limit_breach_reads_parameter_value_direction_and_limit() -> None:
    p = _profile()
    high = evaluate(make_reading("nibp_sys", 165, T0), p)
    low = evaluate(make_reading("spo2", 84, T0), p)
    assert high is not None and high.describe() == "** SYS 165 > 160"
    assert low is not None and low.describe() == "** SpO₂ 84 < 90"
    desat = evaluate(make_reading("spo2", 78, T0), p)
    assert desat is not None and desat.priority is Priority.HIGH
    assert desat.describe() == "*** SpO₂ 78 < 80"


def test_a_bp_rise_names_its_rise_and_the_baseline() -> None:
    rise = evaluate_bp_rise(
        make_reading("nibp_sys", 165, T0), {"nibp_sys": 124.0, "nibp_dia": 80.0}, _profile()
    )
    assert rise is not None
    assert rise.describe() == "** SYS 165: rise +41 over baseline 124 (flag at +40)"


def test_the_engine_raises_the_flag_with_that_text() -> None:
    eng = AlarmEngine(_profile())
    eng.process([make_reading("nibp_sys", 124, T0), make_reading("nibp_dia", 80, T0)])
    eng.first_dose = T0 + timedelta(minutes=1)
    events = eng.process([make_reading("nibp_sys", 165, T0 + timedelta(minutes=40))])
    texts = {e.key: e.message for e in events}
    assert texts == {
        "nibp_sys_high": "** SYS 165 > 160",
        "bp_rise_nibp_sys": "** SYS 165: rise +41 over baseline 124 (flag at +40)",
    }
