from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketamon.domain.prompts import (
    PromptConfig,
    PromptKind,
    PromptState,
    Recorded,
    next_due,
    prompts,
)
from ketamon.domain.scales import (
    CADSS_ITEMS,
    cadss_item_label,
    cadss_score,
    moaas_priority,
)
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.session_rules import (
    Phase,
    PredoseState,
    PrescriberDecision,
    Treatment,
    devices_for_dose,
    dose_blockers,
    iv_dose_mg,
    iv_rate_mg_per_min,
    next_device_blocker,
    phase,
)
from ketamon.domain.side_effects import SIDE_EFFECTS, suggested_side_effects
from ketamon.domain.thresholds import PredoseAdvisory

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ADV = PredoseAdvisory(140, 90, "label")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ---- scales ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "prio"),
    [(0, "high"), (1, "high"), (2, "medium"), (3, "medium"), (4, None), (5, None)],
)
def test_moaas_priority_boundaries(score: int, prio: str | None) -> None:
    assert moaas_priority(score) == prio


def test_moaas_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="0-5"):
        moaas_priority(6)


def test_cadss_total_change_and_neutral_labels() -> None:
    pre = cadss_score(dict.fromkeys(range(1, CADSS_ITEMS + 1), 0))
    assert pre.total == 0 and not pre.dissociation
    items = dict.fromkeys(range(1, CADSS_ITEMS + 1), 0)
    items[3], items[21] = 4, 1
    post = cadss_score(items, predose_total=0)
    assert (post.total, post.change_from_predose, post.dissociation) == (5, 5, True)
    items[21] = 0
    assert not cadss_score(items, predose_total=0).dissociation  # total 4 is not > 4
    assert cadss_score(dict.fromkeys(range(1, 24), 4)).total == 92
    assert cadss_item_label(1) == "Item 1 (subjective)"
    assert cadss_item_label(20) == "Item 20 (observer)"


def test_cadss_rejects_missing_and_bad_scores() -> None:
    with pytest.raises(ValueError, match="not scored: 23"):
        cadss_score(dict.fromkeys(range(1, 23), 0))
    bad = dict.fromkeys(range(1, 24), 0)
    bad[5] = 5
    with pytest.raises(ValueError, match="item 5: score must be 0-4"):
        cadss_score(bad)


def test_side_effects_in_label_order_with_serious_items_and_suggestions() -> None:
    keys = [s.key for s in SIDE_EFFECTS]
    assert keys[:3] == ["dissociation", "dizziness", "nausea"]
    assert keys.index("bp_increased") < keys.index("tachycardia")
    assert {s.key for s in SIDE_EFFECTS if s.serious} >= {
        "respiratory_depression",
        "loss_of_consciousness",
        "hypertensive_crisis",
        "psychosis",
        "suicidality",
    }
    assert suggested_side_effects({"bp_high"}) == ["bp_increased"]
    assert suggested_side_effects({"bp_high", "hr_high"}) == ["bp_increased", "tachycardia"]
    assert suggested_side_effects({"bp_low", "hr_low"}) == []


# ---- dosing gates ---------------------------------------------------------------------------


def ok_state(**kw: object) -> PredoseState:
    base: dict[str, object] = dict(
        treatment=Treatment.ESKETAMINE,
        bp=(130.0, 80.0),
        hr=70.0,
        rems_enrolled=True,
        escort_confirmed=True,
    )
    base.update(kw)
    return PredoseState(**base)  # type: ignore[arg-type]


def test_dose_allowed_when_everything_is_recorded() -> None:
    assert dose_blockers(ok_state(), ADV) == []


def test_missing_predose_bp_blocks_unless_physician_override() -> None:
    assert any("blood pressure is missing" in r for r in dose_blockers(ok_state(bp=None), ADV))
    assert dose_blockers(ok_state(bp=None, hr=None, physician_override=True), ADV) == []


@pytest.mark.parametrize(
    ("bp", "needs"), [((140, 90), False), ((141, 80), True), ((130, 91), True)]
)
def test_predose_advisory_boundary_needs_prescriber_decision(
    bp: tuple[float, float], needs: bool
) -> None:
    blockers = dose_blockers(ok_state(bp=bp), ADV)
    assert any("prescriber" in r for r in blockers) is needs
    assert dose_blockers(ok_state(bp=bp, decision=PrescriberDecision.PROCEED), ADV) == []
    if needs:
        assert any(
            "delay" in r
            for r in dose_blockers(ok_state(bp=bp, decision=PrescriberDecision.DELAY), ADV)
        )


def test_rems_enrolment_is_a_hard_stop_for_esketamine_only() -> None:
    assert any("REMS" in r for r in dose_blockers(ok_state(rems_enrolled=False), ADV))
    assert dose_blockers(ok_state(treatment=Treatment.IV_KETAMINE, rems_enrolled=None), ADV) == []


