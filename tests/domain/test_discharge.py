"""Discharge criteria and REMS answers as pure functions of a session state (§8 items 9-12, 30)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketamon.domain.discharge import Criterion, discharge_bp_limit, unmet_criteria
from ketamon.domain.record import EntryKind, SessionEntry, fold
from ketamon.domain.thresholds import parse_profile
from ketamon.resources import read_text

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PROFILE = parse_profile(read_text("thresholds.toml"), "thresholds.toml")
OK = {"steady_gait": True, "escort_present": True, "instructions_given": True}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def entry(i: int, kind: EntryKind, minutes: float, **data: object) -> SessionEntry:
    return SessionEntry(i, 1, kind, at(minutes), 10, "Nina Nurse", data)


def session(*extra: SessionEntry, baseline: list[float] | None = None):  # type: ignore[no-untyped-def]
    started = entry(
        1,
        EntryKind.STARTED,
        -10,
        chair="Chair 1",
        patient={"mrn": "M1", "first_name": "A", "last_name": "B"},
        plan={"treatment": "esketamine", "dose_mg": 56.0},
    )
    dose = entry(2, EntryKind.DEVICE, 0, number=1, mg=28.0, lot="L", baseline=baseline)
    state = fold([started, dose, *extra])
    assert state is not None
    return state


def latest(minutes: float, **values: float) -> dict[str, tuple[float, datetime]]:
    base = {"spo2": 97.0, "rr": 14.0, "nibp_sys": 124.0, "nibp_dia": 78.0}
    base.update(values)
    return {k: (v, at(minutes)) for k, v in base.items()}


def criteria(state, now: float, **kw: object) -> set[str]:  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"checklist": OK, "ready_to_leave_min": 90}
    args.update(kw)
    unmet = unmet_criteria(
        state,
        at(now),
        args.pop("latest", latest(now - 1)),  # type: ignore[arg-type]
        PROFILE,
        min_observation_min=120,
        **args,  # type: ignore[arg-type]
    )
    return {u.criterion for u in unmet}


MOAAS5 = entry(3, EntryKind.MOAAS, 110, score=5)


@pytest.mark.parametrize(("minutes", "blocked"), [(119.9, True), (120.0, False)])
def test_the_minimum_observation_is_120_minutes(minutes: float, blocked: bool) -> None:
    assert (Criterion.MIN_OBSERVATION in criteria(session(MOAAS5), minutes)) is blocked


def test_all_met() -> None:
    assert criteria(session(MOAAS5), 125) == set()


def test_latest_moaas_must_be_5_and_a_missing_rating_counts() -> None:
    assert Criterion.MOAAS in criteria(session(), 125)
    assert Criterion.MOAAS in criteria(
        session(MOAAS5, entry(4, EntryKind.MOAAS, 115, score=4)), 125
    )
    rass0 = entry(3, EntryKind.RASS, 110, score=0)
    assert Criterion.MOAAS not in criteria(session(rass0), 125)


def test_an_active_high_priority_flag_blocks() -> None:
    flag = entry(
        4, EntryKind.ALARM, 60, key="spo2_low", action="raised", priority="high", message="x"
    )
    assert Criterion.HIGH_FLAG in criteria(session(MOAAS5, flag), 125)
    cleared = entry(5, EntryKind.ALARM, 61, key="spo2_low", action="cleared", priority="high")
    assert Criterion.HIGH_FLAG not in criteria(session(MOAAS5, flag, cleared), 125)


def test_spo2_rr_and_bp_from_the_latest_values() -> None:
    s = session(MOAAS5)
    assert Criterion.SPO2 in criteria(s, 125, latest=latest(124, spo2=88))
    assert Criterion.RR in criteria(s, 125, latest=latest(124, rr=4))
    assert Criterion.BP in criteria(s, 125, latest=latest(124, nibp_sys=150))
    # a BP taken before dosing does not count as the end BP
    assert Criterion.BP in criteria(s, 125, latest=latest(-5))


def test_the_discharge_bp_limit_is_the_advisory_or_the_patients_own_baseline() -> None:
    assert discharge_bp_limit(session(), PROFILE) == (140.0, 90.0)
    high = session(baseline=[150.0, 95.0])
    assert discharge_bp_limit(high, PROFILE) == (150.0, 95.0)
    assert Criterion.BP not in criteria(
        session(MOAAS5, baseline=[150.0, 95.0]), 125, latest=latest(124, nibp_sys=148)
    )


def test_ongoing_dissociation_blocks() -> None:
    items = {str(i): 1 for i in range(1, 11)}
    cadss = entry(4, EntryKind.CADSS, 100, items=items)
    assert Criterion.DISSOCIATION in criteria(session(MOAAS5, cadss), 125)


def test_checklist_and_ready_to_leave_are_not_overridable() -> None:
    unmet = unmet_criteria(
        session(MOAAS5),
        at(125),
        latest(124),
        PROFILE,
        min_observation_min=120,
        checklist={},
        ready_to_leave_min=None,
    )
    assert {u.criterion for u in unmet} == {Criterion.CHECKLIST, Criterion.READY}
    assert not any(u.overridable for u in unmet)
