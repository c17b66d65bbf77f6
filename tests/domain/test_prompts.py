from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketamon.domain.prompts import (
    Prompt,
    PromptConfig,
    PromptKind,
    PromptState,
    Recorded,
    discharge_countdown_min,
    prompts,
)
from ketamon.domain.session_clock import SessionClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CLOCK = SessionClock(T0 - timedelta(minutes=10), T0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def predischarge(ps: list[Prompt]) -> dict[PromptKind, Prompt]:
    return {p.kind: p for p in ps if p.label.endswith("before discharge")}


@pytest.mark.parametrize(
    ("now", "state"),
    [(100.0, PromptState.UPCOMING), (105.0, PromptState.DUE), (200.0, PromptState.DUE)],
)
def test_before_discharge_scales_are_due_from_105_min_until_discharge(
    now: float, state: PromptState
) -> None:
    got = predischarge(prompts(CLOCK, at(now), Recorded()))
    assert set(got) == {PromptKind.MOAAS, PromptKind.CADSS}
    assert got[PromptKind.MOAAS].label == "MOAA/S before discharge"
    assert got[PromptKind.CADSS].label == "CADSS before discharge"
    assert {p.state for p in got.values()} == {state}
    assert {p.due_min for p in got.values()} == {105.0}


def test_before_discharge_scale_is_done_only_by_a_rating_at_or_after_its_due_time() -> None:
    got = predischarge(prompts(CLOCK, at(110), Recorded(moaas=[95.0, 104.9], cadss=[105.0])))
    assert got[PromptKind.MOAAS].state is PromptState.DUE
    assert got[PromptKind.CADSS].state is PromptState.DONE


def test_before_discharge_time_follows_the_config() -> None:
    cfg = PromptConfig(min_observation_min=180, predischarge_lead_min=20)
    got = predischarge(prompts(CLOCK, at(150), Recorded(), cfg))
    assert {p.due_min for p in got.values()} == {160.0}
    assert {p.state for p in got.values()} == {PromptState.UPCOMING}
    assert discharge_countdown_min(CLOCK, at(150), cfg) == 30
    assert discharge_countdown_min(CLOCK, at(150)) == 0


def test_timings_come_from_the_config() -> None:
    cfg = PromptConfig(vitals_interval_min=10, vitals_grace_min=2, scale_times_min=(30.0,))
    ps = prompts(CLOCK, at(13), Recorded(), cfg)
    vit = [p for p in ps if p.kind is PromptKind.VITALS and p.open]
    assert [(p.due_min, p.state) for p in vit] == [(10.0, PromptState.OVERDUE)]
    scales = {p.due_min for p in ps if p.kind is PromptKind.MOAAS}
    assert scales == {30.0, 105.0}
    with pytest.raises(ValueError, match="before-discharge lead"):
        PromptConfig(predischarge_lead_min=130)


def test_no_before_discharge_prompt_before_the_dose() -> None:
    ps = prompts(SessionClock(T0), at(1), Recorded())
    assert predischarge(ps) == {}
