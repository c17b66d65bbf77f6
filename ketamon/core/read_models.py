"""Read models over a session's record, shared by the chair screen, review and exports.

``record_lines`` is the session record as people read it: every entry in time order, in words,
with its author; a correction shows old → new with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ketamon.domain.dosing import IM_SITES, ORAL_FORMS
from ketamon.domain.outcome_scales import SPECS, ScaleId
from ketamon.domain.prompts import Prompt, PromptState
from ketamon.domain.record import EntryKind, SessionEntry, SessionState
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.session_rules import DEVICE_INTERVAL, Treatment, devices_for_dose, phase
from ketamon.domain.side_effects import SIDE_EFFECTS_BY_KEY
from ketamon.domain.thresholds import Priority

PARAM_LABELS = {
    "nibp_sys": "BP sys",
    "nibp_dia": "BP dia",
    "nibp_mean": "BP mean",
    "hr": "HR",
    "spo2": "SpO₂",
    "rr": "RR",
}
KIND_LABELS = {
    EntryKind.STARTED: "Session started",
    EntryKind.SCREENING: "Pre-dose screening",
    EntryKind.DECISION: "Prescriber decision",
    EntryKind.BP_OVERRIDE: "Dosing without pre-dose BP",
    EntryKind.DEVICE: "Esketamine device",
    EntryKind.INFUSION_STARTED: "Infusion started",
    EntryKind.INFUSION_STOPPED: "Infusion stopped",
    EntryKind.OTHER_DOSE: "Treatment given",
    EntryKind.MOAAS: "MOAA/S",
    EntryKind.RASS: "RASS",
    EntryKind.CADSS: "CADSS",
    EntryKind.SIDE_EFFECT: "Side effect",
    EntryKind.NOTE: "Note",
    EntryKind.VITALS: "Vitals by hand",
    EntryKind.SYMPTOM_CHECK: "Symptom check",
    EntryKind.BP40_REASON: "40-min BP not taken",
    EntryKind.CORRECTION: "Correction",
    EntryKind.ALARM: "Flag",
    EntryKind.LINK: "Monitor",
    EntryKind.LIMIT_CHANGED: "Limit changed",
    EntryKind.DISCHARGED: "Discharged",
    EntryKind.CANCELLED: "Cancelled (entered in error)",
    EntryKind.ENDED: "Monitoring ended",
    EntryKind.SIGNED: "Signed",
    EntryKind.ADDENDUM: "Addendum",
    EntryKind.COUNTERSIGNED: "Addendum countersigned",
    EntryKind.PMF_FIELDS: "PMF fields entered",
    EntryKind.PMF_SUBMITTED: "PMF submitted",
    EntryKind.ADMINISTERED: "Dose given",
    EntryKind.WASTE: "Waste (witnessed)",
    EntryKind.SCALE: "Rating scale",
    EntryKind.SUICIDALITY_ACTION: "PHQ-9 item 9: action taken",
    EntryKind.THERAPIST_ASSIGNED: "Therapist assigned",
    EntryKind.THERAPIST_NOTE: "Therapist note",
}
#: entries of the therapist, kept apart from the nursing record (issue 15)
THERAPIST_KINDS = frozenset({EntryKind.THERAPIST_NOTE})


@dataclass(frozen=True, slots=True)
class RecordLine:
    entry_id: int
    at: datetime
    kind: EntryKind
    author: str
    text: str
    authorised_by: str = ""

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]


def _yn(v: Any) -> str:
    return "—" if v is None else ("yes" if v else "no")


def _bp(v: Any) -> str:
    return "not taken" if not v else f"{float(v[0]):g}/{float(v[1]):g}"


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{PARAM_LABELS.get(k, k)} {float(v):g}" for k, v in values.items())


def _side_effect(d: Mapping[str, Any]) -> str:
    se = SIDE_EFFECTS_BY_KEY.get(str(d.get("item")))
    text = f"{se.label if se else d.get('item')}: {d.get('severity')}"
    if d.get("serious") is not None:
        text += f", serious adverse event: {_yn(d.get('serious'))}"
    if d.get("text"):
        text += f" — {d['text']}"
    return text


def _change(kind: EntryKind, field: str, v: Any) -> str:
    if v is None:
        return "—"
    if field == "bp":
        return _bp(v)
    if field == "values" and isinstance(v, Mapping):
        return _values(v)
    if field == "items" and isinstance(v, Mapping):
        return f"total {sum(int(x) for x in v.values())}"
    if isinstance(v, bool):
        return _yn(v)
    return str(v)


def describe(e: SessionEntry, kinds: Mapping[int, EntryKind] | None = None) -> str:
    """One entry in words (``kinds``: the kind of every earlier entry, for corrections)."""
    d = e.data
    k = e.kind
    if k is EntryKind.STARTED:
        p, plan = d["patient"], d["plan"]
        what = str(plan["treatment"]).replace("_", " ")
        if plan.get("dose_mg"):
            what += f" {float(plan['dose_mg']):g} mg"
        if plan.get("iv_mg_per_kg"):
            what += (
                f" {float(plan['iv_mg_per_kg']):g} mg/kg over {float(plan['iv_minutes']):g} min"
            )
        return f"{p['first_name']} {p['last_name']} ({p['mrn']}) at {d['chair']}: {what}"
    if k is EntryKind.SCREENING:
        meds = [
            m
            for m in ("benzodiazepine", "hypnotic", "opioid", "psychostimulant", "maoi")
            if d.get(m)
        ]
        text = (
            f"BP {_bp(d.get('bp'))} ({d.get('bp_source')}), HR "
            f"{'not taken' if d.get('hr') is None else format(float(d['hr']), 'g')}; "
            f"fasting {_yn(d.get('fasting'))}, escort {_yn(d.get('escort'))}, "
            f"REMS enrolled {_yn(d.get('rems_enrolled'))}; concomitant: "
            f"{', '.join(meds) if meds else 'none'}"
        )
        if d.get("above_advisory"):
            text += "; above the pre-dose advisory"
        return text
    if k is EntryKind.DECISION:
        return f"{d['decision']}" + (f" — {d['note']}" if d.get("note") else "")
    if k in (EntryKind.BP_OVERRIDE, EntryKind.BP40_REASON, EntryKind.CANCELLED, EntryKind.ENDED):
        return str(d.get("reason", ""))
    if k is EntryKind.DEVICE:
        return f"device {d['number']}, {float(d['mg']):g} mg, lot {d['lot']}"
    if k is EntryKind.INFUSION_STARTED:
        return (
            f"{float(d['planned_mg']):g} mg planned ({float(d['mg_per_kg']):g} mg/kg × "
            f"{float(d['weight_kg']):g} kg) at {float(d['rate_mg_per_min']):g} mg/min"
        )
    if k is EntryKind.INFUSION_STOPPED:
        text = f"{float(d['given_mg']):g} mg given over {float(d['minutes']):g} min"
        return text + (f" — {d['reason']}" if d.get("reason") else "")
    if k is EntryKind.OTHER_DOSE:
        return str(d.get("description", ""))
    if k in (EntryKind.MOAAS, EntryKind.RASS):
        return str(d["score"])
    if k is EntryKind.CADSS:
        items = d["items"]
        return f"total {sum(int(v) for v in items.values())} ({len(items)} items)"
    if k is EntryKind.SIDE_EFFECT:
        return _side_effect(d)
    if k is EntryKind.NOTE:
        return str(d.get("text", ""))
    if k is EntryKind.VITALS:
        return _values(d["values"])
    if k is EntryKind.SYMPTOM_CHECK:
        yes = d.get("yes") or []
        return ("yes: " + ", ".join(yes) + " — prescriber notified") if yes else "no symptoms"
    if k is EntryKind.CORRECTION:
        target = int(d["target"])
        tk = EntryKind(d["target_kind"])
        head = f"of {KIND_LABELS[tk]} #{target}: "
        if d.get("in_error"):
            return head + f"entered in error — {d.get('reason', '')}"
        parts = [
            f"{f} {_change(tk, f, d.get('old', {}).get(f))} → {_change(tk, f, v)}"
            for f, v in d.get("changes", {}).items()
        ]
        return head + "; ".join(parts) + f" — reason: {d.get('reason', '')}"
    if k is EntryKind.ALARM:
        where = f" {d['where']}" if d.get("where") else ""  # "acknowledged at lock screen"
        return f"{d.get('action')}{where}: {d.get('message') or d.get('key')}"
    if k is EntryKind.LINK:
        return f"{d.get('state')}" + (f" ({d['reason']})" if d.get("reason") else "")
    if k is EntryKind.LIMIT_CHANGED:
        bounds = "/".join("–" if v is None else f"{float(v):g}" for v in (d["low"], d["high"]))
        return f"{d['limit_id']} → {bounds} for this session — {d.get('reason', '')}"
    if k in (EntryKind.SIGNED, EntryKind.ADDENDUM, EntryKind.COUNTERSIGNED):
        who = str(d.get("name", e.author))
        if d.get("credentials"):
            who += f", {d['credentials']}"
        text = f"{who} — {d.get('meaning', '')} (SHA-256 {str(d.get('content_sha256', ''))[:16]}…)"
        if k is EntryKind.COUNTERSIGNED:
            return f"addendum {d.get('addendum_id')} countersigned by {text}"
        if k is EntryKind.ADDENDUM:
            pending = " (to be countersigned)" if d.get("countersign_required") else ""
            return f"{d.get('text', '')} — signed by {text}{pending}"
        return text
    if k is EntryKind.PMF_FIELDS:
        return ", ".join(f"{f}: {v}" for f, v in d.get("values", {}).items())
    if k is EntryKind.PMF_SUBMITTED:
        return (
            f"by {d.get('method', '')} at {d.get('submitted_at', '')}, reference "
            f"{d.get('reference', '')} (form {d.get('form_version', '')})"
        )
    course = _describe_course(e)
    if course is not None:
        return course
    if k is EntryKind.DISCHARGED:
        text = f"after {d['total_min']} min; ready to leave at {d['ready_to_leave_min']} min"
        if d.get("unmet"):
            text += "; accepted unmet: " + "; ".join(d["unmet"])
            text += f" — {d.get('override_reason', '')}"
        return text
    return ""


def _describe_course(e: SessionEntry) -> str | None:
    """The treatment-course entries (issue 15) in words; None: not one of them."""
    d = e.data
    k = e.kind
    if k is EntryKind.ADMINISTERED:
        how = (
            f"IM {float(d['given_mg']):g} mg ({float(d['mg_per_kg']):g} mg/kg × "
            f"{float(d['weight_kg']):g} kg), {IM_SITES.get(str(d.get('site')), d.get('site'))}"
            if d["route"] == "im"
            else f"{d['route']} {float(d['given_mg']):g} mg, "
            f"{ORAL_FORMS.get(str(d.get('form')), ('', d.get('form')))[1]}"
        )
        return (
            f"{how}; {d['product']} {float(d['concentration']):g} mg/mL lot {d['lot']} "
            f"(exp {d['expiry']}); drawn {float(d['drawn_mg']):g} mg"
        )
    if k is EntryKind.WASTE:
        dev = f" (device {d['device_number']})" if d.get("device_number") else ""
        return (
            f"{float(d['mg']):g} mg of {d['product']} lot {d['lot']}{dev} — {d.get('reason', '')}"
            f"; witnessed by {e.authorised_by}"
        )
    if k is EntryKind.SCALE:
        name = SPECS[ScaleId(str(d["scale"]))].name
        band = f" ({d['band']})" if d.get("band") else ""
        flag = "; item 9 above 0: action needed" if d.get("suicidality") else ""
        return f"{name} total {d['total']}{band}{flag}"
    if k is EntryKind.SUICIDALITY_ACTION:
        return str(d.get("action", ""))
    if k is EntryKind.THERAPIST_ASSIGNED:
        return str(d.get("name", ""))
    if k is EntryKind.THERAPIST_NOTE:
        return str(d.get("text", ""))
    return None


def therapist_lines(entries: Iterable[SessionEntry]) -> list[RecordLine]:
    """The therapist's notes, apart from the nursing record."""
    return [
        RecordLine(e.id, e.at, e.kind, e.author, describe(e), e.authorised_by)
        for e in sorted(entries, key=lambda e: (e.at, e.id))
        if e.kind in THERAPIST_KINDS
    ]


