"""Technical alarm decisions (clinical requirement 22): the timings, without waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketamon.domain import technical
from ketamon.domain.technical import (
    TECH_CLOCK,
    TECH_LINK,
    TECH_NIBP,
    TECH_SPO2,
    TECH_STORAGE,
    ClockWatch,
    link_flag,
    max_ages,
    nibp_flag,
    spo2_flag,
    stale_parameters,
    storage_flag,
)
from ketamon.domain.thresholds import Priority

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize(
    ("down_s", "expected"),
    [
        (0.0, None),
        (9.9, None),
        (10.0, Priority.LOW),
        (29.9, Priority.LOW),
        (30.0, Priority.MEDIUM),
        (600.0, Priority.MEDIUM),
    ],
)
def test_link_lost_is_low_at_10_s_and_medium_at_30_s(
    down_s: float, expected: Priority | None
) -> None:
    flag = link_flag(T0, at(down_s))
    assert flag.key == TECH_LINK
    assert flag.priority is expected
    if expected is not None:
        assert f"disconnected for {int(down_s)} s" in flag.message
        assert flag.message.startswith(expected.marker + " ")


def test_link_flag_clears_while_streaming_and_takes_other_delays() -> None:
    assert link_flag(None, at(1000)).priority is None
    assert not link_flag(None, at(1000)).raised
    quick = link_flag(T0, at(3), low_after_s=2, medium_after_s=5)
    assert quick.priority is Priority.LOW
    assert link_flag(T0, at(5), low_after_s=2, medium_after_s=5).priority is Priority.MEDIUM


def test_nibp_overdue_after_interval_plus_grace_from_the_last_cuff_or_the_dose() -> None:
    dose = T0
    # Nothing is due before the first dose.
    assert nibp_flag(None, None, at(3600), interval_min=15).priority is None
    # No cuff since the dose: due 15 + 2 min after it.
    assert nibp_flag(None, dose, at(17 * 60), interval_min=15).priority is None
    late = nibp_flag(None, dose, at(17 * 60 + 1), interval_min=15)
    assert late.key == TECH_NIBP and late.priority is Priority.LOW
    assert "No NIBP for 17 min" in late.message
    # Counted from the last cuff reading.
    last = at(20 * 60)
    assert nibp_flag(last, dose, at(36 * 60), interval_min=15).priority is None
    assert nibp_flag(last, dose, at(38 * 60), interval_min=15).priority is Priority.LOW
    # A 5-minute schedule is overdue sooner.
    assert nibp_flag(last, dose, at(28 * 60), interval_min=5).priority is Priority.LOW


def test_spo2_probe_off_needs_three_invalid_and_clears_on_a_valid_one() -> None:
    assert spo2_flag([]) is None  # no readings: the link alarm's business
    assert spo2_flag([True, True]) is None  # too few to decide
    off = spo2_flag([True, True, True])
    assert off is not None and off.key == TECH_SPO2 and off.priority is Priority.MEDIUM
    assert "probe off" in off.message
    back = spo2_flag([True, True, False])
    assert back is not None and back.priority is None


def test_storage_flag() -> None:
    bad = storage_flag("OperationalError: database is locked")
    assert bad.key == TECH_STORAGE and bad.priority is Priority.MEDIUM
    assert bad.message.startswith("** Storage error: readings are held, not yet saved")
    assert "database is locked" in bad.message
    assert storage_flag(None).priority is None


def test_clock_watch_flags_a_backward_step_and_clears_after_60_s() -> None:
    w = ClockWatch()
    wall, mono = 1_000_000.0, 50.0
    assert w.observe(wall, mono) is None  # first observation: nothing to compare
    assert w.observe(wall + 1.0, mono + 1.0) is None
    back = w.observe(wall + 2.0 - 120.0, mono + 2.0)  # NTP stepped the clock back 2 min
    assert back is not None and back.key == TECH_CLOCK and back.priority is Priority.MEDIUM
    assert "went back 120 s" in back.message
    assert w.flagged
    # Still flagged 59 s later; cleared at 60 s.
    assert w.observe(wall + 61.0 - 120.0, mono + 61.0) is None
    cleared = w.observe(wall + 62.0 - 120.0, mono + 62.0)
    assert cleared is not None and cleared.priority is None and not w.flagged


def test_clock_watch_tolerates_slewing_but_not_a_forward_jump() -> None:
    w = ClockWatch()
    w.observe(0.0, 0.0)
    assert w.observe(1.3, 1.0) is None  # a little fast: NTP slewing, no flag
    assert w.observe(2.0, 2.0) is None  # a little slow (0.3 s back against monotonic)
    gained = w.observe(9.0, 3.0)  # 6 s gained in 1 s: more than the 5 s tolerance
    assert gained is not None and gained.priority is Priority.MEDIUM
    w2 = ClockWatch()
    w2.observe(0.0, 0.0)
    jump = w2.observe(3600.0 + 1.0, 1.0)  # an hour ahead (time zone set wrongly as UTC)
    assert jump is not None and jump.priority is Priority.MEDIUM
    assert "jumped 3600 s ahead" in jump.message
    w2.acknowledged()
    assert not w2.flagged
    assert w2.observe(3602.0, 2.0) is None  # no change reported once acknowledged


def test_clock_watch_forward_tolerance_is_exclusive() -> None:
    w = ClockWatch(forward_tolerance_s=5.0)
    w.observe(0.0, 0.0)
    assert w.observe(6.0, 1.0) is None  # exactly 5 s ahead of monotonic
    flag = w.observe(12.5, 2.0)  # 5.5 s more
    assert flag is not None and flag.raised


def test_stale_parameters_per_parameter_ages() -> None:
    ages = max_ages(15.0)
    assert ages["hr"] == technical.CONTINUOUS_MAX_AGE_S == 10.0
    assert ages["nibp_sys"] == 17 * 60
    latest = {
        "hr": at(-5),
        "spo2": at(-11),
        "rr": at(-25),
        "nibp_sys": at(-16 * 60),
        "nibp_dia": at(-18 * 60),
        "etco2": at(-11),  # not in the table: the continuous default
    }
    assert stale_parameters(latest, T0, ages) == {"spo2", "rr", "nibp_dia", "etco2"}
    assert stale_parameters(latest, T0, 30.0) == {"nibp_sys", "nibp_dia"}
    assert stale_parameters({}, T0, ages) == set()
    assert stale_parameters({"hr": at(-10)}, T0, ages) == set()  # exactly the max age: not yet