def test_esketamine_devices_and_five_minute_rest() -> None:
    assert devices_for_dose(56) == 2 and devices_for_dose(84) == 3
    with pytest.raises(ValueError):
        devices_for_dose(70)
    assert next_device_blocker([], 2, at(0)) is None
    assert "Wait 4:59" in (next_device_blocker([at(0)], 2, at(0) + timedelta(seconds=1)) or "")
    assert next_device_blocker([at(0)], 2, at(5)) is None
    assert "All 2" in (next_device_blocker([at(0), at(5)], 2, at(11)) or "")


def test_iv_dose_from_weight() -> None:
    assert iv_dose_mg(0.5, 80) == 40.0
    assert iv_rate_mg_per_min(40.0, 40) == 1.0
    with pytest.raises(ValueError, match="weight"):
        iv_dose_mg(0.5, 0)


# ---- prompts --------------------------------------------------------------------------------


def states(ps: list, kind: PromptKind) -> list[PromptState]:  # type: ignore[type-arg]
    return [p.state for p in ps if p.kind is kind]


def test_predose_prompts_until_recorded() -> None:
    clock = SessionClock(T0)
    ps = prompts(clock, at(3), Recorded())
    assert {p.kind for p in ps if p.state is PromptState.DUE} == {
        PromptKind.PREDOSE_BP,
        PromptKind.MOAAS,
        PromptKind.CADSS,
    }
    ps = prompts(clock, at(3), Recorded(bp=[-1.0], moaas=[-1.0], cadss=[-1.0]))
    assert all(p.state is PromptState.DONE for p in ps)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (34.9, PromptState.UPCOMING),
        (35.0, PromptState.DUE),
        (45.0, PromptState.DUE),
        (45.1, PromptState.OVERDUE),
    ],
)
def test_bp40_window_boundaries(now: float, state: PromptState) -> None:
    clock = SessionClock(at(-10), at(0))
    assert states(prompts(clock, at(now), Recorded()), PromptKind.BP_40) == [state]


def test_bp40_done_by_reading_in_window_or_reason_and_not_by_one_outside() -> None:
    clock = SessionClock(at(-10), at(0))
    assert states(prompts(clock, at(50), Recorded(bp=[34.0, 46.0])), PromptKind.BP_40) == [
        PromptState.OVERDUE
    ]
    assert states(prompts(clock, at(50), Recorded(bp=[41.0])), PromptKind.BP_40) == [
        PromptState.DONE
    ]
    assert states(prompts(clock, at(50), Recorded(bp40_reason=True)), PromptKind.BP_40) == [
        PromptState.DONE
    ]


def test_bp40_window_is_configurable() -> None:
    clock = SessionClock(at(-10), at(0))
    cfg = PromptConfig(bp40_window_min=(30, 50))
    assert states(prompts(clock, at(48), Recorded(), cfg), PromptKind.BP_40) == [PromptState.DUE]


def test_periodic_vitals_due_then_overdue() -> None:
    clock = SessionClock(at(-10), at(0))
    vit = states(prompts(clock, at(16), Recorded(bp=[1.0])), PromptKind.VITALS)
    assert PromptState.DUE in vit
    vit = states(prompts(clock, at(21), Recorded(bp=[1.0])), PromptKind.VITALS)
    assert PromptState.OVERDUE in vit
    vit = states(prompts(clock, at(21), Recorded(bp=[14.0])), PromptKind.VITALS)
    assert PromptState.DONE in vit
    with pytest.raises(ValueError, match="5-30"):
        PromptConfig(vitals_interval_min=45)


def test_scale_prompts_at_40_and_90_minutes() -> None:
    clock = SessionClock(at(-10), at(0))
    ps = prompts(clock, at(41), Recorded())
    due = [p for p in ps if p.kind is PromptKind.MOAAS and p.open]
    assert [p.due_min for p in due] == [40.0]
    ps = prompts(clock, at(51), Recorded())
    assert [p.state for p in ps if p.kind is PromptKind.MOAAS and p.due_min == 40] == [
        PromptState.OVERDUE
    ]
    nd = next_due(ps)
    assert nd is not None and nd.state is PromptState.OVERDUE


# ---- phase and discharge --------------------------------------------------------------------


def test_phases() -> None:
    pre = SessionClock(T0)
    assert phase(pre, at(1), dosing_complete=False, discharged=False) is Phase.PRE_DOSE
    c = SessionClock(T0, at(5))
    assert phase(c, at(7), dosing_complete=False, discharged=False) is Phase.DOSING
    assert phase(c, at(100), dosing_complete=True, discharged=False) is Phase.OBSERVATION
    assert phase(c, at(125), dosing_complete=True, discharged=False) is Phase.READY_FOR_DISCHARGE
    assert phase(c, at(125), dosing_complete=True, discharged=True) is Phase.DISCHARGED