def record_lines(
    entries: Iterable[SessionEntry], *, alarms: bool = True, therapist: bool = False
) -> list[RecordLine]:
    """The record in time order (entries with equal times keep the order they were made).

    Therapist notes are kept apart (:func:`therapist_lines`) unless ``therapist``."""
    out: list[RecordLine] = []
    kinds: dict[int, EntryKind] = {}
    for e in entries:
        kinds[e.id] = e.kind
        if not alarms and e.kind in (EntryKind.ALARM, EntryKind.LINK):
            continue
        if not therapist and e.kind in THERAPIST_KINDS:
            continue
        out.append(RecordLine(e.id, e.at, e.kind, e.author, describe(e, kinds), e.authorised_by))
    return sorted(out, key=lambda line: (line.at, line.entry_id))


def correctable(entries: Sequence[SessionEntry]) -> list[SessionEntry]:
    """Entries a user can correct (or mark entered in error) now: not already in error."""
    from ketamon.domain.record import CORRECTABLE

    gone = {
        int(e.data["target"])
        for e in entries
        if e.kind is EntryKind.CORRECTION and e.data.get("in_error")
    }
    return [e for e in entries if e.kind in CORRECTABLE and e.id not in gone]


def _mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True, slots=True)
class DosingStatus:
    """What the chair header and the overview card say about dosing now."""

    text: str
    waiting: bool = False  # a countdown runs (the next device, or an infusion)
    ready: bool = False  # the next device may be given now


