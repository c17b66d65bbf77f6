"""What is due at a chair: pre-dose BP, the ~40-minute BP, periodic vitals, MOAA/S and CADSS.

Pure functions of the session clock, the times things were recorded, and the configuration
(:class:`PromptConfig`, normally from the site profile: ``SiteProfile.prompt_config()``).
Times are session minutes (minutes since the first dose; negative before it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ketamon.domain.session_clock import MIN_OBSERVATION_MIN, SessionClock


class PromptKind(enum.StrEnum):
    PREDOSE_BP = "predose_bp"
    BP_40 = "bp_40"
    VITALS = "vitals"
    MOAAS = "moaas"
    CADSS = "cadss"


class PromptState(enum.StrEnum):
    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class PromptConfig:
    bp40_window_min: tuple[float, float] = (35.0, 45.0)
    vitals_interval_min: float = 15.0  # allowed 5-30
    vitals_grace_min: float = 5.0  # due → overdue after this
    scale_times_min: tuple[float, ...] = (40.0, 90.0)  # plus pre-dose and before discharge
    scale_early_min: float = 5.0  # an entry this early counts for the time point
    scale_grace_min: float = 10.0
    #: the before-discharge MOAA/S and CADSS are due this long before the minimum observation
    #: ends (105 min by default), and stay due until discharge
    predischarge_lead_min: float = 15.0
    min_observation_min: float = MIN_OBSERVATION_MIN

    def __post_init__(self) -> None:
        if not 5.0 <= self.vitals_interval_min <= 30.0:
            raise ValueError(f"vitals interval must be 5-30 min, got {self.vitals_interval_min:g}")
        lo, hi = self.bp40_window_min
        if not 0 < lo < hi:
            raise ValueError(f"40-min BP window must be 0 < start < end, got {lo:g}-{hi:g}")
        if not 0 <= self.predischarge_lead_min < self.min_observation_min:
            raise ValueError(
                "before-discharge lead must be 0 or more and below the minimum observation, "
                f"got {self.predischarge_lead_min:g}"
            )

    @property
    def predischarge_due_min(self) -> float:
        return self.min_observation_min - self.predischarge_lead_min


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: PromptKind
    label: str
    due_min: float
    state: PromptState
    detail: str = ""

    @property
    def open(self) -> bool:
        return self.state in (PromptState.DUE, PromptState.OVERDUE)


@dataclass(frozen=True, slots=True)
class Recorded:
    """Session-minute times of what has been recorded so far."""

    bp: Sequence[float] = field(default=())
    moaas: Sequence[float] = field(default=())
    cadss: Sequence[float] = field(default=())
    bp40_reason: bool = False  # a reason was entered instead of the 40-min reading


def _any_in(times: Sequence[float], lo: float, hi: float) -> bool:
    return any(lo <= t <= hi for t in times)


def _scale_prompt(
    kind: PromptKind, name: str, times: Sequence[float], at: float, now: float, cfg: PromptConfig
) -> Prompt:
    label = f"{name} at {at:g} min"
    if _any_in(times, at - cfg.scale_early_min, float("inf")):
        return Prompt(kind, label, at, PromptState.DONE)
    if now < at - cfg.scale_early_min:
        return Prompt(kind, label, at, PromptState.UPCOMING)
    if now <= at + cfg.scale_grace_min:
        return Prompt(kind, label, at, PromptState.DUE)
    return Prompt(kind, label, at, PromptState.OVERDUE, f"{now - at:.0f} min late")


def prompts(
    clock: SessionClock, now: datetime, rec: Recorded, cfg: PromptConfig | None = None
) -> list[Prompt]:
    """Every prompt with its state, open ones first, then by due time."""
    cfg = cfg or PromptConfig()
    t = clock.minutes(now)
    out: list[Prompt] = []
    if clock.first_dose is None:
        # Before the dose everything recorded so far is pre-dose.
        for kind, label, times in (
            (PromptKind.PREDOSE_BP, "Pre-dose BP and HR", rec.bp),
            (PromptKind.MOAAS, "Pre-dose MOAA/S", rec.moaas),
            (PromptKind.CADSS, "Pre-dose CADSS", rec.cadss),
        ):
            state = PromptState.DONE if times else PromptState.DUE
            out.append(Prompt(kind, label, t, state))
        return _order(out)

    lo, hi = cfg.bp40_window_min
    label = f"BP at ~40 min ({lo:g}–{hi:g})"
    if rec.bp40_reason or _any_in(rec.bp, lo, hi):
        out.append(Prompt(PromptKind.BP_40, label, 40.0, PromptState.DONE))
    elif t < lo:
        out.append(Prompt(PromptKind.BP_40, label, 40.0, PromptState.UPCOMING))
    elif t <= hi:
        out.append(Prompt(PromptKind.BP_40, label, 40.0, PromptState.DUE))
    else:
        out.append(
            Prompt(
                PromptKind.BP_40,
                label,
                40.0,
                PromptState.OVERDUE,
                "no reading in the window: record one or give a reason",
            )
        )

    n = cfg.vitals_interval_min
    slot = (t // n) * n
    if slot >= n:
        label = f"Vitals at {slot:g} min"
        if _any_in(rec.bp, slot - n / 2, float("inf")):
            out.append(Prompt(PromptKind.VITALS, label, slot, PromptState.DONE))
        elif t - slot <= cfg.vitals_grace_min:
            out.append(Prompt(PromptKind.VITALS, label, slot, PromptState.DUE))
        else:
            out.append(
                Prompt(
                    PromptKind.VITALS, label, slot, PromptState.OVERDUE, f"{t - slot:.0f} min late"
                )
            )
    nxt = slot + n
    out.append(Prompt(PromptKind.VITALS, f"Vitals at {nxt:g} min", nxt, PromptState.UPCOMING))

    for at in cfg.scale_times_min:
        out.append(_scale_prompt(PromptKind.MOAAS, "MOAA/S", rec.moaas, at, t, cfg))
        out.append(_scale_prompt(PromptKind.CADSS, "CADSS", rec.cadss, at, t, cfg))
    at = cfg.predischarge_due_min
    out.append(_predischarge_prompt(PromptKind.MOAAS, "MOAA/S", rec.moaas, at, t))
    out.append(_predischarge_prompt(PromptKind.CADSS, "CADSS", rec.cadss, at, t))
    return _order(out)


def _predischarge_prompt(
    kind: PromptKind, name: str, times: Sequence[float], at: float, now: float
) -> Prompt:
    """Due from ``at`` until discharge (never overdue: discharge waits for it); done by a
    rating recorded at or after ``at``."""
    label = f"{name} before discharge"
    if _any_in(times, at, float("inf")):
        return Prompt(kind, label, at, PromptState.DONE)
    if now < at:
        return Prompt(kind, label, at, PromptState.UPCOMING)
    return Prompt(kind, label, at, PromptState.DUE)


def _order(ps: list[Prompt]) -> list[Prompt]:
    rank = {
        PromptState.OVERDUE: 0,
        PromptState.DUE: 1,
        PromptState.UPCOMING: 2,
        PromptState.DONE: 3,
    }
    return sorted(ps, key=lambda p: (rank[p.state], p.due_min))


def next_due(ps: Sequence[Prompt]) -> Prompt | None:
    """The most pressing open prompt, else the next upcoming one."""
    for p in ps:
        if p.state is not PromptState.DONE:
            return p
    return None


def discharge_countdown_min(
    clock: SessionClock, now: datetime, cfg: PromptConfig | None = None
) -> float | None:
    if clock.first_dose is None:
        return None
    minimum = cfg.min_observation_min if cfg is not None else MIN_OBSERVATION_MIN
    return max(0.0, minimum - clock.minutes(now))
