"""Discharge criteria computed from the record (clinical.md §8 items 9–12) and the REMS Patient
Monitoring Form answers derived from it (§1.4, §8 item 30).

The label sets no numeric discharge criteria: these are what clinics combine (§1.1). Each unmet
criterion is listed, worded for the nurse; a physician may accept them with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ketamon.domain.record import EntryKind, SessionState
from ketamon.domain.scales import CADSS_DISSOCIATION_TOTAL
from ketamon.domain.thresholds import ThresholdProfile

#: the latest value of a parameter and when it was taken
Latest = Mapping[str, tuple[float, datetime]]


class Criterion:
    MIN_OBSERVATION = "min_observation"
    MOAAS = "moaas"
    HIGH_FLAG = "high_flag"
    SYMPTOMS = "symptoms"
    SPO2 = "spo2"
    RR = "rr"
    BP = "bp"
    DISSOCIATION = "dissociation"
    CHECKLIST = "checklist"
    READY = "ready_to_leave"


@dataclass(frozen=True, slots=True)
class Unmet:
    criterion: str
    text: str
    #: a physician may accept it (all but the missing answers and checklist ticks)
    overridable: bool = True


CHECKLIST_LABELS: dict[str, str] = {
    "steady_gait": "Steady gait",
    "escort_present": "Escort / ride home present",
    "instructions_given": "Told: no driving or machinery until the next day after sleep",
}


def _in_limits(profile: ThresholdProfile, parameter: str, value: float) -> str | None:
    for lim in profile.limits_for(parameter):
        d = lim.breached_by(value)
        if d is not None:
            bound = lim.low if d == "low" else lim.high
            word = "below" if d == "low" else "above"
            return f"{value:g} is {word} the limit {bound:g}"
    return None


def discharge_bp_limit(state: SessionState, profile: ThresholdProfile) -> tuple[float, float]:
    """BP at or below which the patient may leave: the pre-dose advisory, or the patient's own
    pre-dose baseline when that was higher (and dosing went ahead with it)."""
    adv = profile.predose_advisory
    sys, dia = adv.sys_above, adv.dia_above
    if state.baseline is not None:
        sys, dia = max(sys, state.baseline[0]), max(dia, state.baseline[1])
    return sys, dia


def unmet_criteria(
    state: SessionState,
    now: datetime,
    latest: Latest,
    profile: ThresholdProfile,
    *,
    min_observation_min: float,
    checklist: Mapping[str, bool],
    ready_to_leave_min: int | None,
) -> list[Unmet]:
    """Every discharge criterion not met now, all at once."""
    out: list[Unmet] = []
    if state.first_dose is None:
        return [Unmet("dose", "No dose has been logged", overridable=False)]
    elapsed = (now - state.first_dose).total_seconds() / 60.0
    if elapsed < min_observation_min:
        out.append(
            Unmet(
                Criterion.MIN_OBSERVATION,
                f"Only {elapsed:.0f} of {min_observation_min:.0f} min observed",
            )
        )
    moaas, rass = state.latest_moaas, state.latest_rass
    if moaas is None and rass is None:
        out.append(Unmet(Criterion.MOAAS, "No MOAA/S (or RASS) recorded: rate sedation first"))
    elif moaas is not None and moaas != 5:
        out.append(Unmet(Criterion.MOAAS, f"Latest MOAA/S is {moaas}, not 5 (alert)"))
    elif moaas is None and rass != 0:
        out.append(Unmet(Criterion.MOAAS, f"Latest RASS is {rass}, not 0 (alert and calm)"))
    if state.symptom_check_pending:
        out.append(
            Unmet(
                Criterion.SYMPTOMS,
                "Ask the symptom questions after the high BP first",
                overridable=False,
            )
        )
    high = [a for a in state.alarms.values() if a.priority == "high"]
    for a in high:
        out.append(Unmet(Criterion.HIGH_FLAG, f"High-priority flag active: {a.message}"))
    for param, crit, name in (("spo2", Criterion.SPO2, "SpO₂"), ("rr", Criterion.RR, "RR")):
        got = latest.get(param)
        if got is None:
            out.append(Unmet(crit, f"No {name} reading"))
            continue
        problem = _in_limits(profile, param, got[0])
        if problem:
            out.append(Unmet(crit, f"Latest {name} {problem}"))
    sys, dia = latest.get("nibp_sys"), latest.get("nibp_dia")
    if sys is None or dia is None:
        out.append(Unmet(Criterion.BP, "No blood pressure since dosing"))
    else:
        lim_s, lim_d = discharge_bp_limit(state, profile)
        if sys[1] < state.first_dose:
            out.append(Unmet(Criterion.BP, "No blood pressure since dosing"))
        elif sys[0] > lim_s or dia[0] > lim_d:
            out.append(
                Unmet(
                    Criterion.BP,
                    f"Latest BP {sys[0]:g}/{dia[0]:g} is above the discharge limit "
                    f"{lim_s:g}/{lim_d:g}: needs a physician to accept it",
                )
            )
    cadss = state.after_dose(EntryKind.CADSS)
    if cadss:
        last = cadss[-1].score or 0
        pre = state.predose_cadss
        if last > CADSS_DISSOCIATION_TOTAL and (pre is None or last > pre):
            out.append(
                Unmet(Criterion.DISSOCIATION, f"Latest CADSS total {last}: dissociation ongoing")
            )
    for key, label in CHECKLIST_LABELS.items():
        if not checklist.get(key, False):
            out.append(Unmet(Criterion.CHECKLIST, f"Checklist: {label}", overridable=False))
    if ready_to_leave_min is None:
        out.append(
            Unmet(
                Criterion.READY,
                "Answer: if there were no 2-hour minimum, when would the patient have been "
                "ready to leave? (minutes)",
                overridable=False,
            )
        )
    elif not 0 <= ready_to_leave_min <= 24 * 60:
        out.append(
            Unmet(Criterion.READY, "'Ready to leave' must be 0-1440 minutes", overridable=False)
        )
    return out


def vitals_ok_before(state: SessionState) -> bool | None:
    s = state.screening
    if s is None or s.bp is None:
        return None
    return not s.above_advisory


def rems_answers(
    state: SessionState, *, vitals_ok_end: bool | None, pulse_oximetry_used: bool
) -> dict[str, Any]:
    """The PMF's yes/no answers, from the record (clinical.md §8 item 30)."""
    dosed = state.first_dose
    moaas = state.after_dose(EntryKind.MOAAS)
    rass = state.after_dose(EntryKind.RASS)
    sedation = any((o.score or 5) < 5 for o in moaas) or any((o.score or 0) < 0 for o in rass)
    pre = state.predose_cadss
    dissociation = any(
        (o.score or 0) > CADSS_DISSOCIATION_TOTAL and (pre is None or (o.score or 0) > pre)
        for o in state.after_dose(EntryKind.CADSS)
    )
    effects = [o for o in state.live(EntryKind.SIDE_EFFECT) if dosed is None or o.at >= dosed]
    dissociation = dissociation or any(o.item == "dissociation" for o in effects)
    respiratory = state.respiratory_flag or any(
        o.item == "respiratory_depression" for o in effects
    )
    sae = (
        state.escalated_at is not None
        or (state.lowest_moaas is not None and state.lowest_moaas <= 1)
        or any((o.score or 0) <= -4 for o in rass)
        or respiratory
        or any(o.serious for o in effects)
    )
    return {
        "sedation": sedation,
        "dissociation": dissociation,
        "respiratory_depression": respiratory,
        "serious_adverse_event": sae,
        "vitals_ok_before": vitals_ok_before(state),
        "vitals_ok_end": vitals_ok_end,
        "pulse_oximetry_used": pulse_oximetry_used,
    }