def dosing_status(state: SessionState, now: datetime) -> DosingStatus | None:
    """The next esketamine device's countdown (5 min after the last one), or an IV infusion's
    elapsed time and planned stop; None when there is nothing to say."""
    plan = state.plan
    if plan.treatment is Treatment.ESKETAMINE and plan.dose_mg:
        n = devices_for_dose(plan.dose_mg)
        given = len(state.devices)
        if given == 0 or given >= n:
            return None
        left = (state.devices[-1].at + DEVICE_INTERVAL - now).total_seconds()
        if left > 0:
            return DosingStatus(f"Device {given + 1} of {n} in {_mmss(left)}", waiting=True)
        return DosingStatus(f"Device {given + 1} of {n}: ready now", ready=True)
    inf = state.infusion
    if plan.treatment is Treatment.IV_KETAMINE and inf is not None:
        planned_stop = inf.start + timedelta(minutes=inf.planned_minutes)
        if inf.stop is None:
            elapsed = (now - inf.start).total_seconds()
            return DosingStatus(
                f"IV {_mmss(elapsed)} of {inf.planned_minutes:g} min · planned stop "
                f"{planned_stop.astimezone().strftime('%H:%M')}",
                waiting=True,
            )
        ran = (inf.stop - inf.start).total_seconds() / 60.0
        return DosingStatus(f"IV stopped after {ran:.0f} min: {inf.given_mg or 0:g} mg")
    return None


