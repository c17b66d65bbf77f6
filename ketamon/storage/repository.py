"""The session record in the database: :class:`SqlSessionRepository` implements the core's
:class:`~ketamon.core.ports.SessionRepository` on SQLite and PostgreSQL.

Each entry is one ``session_entry`` row (an append-only event log) and one audit entry (action
create, entity ``session_entry``, the entry's data as the new value, the author as the user).
In the same transaction the tidy tables (``treatment_session``, ``dose_event``, ``observation``,
``vital_reading``, ``alarm_event``, ...) are kept up to date as a projection of the entries, so
SQL users, the CLI and the existing queries keep working; ``session_entry.ref_id`` names the
tidy row an entry produced (corrections find it there). If any of it fails, nothing is kept.

Writes go through the single :class:`~ketamon.storage.writer.DatabaseWriter` when one is given
(else a short Session of their own); reads always use their own short Session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from ketamon.core.ports import EntryDraft, OpenSessionRef
from ketamon.domain.record import EntryKind, PatientInfo, SessionEntry, SessionState, fold
from ketamon.domain.roles import Actor
from ketamon.domain.roles import Role as ActorRole
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.storage import records
from ketamon.storage.audit import USER_KEY, append_entry, reason, set_user
from ketamon.storage.models import (
    AlarmRecord,
    AuditAction,
    DeviceLinkEvent,
    DoseEvent,
    DoseKind,
    DoseWaste,
    Observation,
    ObservationItem,
    ObservationKind,
    Patient,
    RemsEnrolment,
    SessionEntryRow,
    SessionPhase,
    Severity,
    Sex,
    StaffRole,
    TreatmentSession,
    TreatmentType,
    User,
    VitalReading,
)
from ketamon.storage.records import MANUAL_SOURCE, RecordError
from ketamon.storage.users import system_user_id
from ketamon.storage.writer import DatabaseWriter

T = TypeVar("T")

TIMEOUT_S = 10.0
ENTITY = "session_entry"
REMS_CONFIRMED = "confirmed at the pre-dose screening"
DOSE_GIVEN = "dose actually given (rate × time)"
ENDED = (EntryKind.DISCHARGED.value, EntryKind.CANCELLED.value, EntryKind.ENDED.value)

#: screening answers → treatment_session columns
SCREENING_COLUMNS = {
    "fasting": "fasting_confirmed",
    "escort": "escort_confirmed",
    "benzodiazepine": "concomitant_benzodiazepine",
    "hypnotic": "concomitant_hypnotic",
    "opioid": "concomitant_opioid",
    "psychostimulant": "concomitant_psychostimulant",
    "maoi": "concomitant_maoi",
}
REMS_COLUMNS = (
    "sedation",
    "dissociation",
    "respiratory_depression",
    "serious_adverse_event",
    "pulse_oximetry_used",
    "vitals_ok_end",
)


def _rems(value: Any) -> RemsEnrolment:
    return RemsEnrolment.of(None if value is None else bool(value))


def _rems_enrolled(value: RemsEnrolment) -> bool | None:
    return value.enrolled


def _patient_info(p: Patient) -> PatientInfo:
    return PatientInfo(
        id=p.id,
        mrn=p.mrn,
        first_name=p.first_name,
        last_name=p.last_name,
        middle_initial=p.middle_initial,
        date_of_birth=p.date_of_birth.isoformat() if p.date_of_birth else None,
        sex=p.sex.value if p.sex else None,
        weight_kg=p.weight_kg,
        rems_enrolled=_rems_enrolled(p.rems_enrolment),
    )


@contextmanager
def _why(s: Session, why: str | None) -> Iterator[None]:
    with reason(s, why) if why else nullcontext():
        yield
    s.flush()


# ---- the projection onto the tidy tables ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    """One entry being recorded: the Session (its user is the entry's author) and the facts."""

    s: Session
    ts: TreatmentSession
    kind: EntryKind
    at: datetime
    data: Mapping[str, Any]
    who: Actor
    authoriser: Actor | None

    @property
    def sid(self) -> int:
        return self.ts.id

    @property
    def physician_id(self) -> int:
        return (self.authoriser or self.who).id

    def note(self, text: str) -> int:
        return records.record_note(self.s, self.sid, text, self.at).id


def _screening(c: _Ctx) -> int | None:
    d, ts = c.data, c.ts
    again = "pre-dose screening repeated" if ts.fasting_confirmed is not None else None
    with _why(c.s, again):
        records.record_screening(
            c.s,
            c.sid,
            when=c.at,
            fasting=d.get("fasting"),
            escort=d.get("escort"),
            benzodiazepine=d.get("benzodiazepine"),
            hypnotic=d.get("hypnotic"),
            opioid=d.get("opioid"),
            psychostimulant=d.get("psychostimulant"),
            maoi=d.get("maoi"),
        )
        if d.get("bp") is not None:
            ts.vitals_ok_before = not bool(d.get("above_advisory"))
    _set_rems(c, d.get("rems_enrolled"), REMS_CONFIRMED)
    values = _screening_vitals(d)
    if d.get("bp_source") == MANUAL_SOURCE and values:
        return records.record_manual_vitals(c.s, c.sid, values, c.at)[0].id
    return None


def _screening_vitals(d: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    if d.get("bp") is not None:
        out = {"nibp_sys": float(d["bp"][0]), "nibp_dia": float(d["bp"][1])}
        if d.get("hr") is not None:
            out["hr"] = float(d["hr"])
    return out


def _set_rems(c: _Ctx, enrolled: Any, why: str) -> None:
    if enrolled is None:
        return
    p = c.ts.patient
    rems = _rems(bool(enrolled))
    if p.rems_enrolment is not rems:
        with _why(c.s, why):
            p.rems_enrolment = rems


def _decision(c: _Ctx) -> None:
    again = "prescriber decision changed" if c.ts.predose_decision is not None else None
    with _why(c.s, again):
        records.record_screening(
            c.s, c.sid, when=c.at, decision=str(c.data["decision"]), decision_by_id=c.physician_id
        )


def _bp_override(c: _Ctx) -> None:
    again = "override given again" if c.ts.predose_override_reason is not None else None
    with _why(c.s, again):
        records.record_screening(
            c.s,
            c.sid,
            when=c.at,
            override_reason=str(c.data.get("reason", "")),
            override_by_id=c.physician_id,
        )


def _device(c: _Ctx) -> int:
    d = c.data
    dose = records.record_esketamine_device(
        c.s, c.sid, device_number=int(d["number"]), when=c.at, lot=d.get("lot"), mg=float(d["mg"])
    )
    return dose.id


def _infusion_started(c: _Ctx) -> int:
    d = c.data
    dose = records.start_infusion(
        c.s,
        c.sid,
        mg=float(d["planned_mg"]),
        when=c.at,
        rate=float(d["rate_mg_per_min"]),
        rate_unit="mg/min",
        weight_kg=float(d["weight_kg"]),
    )
    return dose.id


def _infusion_stopped(c: _Ctx) -> int:
    dose_id = c.s.scalar(
        select(SessionEntryRow.ref_id)
        .where(
            SessionEntryRow.session_id == c.sid,
            SessionEntryRow.kind == EntryKind.INFUSION_STARTED.value,
        )
        .order_by(SessionEntryRow.id.desc())
        .limit(1)
    )
    if dose_id is None:
        raise RecordError(f"session {c.sid}: no infusion to stop")
    dose = records.stop_infusion(c.s, dose_id, c.at)
    given = float(c.data["given_mg"])
    why = str(c.data.get("reason") or "").strip()
    changes: dict[str, Any] = {}
    if given > 0 and given != dose.mg:
        changes["mg"] = given
    elif not given > 0:  # stopped before any was given: mg > 0 stays the plan, the note says so
        why = f"no dose given; {why}" if why else "no dose given"
    if why:
        changes["note"] = f"{dose.note} stopped: {why}".strip()
    if changes:
        records.edit_with_reason(c.s, DoseEvent, dose.id, changes, DOSE_GIVEN)
    return dose.id


def _other_dose(c: _Ctx) -> int:
    # No DoseEvent: it needs a dose in mg, which an "other" treatment does not record.
    ts = c.ts
    if ts.first_dose_at is None:
        ts.first_dose_at = c.at
    if ts.phase is SessionPhase.PRE_DOSE:
        ts.phase = SessionPhase.DOSING
    return c.note(f"Treatment given: {c.data.get('description', '')}".strip())


def _score(kind: ObservationKind) -> Callable[[_Ctx], int]:
    fn = records.record_moaas if kind is ObservationKind.MOAAS else records.record_rass
    return lambda c: fn(c.s, c.sid, int(c.data["score"]), c.at).id


def _cadss(c: _Ctx) -> int:
    items = {int(k): int(v) for k, v in c.data["items"].items()}
    return records.record_cadss(c.s, c.sid, items, c.at).id


def _onset(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _side_effect(c: _Ctx) -> int:
    d = c.data
    onset = _onset(d["onset"]) if d.get("onset") else None
    text = str(d.get("text", ""))
    if d.get("onset") and onset is None:
        text = f"{text} (onset {d['onset']})".strip()
    obs = records.record_side_effect(
        c.s,
        c.sid,
        str(d["item"]),
        str(d["severity"]),
        when=c.at,
        onset=onset,
        serious=d.get("serious"),
        note=text,
    )
    return obs.id


def _vitals(c: _Ctx) -> int:
    values = {str(k): float(v) for k, v in c.data["values"].items()}
    return records.record_manual_vitals(c.s, c.sid, values, c.at)[0].id


def _symptom_check(c: _Ctx) -> int:
    yes = [str(x) for x in c.data.get("yes", [])]
    return c.note("BP symptom check: " + (", ".join(yes) if yes else "no symptoms"))


def _alarm(c: _Ctx) -> int:
    d = c.data
    row = AlarmRecord(
        session_id=c.sid,
        key=str(d["key"]),
        action=str(d["action"]),
        priority=str(d.get("priority") or ""),
        message=str(d.get("message") or ""),
        technical=bool(d.get("technical", False)),
        time=c.at,
        user_id=None if c.who.role is ActorRole.SYSTEM else c.who.id,
    )
    c.s.add(row)
    c.s.flush()
    return row.id


def _link(c: _Ctx) -> int:
    row = DeviceLinkEvent(
        session_id=c.sid,
        state=str(c.data.get("state", "")),
        reason=str(c.data.get("reason", "")),
        time=c.at,
    )
    c.s.add(row)
    c.s.flush()
    return row.id


def _limit_changed(c: _Ctx) -> int:
    d = c.data
    bounds = "/".join("–" if d.get(k) is None else f"{float(d[k]):g}" for k in ("low", "high"))
    by = (c.authoriser or c.who).full_name
    return c.note(
        f"Threshold {d['limit_id']} changed to {bounds} for this session by {by}: "
        f"{d.get('reason', '')}"
    )


def _discharged(c: _Ctx) -> int:
    d, ts = c.data, c.ts
    rems = d.get("rems") or {}
    for key in REMS_COLUMNS:
        if rems.get(key) is not None:
            setattr(ts, key, bool(rems[key]))
    unmet = [str(u) for u in d.get("unmet", [])]
    if unmet and d.get("override_reason"):
        c.note(
            f"Discharged with unmet criteria ({'; '.join(unmet)}), authorised by "
            f"{(c.authoriser or c.who).full_name}: {d['override_reason']}"
        )
    early = str(d.get("early_reason") or "")
    records.discharge_session(
        c.s,
        c.sid,
        when=c.at,
        checklist={str(k): bool(v) for k, v in (d.get("checklist") or {}).items()},
        ready_to_leave_min=int(d["ready_to_leave_min"]),
        early_reason=early,
        early_by_id=c.physician_id if early.strip() else None,
    )
    return ts.id


def _cancelled(c: _Ctx) -> int:
    note = c.note(f"Session cancelled: {c.data.get('reason', '')}".strip())
    records.end_session(c.s, c.sid, c.at, phase=SessionPhase.ABANDONED)
    return note


def _monitoring_ended(c: _Ctx) -> int:
    note = c.note(f"Monitoring ended: {c.data.get('reason', '')}".strip())
    records.end_session(c.s, c.sid, c.at, phase=SessionPhase.ABANDONED)
    return note


def _signed(c: _Ctx) -> int:
    d = c.data
    who = ", ".join(x for x in (str(d.get("name", "")), str(d.get("credentials", ""))) if x)
    return c.note(
        f"Signed by {who}: {d.get('meaning', '')} "
        f"(entries to {d.get('covers_entry_id')}, SHA-256 {d.get('content_sha256', '')})"
    )


def _signer(d: Mapping[str, Any]) -> str:
    return ", ".join(x for x in (str(d.get("name", "")), str(d.get("credentials", ""))) if x)


def _addendum(c: _Ctx) -> int:
    d = c.data
    pending = " (to be countersigned by a physician)" if d.get("countersign_required") else ""
    return c.note(f"Addendum signed by {_signer(d)}{pending}: {d.get('text', '')}")


def _countersigned(c: _Ctx) -> int:
    d = c.data
    return c.note(f"Addendum {d.get('addendum_id')} countersigned by {_signer(d)}")


def _pmf_submitted(c: _Ctx) -> int:
    d = c.data
    ref = str(d.get("reference") or "").strip()
    return c.note(
        f"REMS Patient Monitoring Form submitted by {d.get('method', '')} at "
        f"{d.get('submitted_at', '')}" + (f", reference {ref}" if ref else "")
    )


def _started_again(c: _Ctx) -> None:
    raise RecordError(f"session {c.sid} has already started")


# ---- corrections -------------------------------------------------------------------------


def _manual_rows(s: Session, sid: int, target: SessionEntryRow) -> dict[str, VitalReading]:
    """The manual readings an entry (vitals, or a screening's manual BP) produced."""
    q = select(VitalReading).where(
        VitalReading.session_id == sid,
        VitalReading.source == MANUAL_SOURCE,
        VitalReading.host_time == target.at,
        VitalReading.id >= (target.ref_id or 0),
    )
    out: dict[str, VitalReading] = {}
    for r in s.scalars(q.order_by(VitalReading.id)):
        out.setdefault(r.parameter, r)
    return out


def _set_manual(
    c: _Ctx, target: SessionEntryRow, new: Mapping[str, float | None], why: str
) -> None:
    rows = _manual_rows(c.s, c.sid, target)
    with _why(c.s, why):
        for p, v in new.items():
            row = rows.get(p)
            if row is None:
                continue
            if v is None:
                c.s.delete(row)
            elif row.value != v:
                row.value = float(v)
    add = {p: float(v) for p, v in new.items() if v is not None and p not in rows}
    if add:
        records.record_manual_vitals(c.s, c.sid, add, target.at)


def _correct_screening(
    c: _Ctx, target: SessionEntryRow, changes: Mapping[str, Any], why: str
) -> None:
    cols: dict[str, Any] = {
        SCREENING_COLUMNS[k]: bool(v) for k, v in changes.items() if k in SCREENING_COLUMNS
    }
    if "bp" in changes and "above_advisory" in c.data:
        cols["vitals_ok_before"] = (
            None if changes["bp"] is None else not bool(c.data["above_advisory"])
        )
    if cols:
        records.edit_with_reason(c.s, TreatmentSession, c.sid, cols, why)
    _set_rems(c, changes.get("rems_enrolled"), why)
    if json.loads(target.data).get("bp_source") == MANUAL_SOURCE:
        new: dict[str, float | None] = {}
        if "bp" in changes:
            bp = changes["bp"]
            new["nibp_sys"] = None if bp is None else float(bp[0])
            new["nibp_dia"] = None if bp is None else float(bp[1])
        if "hr" in changes:
            new["hr"] = None if changes["hr"] is None else float(changes["hr"])
        if new:
            _set_manual(c, target, new, why)


def _correct_observation(
    c: _Ctx, target: SessionEntryRow, changes: Mapping[str, Any], why: str, in_error: bool
) -> None:
    obs = c.s.get(Observation, target.ref_id) if target.ref_id is not None else None
    if obs is None:
        raise RecordError(f"entry {target.id} has no observation to correct")
    simple = {k: changes[k] for k in ("score", "serious", "text") if k in changes}
    if "severity" in changes:
        simple["severity"] = Severity(str(changes["severity"]))
    if simple:
        records.edit_with_reason(c.s, Observation, obs.id, simple, why)
    if "items" in changes:
        new = {int(k): int(v) for k, v in changes["items"].items()}
        with _why(c.s, why):
            for it in list(obs.items):
                score = new.pop(it.item, None)
                if score is None:
                    obs.items.remove(it)
                    c.s.delete(it)
                elif score != it.score:
                    it.score = score
            obs.items.extend(ObservationItem(item=i, score=v) for i, v in sorted(new.items()))
    if in_error:
        c.s.add(
            Observation(
                session_id=c.sid,
                kind=ObservationKind.NOTE,
                observed_at=c.at,
                author_id=c.who.id,
                text=f"Entry of {target.at.isoformat()} marked entered in error: {why}",
                amends_id=obs.id,
            )
        )
        c.s.flush()


def _correction(c: _Ctx) -> int | None:
    d = c.data
    target = c.s.get(SessionEntryRow, int(d["target"]))
    if target is None or target.session_id != c.sid:
        raise RecordError(f"correction: session {c.sid} has no entry {d['target']}")
    kind = EntryKind(target.kind)
    if d.get("target_kind") not in (None, kind.value):
        raise RecordError(f"correction: entry {target.id} is a {kind.value} entry")
    changes: Mapping[str, Any] = d.get("changes") or {}
    why = str(d.get("reason") or "")
    in_error = bool(d.get("in_error", False))
    if kind is EntryKind.SCREENING:
        _correct_screening(c, target, changes, why)
    elif kind is EntryKind.VITALS:
        old = json.loads(target.data)["values"]
        values = {} if in_error else dict(changes.get("values") or {})
        _set_manual(c, target, {**{p: None for p in old}, **values}, why)
    elif kind in (
        EntryKind.MOAAS,
        EntryKind.RASS,
        EntryKind.CADSS,
        EntryKind.SIDE_EFFECT,
        EntryKind.NOTE,
    ):
        _correct_observation(c, target, changes, why, in_error)
    else:
        raise RecordError(f"correction: {kind.value} entries cannot be corrected")
    return target.ref_id


# ---- the treatment course (issue 15) ----------------------------------------------------------


def _administered(c: _Ctx) -> int:
    d = c.data
    im = d["route"] == "im"
    where = f"site {d.get('site')}" if im else f"form {d.get('form')}"
    dose = DoseEvent(
        session_id=c.sid,
        kind=DoseKind.IM_INJECTION if im else DoseKind.ORAL,
        given_at=c.at,
        drug=str(d["product"])[:64],
        mg=float(d["given_mg"]),
        lot=str(d["lot"]),
        weight_kg=d.get("weight_kg"),
        mg_per_kg=d.get("mg_per_kg"),
        note=(
            f"{d['route']}; {where}; {float(d['concentration']):g} mg/mL; expiry {d['expiry']}; "
            f"drawn {float(d['drawn_mg']):g} mg"
        ),
        recorded_by_id=c.who.id,
    )
    c.s.add(dose)
    ts = c.ts
    if ts.first_dose_at is None:
        ts.first_dose_at = c.at
    if ts.phase is SessionPhase.PRE_DOSE:
        ts.phase = SessionPhase.DOSING
    c.s.flush()
    return dose.id


def _waste(c: _Ctx) -> int:
    d = c.data
    if c.authoriser is None or c.authoriser.id == c.who.id:
        raise RecordError("a waste is witnessed by a second user")
    row = DoseWaste(
        session_id=c.sid,
        wasted_at=c.at,
        product=str(d["product"]),
        lot=str(d["lot"]),
        mg=float(d["mg"]),
        device_number=d.get("device_number"),
        reason=str(d.get("reason", "")),
        recorded_by_id=c.who.id,
        witnessed_by_id=c.authoriser.id,
    )
    c.s.add(row)
    c.s.flush()
    return row.id


def _scale(c: _Ctx) -> int:
    d = c.data
    obs = Observation(
        session_id=c.sid,
        kind=ObservationKind(str(d["scale"])),
        observed_at=c.at,
        author_id=c.who.id,
        score=int(d["total"]),
        text=str(d.get("band", "")),
    )
    c.s.add(obs)
    c.s.flush()
    for item, score in d["items"].items():
        c.s.add(ObservationItem(observation_id=obs.id, item=int(item), score=int(score)))
    c.s.flush()
    return obs.id


#: kind → projection onto the tidy tables; returns the id of the tidy row produced (ref_id)
PROJECTIONS: dict[EntryKind, Callable[[_Ctx], int | None]] = {
    EntryKind.STARTED: _started_again,
    EntryKind.SCREENING: _screening,
    EntryKind.DECISION: _decision,
    EntryKind.BP_OVERRIDE: _bp_override,
    EntryKind.DEVICE: _device,
    EntryKind.INFUSION_STARTED: _infusion_started,
    EntryKind.INFUSION_STOPPED: _infusion_stopped,
    EntryKind.OTHER_DOSE: _other_dose,
    EntryKind.MOAAS: _score(ObservationKind.MOAAS),
    EntryKind.RASS: _score(ObservationKind.RASS),
    EntryKind.CADSS: _cadss,
    EntryKind.SIDE_EFFECT: _side_effect,
    EntryKind.NOTE: lambda c: c.note(str(c.data["text"])),
    EntryKind.VITALS: _vitals,
    EntryKind.SYMPTOM_CHECK: _symptom_check,
    EntryKind.BP40_REASON: lambda c: c.note(f"40-minute BP not taken: {c.data['reason']}"),
    EntryKind.CORRECTION: _correction,
    EntryKind.ALARM: _alarm,
    EntryKind.LINK: _link,
    EntryKind.LIMIT_CHANGED: _limit_changed,
    EntryKind.DISCHARGED: _discharged,
    EntryKind.CANCELLED: _cancelled,
    EntryKind.ENDED: _monitoring_ended,
    EntryKind.SIGNED: _signed,
    EntryKind.ADDENDUM: _addendum,
    EntryKind.COUNTERSIGNED: _countersigned,
    EntryKind.PMF_FIELDS: lambda c: None,  # the fields live in the entries (and the form)
    EntryKind.PMF_SUBMITTED: _pmf_submitted,
    EntryKind.ADMINISTERED: _administered,
    EntryKind.WASTE: _waste,
    EntryKind.SCALE: _scale,
    EntryKind.SUICIDALITY_ACTION: lambda c: c.note(
        f"PHQ-9 item 9, action taken: {c.data['action']}"
    ),
    # the assignment and the therapist's notes live in the entries only: kept apart from the
    # nursing record (and marked apart in the audit trail, field 'therapist_note')
    EntryKind.THERAPIST_ASSIGNED: lambda c: None,
    EntryKind.THERAPIST_NOTE: lambda c: None,
}


# ---- the lock after signing ----------------------------------------------------------------

#: what a signed session still takes (clinical.md §6.3: after signing, only addenda)
LOCKED_KINDS = frozenset({EntryKind.ADDENDUM, EntryKind.COUNTERSIGNED, EntryKind.PMF_SUBMITTED})
_SIGNATURES = (EntryKind.SIGNED, EntryKind.ADDENDUM, EntryKind.COUNTERSIGNED)


def _check_lock(s: Session, ts: TreatmentSession, drafts: Sequence[EntryDraft]) -> None:
    """Refuse (RecordError) entries a signed session no longer takes, a signature on a session
    still running, an addendum to an unsigned one, and a signature that does not cover every
    entry before it (someone recorded one meanwhile). Whoever writes, not only the core."""
    sid = ts.id
    rows = s.execute(
        select(SessionEntryRow.kind, func.max(SessionEntryRow.id))
        .where(SessionEntryRow.session_id == sid)
        .group_by(SessionEntryRow.kind)
    ).all()
    kinds = {str(k) for k, _ in rows}
    last = max((int(i) for _, i in rows), default=0)
    signed = EntryKind.SIGNED.value in kinds
    ended = ts.ended_at is not None or bool(kinds & set(ENDED))
    for d in drafts:
        if signed and d.kind not in LOCKED_KINDS:
            raise RecordError(
                f"session {sid} is signed and locked: a {d.kind.value} entry cannot be added "
                "(corrections are signed addenda)"
            )
        if d.kind is EntryKind.SIGNED and not ended:
            raise RecordError(f"session {sid} is still running: it cannot be signed yet")
        if d.kind in (EntryKind.ADDENDUM, EntryKind.COUNTERSIGNED) and not signed:
            raise RecordError(f"session {sid} is not signed: an addendum follows a signature")
        if d.kind in _SIGNATURES and d.data.get("covers_entry_id") != last:
            raise RecordError(
                f"session {sid}: the {d.kind.value} entry must cover every entry before it "
                f"(to {last}), not to {d.data.get('covers_entry_id')}"
            )
        if d.kind is EntryKind.SIGNED:
            signed = True
        if d.kind.value in ENDED:
            ended = True
        last = -1  # a later signature in the same call cannot name an entry not yet recorded


# ---- reads ----------------------------------------------------------------------------------


def _entries(s: Session, *where: Any) -> list[SessionEntry]:
    """Entries (with their authors' names) in id order."""
    author, authoriser = aliased(User), aliased(User)
    q = (
        select(SessionEntryRow, author.full_name, authoriser.full_name)
        .join(author, author.id == SessionEntryRow.author_id)
        .outerjoin(authoriser, authoriser.id == SessionEntryRow.authorised_by_id)
        .where(*where)
        .order_by(SessionEntryRow.id)
    )
    return [
        SessionEntry(
            id=row.id,
            session_id=row.session_id,
            kind=EntryKind(row.kind),
            at=row.at,
            author_id=row.author_id,
            author=name,
            data=json.loads(row.data),
            authorised_by_id=row.authorised_by_id,
            authorised_by=by or "",
        )
        for row, name, by in s.execute(q)
    ]


SESSION_STATUSES = ("open", "awaiting_signature", "signed", "addendum")


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session for ``ketamon sessions list``: where it stands after the chair."""

    id: int
    chair: str
    patient: str
    treatment: str
    started: datetime
    ended: datetime | None
    #: open | awaiting_signature | signed | addendum (signed, with addenda)
    status: str
    #: the record folded (None: a session with no entries, from before the session record)
    state: SessionState | None = None
    entries: tuple[SessionEntry, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chair": self.chair,
            "patient": self.patient,
            "treatment": self.treatment,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "status": self.status,
        }


def _status(ended: bool, state: SessionState | None) -> str:
    if state is not None and state.signed:
        if state.addendum_pending:
            return "addendum_pending"
        return "addendum" if state.addenda else "signed"
    return "awaiting_signature" if ended else "open"


def list_sessions(engine: Engine) -> list[SessionRow]:
    """Every session, oldest first, each folded from its record (one query for all entries)."""
    with Session(engine) as s:
        by_session: dict[int, list[SessionEntry]] = {}
        for e in _entries(s):
            by_session.setdefault(e.session_id, []).append(e)
        q = (
            select(TreatmentSession, Patient)
            .join(Patient, Patient.id == TreatmentSession.patient_id)
            .order_by(TreatmentSession.started_at, TreatmentSession.id)
        )
        out: list[SessionRow] = []
        for ts, p in s.execute(q):
            entries = tuple(by_session.get(ts.id, ()))
            state = fold(entries) if entries else None
            ended = state.ended_at if state is not None else ts.ended_at
            out.append(
                SessionRow(
                    id=ts.id,
                    chair=ts.chair,
                    patient=_patient_info(p).label,
                    treatment=ts.treatment.value,
                    started=state.started if state is not None else ts.started_at,
                    ended=ended,
                    status=_status(ended is not None, state),
                    state=state,
                    entries=entries,
                )
            )
        return out


# ---- the repository ------------------------------------------------------------------------


class SqlSessionRepository:
    """The core's session record on the database (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        writer: DatabaseWriter | None = None,
        *,
        profile: ThresholdProfile | None = None,
        profile_origin: str = "",
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.profile = profile
        self.profile_origin = profile_origin
        self.timeout_s = timeout_s
        self._system: Actor | None = None

    # ---- transactions ----------------------------------------------------------------------
    def _write(self, op: Callable[[Session], T], actor: Actor) -> T:
        if self.writer is not None:
            return self.writer.call(op, self.timeout_s, user_id=actor.id)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            set_user(s, actor.id)
            return op(s)

    @staticmethod
    def _record(
        s: Session,
        ts: TreatmentSession,
        draft: EntryDraft,
        actor: Actor,
        project: Callable[[_Ctx], int | None],
        data: Mapping[str, Any] | None = None,
    ) -> SessionEntry:
        """Project one entry, then add its row and its audit entry, all as its author."""
        who = draft.author or actor
        text = json.dumps(dict(draft.data if data is None else data), ensure_ascii=False)
        stored = json.loads(text)
        if not isinstance(stored, dict):
            raise RecordError("an entry's data is a JSON object")
        before = s.info.get(USER_KEY)
        set_user(s, who.id)
        try:
            ctx = _Ctx(s, ts, draft.kind, draft.at, stored, who, draft.authorised_by)
            ref = project(ctx)
            row = SessionEntryRow(
                session_id=ts.id,
                kind=draft.kind.value,
                at=draft.at,
                author_id=who.id,
                authorised_by_id=draft.authorised_by.id if draft.authorised_by else None,
                data=text,
                ref_id=ref,
            )
            s.add(row)
            s.flush()
            append_entry(
                s,
                action=AuditAction.CREATE,
                entity=ENTITY,
                entity_id=row.id,
                session_id=ts.id,
                field="therapist_note" if draft.kind is EntryKind.THERAPIST_NOTE else None,
                new=stored,
            )
            s.flush()
        finally:
            set_user(s, before)
        return SessionEntry(
            id=row.id,
            session_id=ts.id,
            kind=draft.kind,
            at=draft.at.astimezone(UTC),
            author_id=who.id,
            author=who.full_name,
            data=stored,
            authorised_by_id=row.authorised_by_id,
            authorised_by=draft.authorised_by.full_name if draft.authorised_by else "",
        )

    # ---- writes ----------------------------------------------------------------------------
    def create(self, draft: EntryDraft, actor: Actor) -> SessionEntry:
        if draft.kind is not EntryKind.STARTED:
            raise RecordError(f"a session record starts with 'started', not {draft.kind.value}")
        data = json.loads(json.dumps(dict(draft.data)))

        def op(s: Session) -> SessionEntry:
            p, plan = data["patient"], data["plan"]
            weight = p.get("weight_kg")
            rems = _rems(p.get("rems_enrolled"))
            sex = p.get("sex")
            patient = records.get_or_create_patient(
                s,
                str(p["mrn"]),
                str(p.get("first_name", "")),
                str(p.get("last_name", "")),
                middle_initial=str(p.get("middle_initial") or ""),
                date_of_birth=date.fromisoformat(p["date_of_birth"])
                if p.get("date_of_birth")
                else None,
                sex=Sex(sex) if sex in {x.value for x in Sex} else None,
                weight_kg=weight,
                rems_enrolment=rems,
            )
            if weight and patient.weight_kg != weight:
                patient.weight_kg = float(weight)
            if p.get("rems_enrolled") is not None and patient.rems_enrolment is not rems:
                patient.rems_enrolment = rems
            who = draft.author or actor
            role = (
                StaffRole.PRESCRIBER if who.role is ActorRole.PHYSICIAN else StaffRole.MONITORING
            )
            ts = records.start_session(
                s,
                chair=str(data["chair"]),
                patient=patient,
                device=str(data.get("device") or ""),
                started=draft.at,
                treatment=TreatmentType(plan["treatment"]),
                profile=self.profile,
                profile_origin=self.profile_origin,
                staff=[(who.id, role)],
                weight_kg=weight,
                first_treatment=plan.get("first_treatment"),
                planned_dose_mg=plan.get("dose_mg") or plan.get("oral_mg"),
                planned_mg_per_kg=plan.get("iv_mg_per_kg") or plan.get("im_mg_per_kg"),
                planned_minutes=plan.get("iv_minutes"),
            )
            data["patient"] = {**p, "id": patient.id}
            return self._record(s, ts, draft, actor, lambda c: c.sid, data)

        return self._write(op, actor)

    def append(
        self, session_id: int, drafts: Sequence[EntryDraft], actor: Actor
    ) -> list[SessionEntry]:
        drafts = list(drafts)

        def op(s: Session) -> list[SessionEntry]:
            # FOR NO KEY UPDATE (PostgreSQL): appends to one session queue, so no entry slips
            # in between the lock check (or a signature's "covers") and the signature; rows
            # that only reference the session (readings) are not held up
            ts = s.get(TreatmentSession, session_id, with_for_update={"key_share": True})
            if ts is None:
                raise RecordError(f"no treatment session {session_id}")
            _check_lock(s, ts, drafts)
            return [self._record(s, ts, d, actor, PROJECTIONS[d.kind]) for d in drafts]

        return self._write(op, actor) if drafts else []

    # ---- reads -----------------------------------------------------------------------------
    def load(self, session_id: int) -> list[SessionEntry]:
        with Session(self.engine) as s:
            return _entries(s, SessionEntryRow.session_id == session_id)

    def open_sessions(self) -> list[OpenSessionRef]:
        entry = SessionEntryRow
        q = (
            select(
                TreatmentSession.id, TreatmentSession.chair, TreatmentSession.started_at, Patient
            )
            .join(Patient, Patient.id == TreatmentSession.patient_id)
            .where(
                TreatmentSession.ended_at.is_(None),
                exists().where(
                    and_(
                        entry.session_id == TreatmentSession.id,
                        entry.kind == EntryKind.STARTED.value,
                    )
                ),
                ~exists().where(
                    and_(entry.session_id == TreatmentSession.id, entry.kind.in_(ENDED))
                ),
            )
            .order_by(TreatmentSession.started_at, TreatmentSession.id)
        )
        with Session(self.engine) as s:
            return [
                OpenSessionRef(sid, chair, _patient_info(p).label, started)
                for sid, chair, started, p in s.execute(q)
            ]

    def find_patients(self, query: str) -> list[PatientInfo]:
        return [_patient_info(p) for p in records.find_patients(self.engine, query)]

    def system_actor(self) -> Actor:
        if self._system is None:
            with Session(self.engine) as s:
                user = s.get(User, system_user_id(s))
                assert user is not None
                self._system = Actor(user.id, user.username, user.full_name, ActorRole.SYSTEM)
        return self._system


__all__ = [
    "PROJECTIONS",
    "SESSION_STATUSES",
    "SessionRow",
    "SqlSessionRepository",
    "list_sessions",
]


def previous_session(
    engine: Engine, session_id: int, treatment: str = "esketamine", *, look_back: int = 10
) -> tuple[tuple[SessionEntry, ...], SessionState] | None:
    """The same patient's latest earlier session of ``treatment`` (what a form carries over),
    looking at most ``look_back`` sessions back."""
    from ketamon.domain.record import fold

    with Session(engine) as s:
        patient_id = s.scalar(
            select(TreatmentSession.patient_id).where(TreatmentSession.id == session_id)
        )
        earlier = list(
            s.scalars(
                select(TreatmentSession.id)
                .where(TreatmentSession.patient_id == patient_id, TreatmentSession.id < session_id)
                .order_by(TreatmentSession.id.desc())
                .limit(look_back)
            )
        )
    repo = SqlSessionRepository(engine)
    for sid in earlier:
        entries = tuple(repo.load(sid))
        state = fold(entries)
        if state is not None and state.plan.treatment.value == treatment:
            return entries, state
    return None
