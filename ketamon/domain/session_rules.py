"""Dosing gates, dosing arithmetic and phases (clinical ref §1, §8 items 1–9); the discharge
criteria are in :mod:`ketamon.domain.discharge`.

Every gate returns the list of reasons it blocks, worded for the nurse; an empty list means go.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ketamon.domain.session_clock import MIN_OBSERVATION_MIN, SessionClock
from ketamon.domain.thresholds import PredoseAdvisory

ESKETAMINE_DEVICE_MG = 28.0
ESKETAMINE_DOSES_MG = (56.0, 84.0)
DEVICE_INTERVAL = timedelta(minutes=5)


class Treatment(enum.StrEnum):
    ESKETAMINE = "esketamine"
    IV_KETAMINE = "iv_ketamine"
    IM_KETAMINE = "im_ketamine"  # intramuscular, mg/kg (ketamon.domain.dosing)
    ORAL_KETAMINE = "oral_ketamine"  # oral or sublingual, mg and form
    OTHER = "other"


class Phase(enum.StrEnum):
    PRE_DOSE = "pre_dose"
    DOSING = "dosing"
    OBSERVATION = "observation"
    READY_FOR_DISCHARGE = "ready_for_discharge"
    DISCHARGED = "discharged"
    ABANDONED = "abandoned"  # ended without a discharge: cancelled, or a recording stopped

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class PrescriberDecision(enum.StrEnum):
    PROCEED = "proceed"
    DELAY = "delay"


def devices_for_dose(dose_mg: float) -> int:
    if dose_mg not in ESKETAMINE_DOSES_MG:
        raise ValueError(f"esketamine dose must be 56 or 84 mg, got {dose_mg:g}")
    return round(dose_mg / ESKETAMINE_DEVICE_MG)


def iv_dose_mg(mg_per_kg: float, weight_kg: float) -> float:
    if not 0 < weight_kg < 400:
        raise ValueError(f"weight must be between 0 and 400 kg, got {weight_kg:g}")
    if not 0 < mg_per_kg <= 5:
        raise ValueError(f"dose must be between 0 and 5 mg/kg, got {mg_per_kg:g}")
    return round(mg_per_kg * weight_kg, 1)


def iv_rate_mg_per_min(dose_mg: float, minutes: float) -> float:
    if minutes <= 0:
        raise ValueError("infusion time must be positive")
    return round(dose_mg / minutes, 2)


@dataclass(frozen=True, slots=True)
class PredoseState:
    treatment: Treatment
    bp: tuple[float, float] | None  # (sys, dia) pre-dose
    hr: float | None
    decision: PrescriberDecision | None = None  # recorded prescriber decision, if any
    physician_override: bool = False  # missing BP overridden by a physician with a reason
    rems_enrolled: bool | None = None
    first_treatment: bool = False
    escort_confirmed: bool = False


def needs_prescriber_decision(state: PredoseState, advisory: PredoseAdvisory) -> bool:
    return state.bp is not None and advisory.applies(*state.bp)


def dose_blockers(state: PredoseState, advisory: PredoseAdvisory) -> list[str]:
    """Why the first dose cannot be logged yet (empty: it can)."""
    reasons: list[str] = []
    if state.bp is None and not state.physician_override:
        reasons.append("Pre-dose blood pressure is missing (or a physician override with reason)")
    if state.hr is None and not state.physician_override:
        reasons.append("Pre-dose heart rate is missing")
    if needs_prescriber_decision(state, advisory):
        if state.decision is None:
            assert state.bp is not None
            reasons.append(
                f"Pre-dose BP {state.bp[0]:.0f}/{state.bp[1]:.0f} is above "
                f"{advisory.sys_above:.0f}/{advisory.dia_above:.0f}: record the prescriber's "
                "decision (proceed or delay)"
            )
        elif state.decision is PrescriberDecision.DELAY:
            reasons.append("The prescriber decided to delay dosing")
    if state.treatment is Treatment.ESKETAMINE and state.rems_enrolled is False:
        reasons.append("The patient is not REMS-enrolled: esketamine cannot be given")
    if state.treatment is Treatment.ESKETAMINE and state.rems_enrolled is None:
        reasons.append("Confirm the patient's REMS enrolment")
    if not state.escort_confirmed:
        reasons.append("Confirm the escort / ride home")
    return reasons


def next_device_blocker(
    device_times: Sequence[datetime], planned_devices: int, now: datetime
) -> str | None:
    """Why the next esketamine device cannot be logged now (None: it can)."""
    if len(device_times) >= planned_devices:
        return f"All {planned_devices} devices are logged"
    if device_times:
        ready = device_times[-1] + DEVICE_INTERVAL
        if now < ready:
            left = (ready - now).total_seconds()
            return (
                f"Wait {int(left // 60)}:{int(left % 60):02d} before the next device (5-min rest)"
            )
    return None


def phase(
    clock: SessionClock,
    now: datetime,
    *,
    dosing_complete: bool,
    discharged: bool,
) -> Phase:
    if discharged:
        return Phase.DISCHARGED
    if clock.first_dose is None:
        return Phase.PRE_DOSE
    if not dosing_complete:
        return Phase.DOSING
    if clock.minutes(now) >= MIN_OBSERVATION_MIN:
        return Phase.READY_FOR_DISCHARGE
    return Phase.OBSERVATION