@dataclass(frozen=True, slots=True)
class ChairSummary:
    """One chair at a glance (the overview, and later the clinic's central view)."""

    chair: str
    patient: str
    phase: str
    time: str
    next: str
    alarm: str
    link: str
    minutes_since_dose: float | None = None


def chair_summary(
    chair: str,
    state: SessionState | None,
    last: SessionState | None,
    now: datetime,
    next_due: Prompt | None,
    worst: Priority | None,
    link: str,
) -> ChairSummary:
    alarm = "no active flags" if worst is None else f"{worst.marker} {worst.name} flag"
    if state is None:
        ended = "idle"
        if last is not None and last.discharge is not None:
            ended = "discharged"
        elif last is not None and last.ended:
            ended = "ended"
        return ChairSummary(chair, "No session", ended, "", "Start a session", alarm, link)
    clock = SessionClock(state.started, state.first_dose)
    ph = phase(clock, now, dosing_complete=state.dosing_complete, discharged=state.ended)
    minutes = None if state.first_dose is None else clock.minutes(now)
    time = "pre-dose" if minutes is None else f"T+{minutes:.0f} min"
    if next_due is None:
        nxt = "nothing due"
    else:
        nxt = next_due.label + {
            PromptState.OVERDUE: " — OVERDUE",
            PromptState.DUE: " — due now",
        }.get(next_due.state, "")
    return ChairSummary(chair, state.patient.label, ph.label, time, nxt, alarm, link, minutes)


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """A finished session in figures, for the physician's review."""

    peak_bp: tuple[float, float] | None  # the cuff reading with the highest systolic after dosing
    peak_bp_rise: tuple[float, float] | None  # its rise over the pre-dose baseline
    lowest_spo2: float | None
    lowest_moaas: int | None
    peak_cadss: int | None
    cadss_change: int | None  # peak minus the pre-dose rating
    total_min: int | None
    ready_to_leave_min: int | None


def session_figures(
    state: SessionState, readings: Iterable[tuple[str, float, datetime]] = ()
) -> SessionFigures:
    """``readings``: (parameter, value, time) of the session's monitor and manual readings."""
    dosed = state.first_dose
    sys_after: list[tuple[float, datetime]] = []
    dia_at: dict[datetime, float] = {}
    spo2: list[float] = []
    for parameter, value, at in readings:
        if parameter == "spo2" and (dosed is None or at >= dosed):
            spo2.append(value)
        if dosed is None or at < dosed:
            continue
        if parameter == "nibp_sys":
            sys_after.append((value, at))
        elif parameter == "nibp_dia":
            dia_at[at] = value
    for v in state.vitals:
        if dosed is not None and v.at >= dosed and not v.in_error:
            if "nibp_sys" in v.values and "nibp_dia" in v.values:
                sys_after.append((v.values["nibp_sys"], v.at))
                dia_at[v.at] = v.values["nibp_dia"]
            if "spo2" in v.values:
                spo2.append(v.values["spo2"])
    peak: tuple[float, float] | None = None
    if sys_after:
        value, at = max(sys_after, key=lambda x: x[0])
        near = min(dia_at, key=lambda t: abs((t - at).total_seconds()), default=None)
        if near is not None and abs((near - at).total_seconds()) <= 5:
            peak = (value, dia_at[near])
    rise = None
    if peak is not None and state.baseline is not None:
        rise = (peak[0] - state.baseline[0], peak[1] - state.baseline[1])
    cadss = [o.score for o in state.after_dose(EntryKind.CADSS) if o.score is not None]
    peak_cadss = max(cadss) if cadss else None
    pre = state.predose_cadss
    d = state.discharge
    return SessionFigures(
        peak_bp=peak,
        peak_bp_rise=rise,
        lowest_spo2=min(spo2) if spo2 else None,
        lowest_moaas=state.lowest_moaas,
        peak_cadss=peak_cadss,
        cadss_change=None if peak_cadss is None or pre is None else peak_cadss - pre,
        total_min=d.total_min if d is not None else None,
        ready_to_leave_min=d.ready_to_leave_min if d is not None else None,
    )
