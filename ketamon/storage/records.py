"""The session record: what a nurse or physician enters, as short operations on a Session.

Every function here takes the writer's Session (``writer.call(lambda s: record_moaas(s, …))``)
and flushes; the writer commits at once. The acting user comes from the Session
(:func:`ketamon.storage.audit.current_user_id`), is stored as the author where the row has one,
and the audit hooks write the trail in the same transaction. Times must be timezone-aware.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devices.readings import PARAMETERS, Quality
from ketamon.domain.scales import CADSS_ITEMS as CADSS_ITEM_COUNT
from ketamon.domain.scales import CADSS_MAX_ITEM, MOAAS_LEVELS
from ketamon.domain.session_rules import ESKETAMINE_DEVICE_MG
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.storage.audit import append_entry, current_user_id, reason
from ketamon.storage.database import in_session
from ketamon.storage.models import (
    AlarmRecord,
    AuditAction,
    AuditEntry,
    Base,
    DoseEvent,
    DoseKind,
    Observation,
    ObservationItem,
    ObservationKind,
    Patient,
    PrescriberDecision,
    RemsEnrolment,
    Role,
    SessionPhase,
    SessionStaff,
    SessionThresholdProfile,
    Severity,
    Sex,
    StaffRole,
    TreatmentSession,
    TreatmentType,
    User,
    VitalReading,
)

B = TypeVar("B", bound=Base)

# The scales and the device size are defined once, in the domain.
MOAAS_RANGE = range(min(MOAAS_LEVELS), max(MOAAS_LEVELS) + 1)
RASS_RANGE = range(-5, 5)
CADSS_ITEMS = range(1, CADSS_ITEM_COUNT + 1)  # the 23-item form: 19 subjective + 4 observer
CADSS_SCORES = range(0, CADSS_MAX_ITEM + 1)
MANUAL_SOURCE = "manual"


class RecordError(ValueError):
    """An entry that cannot be recorded as given; the message says why."""


def _aware(when: datetime, what: str) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise RecordError(f"{what}: the time must carry its time zone")
    return when


def _session(s: Session, session_id: int) -> TreatmentSession:
    ts = s.get(TreatmentSession, session_id)
    if ts is None:
        raise RecordError(f"no treatment session {session_id}")
    return ts


# ---- patients and sessions ---------------------------------------------------------------------


def get_or_create_patient(
    s: Session,
    mrn: str,
    first: str,
    last: str,
    *,
    middle_initial: str = "",
    date_of_birth: Any = None,
    sex: Sex | None = None,
    weight_kg: float | None = None,
    rems_enrolment: RemsEnrolment = RemsEnrolment.UNKNOWN,
) -> Patient:
    p = s.scalars(select(Patient).where(Patient.mrn == mrn)).first()
    if p is None:
        if weight_kg is not None and not weight_kg > 0:
            raise RecordError("weight must be positive")
        p = Patient(
            mrn=mrn,
            first_name=first,
            last_name=last,
            middle_initial=middle_initial,
            date_of_birth=date_of_birth,
            sex=sex,
            weight_kg=weight_kg,
            rems_enrolment=rems_enrolment,
        )
        if s.get_bind().dialect.name != "postgresql":
            # SQLite serialises writers (no race), and pysqlite's SAVEPOINTs would break the
            # surrounding transaction's atomicity: a plain insert
            s.add(p)
            s.flush()
            return p
        try:
            with s.begin_nested():  # another station may be making the same patient now
                s.add(p)
                s.flush()
        except IntegrityError:
            found = s.scalars(select(Patient).where(Patient.mrn == mrn)).first()
            if found is None:
                raise
            p = found
    return p


def find_patients(target: Engine | Session, query: str, *, limit: int = 20) -> list[Patient]:
    """Patients whose MRN or name contains ``query`` (case-insensitive), by last name."""

    def op(s: Session) -> list[Patient]:
        q = query.strip()
        stmt = select(Patient).order_by(Patient.last_name, Patient.first_name, Patient.id)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(
                or_(
                    Patient.mrn.ilike(pattern, escape="\\"),
                    Patient.first_name.ilike(pattern, escape="\\"),
                    Patient.last_name.ilike(pattern, escape="\\"),
                    (Patient.first_name + " " + Patient.last_name).ilike(pattern, escape="\\"),
                )
            )
        return list(s.scalars(stmt.limit(limit)))

    return in_session(target, op)


def start_session(
    s: Session,
    *,
    chair: str,
    patient: Patient,
    device: str,
    started: datetime,
    treatment: TreatmentType = TreatmentType.OTHER,
    profile: ThresholdProfile | None = None,
    profile_origin: str = "",
    staff: Sequence[tuple[int, StaffRole]] = (),
    weight_kg: float | None = None,
    first_treatment: bool | None = None,
    planned_dose_mg: float | None = None,
    planned_mg_per_kg: float | None = None,
    planned_minutes: float | None = None,
) -> TreatmentSession:
    ts = TreatmentSession(
        patient_id=patient.id,
        chair=chair,
        device=device,
        started_at=_aware(started, "session start"),
        treatment=treatment,
        weight_kg=weight_kg,
        first_treatment=first_treatment,
        planned_dose_mg=planned_dose_mg,
        planned_mg_per_kg=planned_mg_per_kg,
        planned_minutes=planned_minutes,
    )
    s.add(ts)
    s.flush()
    for user_id, role in staff:
        assign_staff(s, ts.id, user_id, role)
    if profile is not None:
        record_profile(s, ts.id, profile, started, origin=profile_origin)
    return ts


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session with no end time: after a crash, the app offers to resume these."""

    id: int
    chair: str
    patient_id: int
    patient_name: str
    mrn: str
    treatment: TreatmentType
    phase: SessionPhase
    started_at: datetime
    first_dose_at: datetime | None
    device: str
    last_reading_at: datetime | None


def _open_session_view(s: Session, ts: TreatmentSession) -> OpenSession:
    last = s.scalar(
        select(func.max(VitalReading.host_time)).where(VitalReading.session_id == ts.id)
    )
    p = ts.patient
    return OpenSession(
        id=ts.id,
        chair=ts.chair,
        patient_id=p.id,
        patient_name=f"{p.first_name} {p.last_name}".strip(),
        mrn=p.mrn,
        treatment=ts.treatment,
        phase=ts.phase,
        started_at=ts.started_at,
        first_dose_at=ts.first_dose_at,
        device=ts.device,
        last_reading_at=last,
    )


def list_open_sessions(target: Engine | Session, chair: str | None = None) -> list[OpenSession]:
    """Open sessions (no end time), newest first, optionally for one chair."""

    def op(s: Session) -> list[OpenSession]:
        q = select(TreatmentSession).where(TreatmentSession.ended_at.is_(None))
        if chair is not None:
            q = q.where(TreatmentSession.chair == chair)
        q = q.order_by(TreatmentSession.started_at.desc(), TreatmentSession.id.desc())
        return [_open_session_view(s, ts) for ts in s.scalars(q)]

    return in_session(target, op)


def resume_session(
    s: Session, session_id: int, *, why: str = "resumed after restart"
) -> OpenSession:
    """Carry on recording an open session; the resumption is written to the audit trail."""
    ts = _session(s, session_id)
    if ts.ended_at is not None:
        raise RecordError(f"session {session_id} has ended; it cannot be resumed")
    append_entry(
        s,
        action=AuditAction.RESUME,
        entity="treatment_session",
        entity_id=ts.id,
        session_id=ts.id,
        why=why,
    )
    s.flush()
    return _open_session_view(s, ts)


def end_session(
    s: Session,
    session_id: int,
    when: datetime,
    *,
    phase: SessionPhase = SessionPhase.DISCHARGED,
) -> TreatmentSession:
    ts = _session(s, session_id)
    if ts.ended_at is not None:
        raise RecordError(f"session {session_id} has already ended")
    ts.ended_at = _aware(when, "session end")
    ts.phase = phase
    s.flush()
    return ts


def _physician(s: Session, user_id: int | None, what: str) -> int:
    user = s.get(User, user_id) if user_id is not None else None
    if user is None or user.role is not Role.PHYSICIAN or not user.active:
        raise RecordError(f"{what} must be made by an active physician")
    return user.id


def record_screening(
    s: Session,
    session_id: int,
    *,
    when: datetime,
    fasting: bool | None = None,
    escort: bool | None = None,
    first_treatment: bool | None = None,
    benzodiazepine: bool | None = None,
    hypnotic: bool | None = None,
    opioid: bool | None = None,
    psychostimulant: bool | None = None,
    maoi: bool | None = None,
    decision: PrescriberDecision | str | None = None,
    decision_by_id: int | None = None,
    override_reason: str = "",
    override_by_id: int | None = None,
) -> TreatmentSession:
    """Pre-dose checks: fasting, escort, concomitant drugs (PMF), the prescriber's decision on a
    high pre-dose BP, or a physician's override for a missing one. The BP itself is a reading
    (monitor or :func:`record_manual_vitals`). Changing an answer already given needs
    :func:`edit_with_reason`."""
    ts = _session(s, session_id)
    when = _aware(when, "screening")
    answers = {
        "fasting_confirmed": fasting,
        "escort_confirmed": escort,
        "first_treatment": first_treatment,
        "concomitant_benzodiazepine": benzodiazepine,
        "concomitant_hypnotic": hypnotic,
        "concomitant_opioid": opioid,
        "concomitant_psychostimulant": psychostimulant,
        "concomitant_maoi": maoi,
    }
    for key, value in answers.items():
        if value is not None:
            setattr(ts, key, value)
    if decision is not None:
        try:
            ts.predose_decision = PrescriberDecision(decision)
        except ValueError:
            raise RecordError(f"the decision is proceed or delay, not {decision!r}") from None
        ts.predose_decision_by_id = _physician(s, decision_by_id, "the pre-dose decision")
        ts.predose_decision_at = when
    if override_reason.strip():
        ts.predose_override_reason = override_reason.strip()
        ts.predose_override_by_id = _physician(s, override_by_id, "a pre-dose override")
    elif override_by_id is not None:
        raise RecordError("an override needs a typed reason")
    s.flush()
    return ts


def discharge_session(
    s: Session,
    session_id: int,
    *,
    when: datetime,
    checklist: Mapping[str, bool],
    ready_to_leave_min: int,
    early_reason: str = "",
    early_by_id: int | None = None,
) -> TreatmentSession:
    """End monitoring: the checklist answers, the REMS "ready to leave" minutes, an early
    discharge override if any; the acting user is recorded as the discharging clinician."""
    ts = _session(s, session_id)
    if ts.ended_at is not None:
        raise RecordError(f"session {session_id} has already ended")
    if ready_to_leave_min < 0:
        raise RecordError("the ready-to-leave minutes cannot be negative")
    when = _aware(when, "discharge")
    ts.discharge_checklist = json.dumps(
        {str(k): bool(v) for k, v in checklist.items()}, sort_keys=True
    )
    ts.ready_to_leave_min = ready_to_leave_min
    if early_reason.strip():
        ts.early_discharge_reason = early_reason.strip()
        ts.early_discharge_by_id = _physician(s, early_by_id, "an early discharge")
    elif early_by_id is not None:
        raise RecordError("an early discharge override needs a typed reason")
    ts.ended_at = when
    ts.phase = SessionPhase.DISCHARGED
    s.add(
        SessionStaff(
            session_id=session_id,
            user_id=current_user_id(s),
            role=StaffRole.DISCHARGING,
            assigned_at=when,
        )
    )
    s.flush()
    return ts


def set_phase(s: Session, session_id: int, phase: SessionPhase) -> None:
    _session(s, session_id).phase = phase
    s.flush()


def assign_staff(s: Session, session_id: int, user_id: int, role: StaffRole) -> SessionStaff:
    if s.get(User, user_id) is None:
        raise RecordError(f"no user {user_id}")
    row = SessionStaff(session_id=session_id, user_id=user_id, role=role)
    s.add(row)
    s.flush()
    return row


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def profile_json(profile: ThresholdProfile) -> str:
    return json.dumps(
        _plain(dataclasses.asdict(profile)), sort_keys=True, ensure_ascii=False, default=str
    )


def record_profile(
    s: Session,
    session_id: int,
    profile: ThresholdProfile,
    effective_from: datetime,
    *,
    origin: str = "",
) -> SessionThresholdProfile:
    """Snapshot the threshold profile in force for a session from ``effective_from``."""
    content = profile_json(profile)
    row = SessionThresholdProfile(
        session_id=session_id,
        name=profile.name,
        origin=origin,
        content=content,
        sha256=hashlib.sha256(content.encode()).hexdigest(),
        effective_from=_aware(effective_from, "profile"),
    )
    s.add(row)
    s.flush()
    return row


def profile_in_force(
    s: Session, session_id: int, at: datetime | None = None
) -> SessionThresholdProfile | None:
    q = select(SessionThresholdProfile).where(SessionThresholdProfile.session_id == session_id)
    if at is not None:
        q = q.where(SessionThresholdProfile.effective_from <= at)
    q = q.order_by(
        SessionThresholdProfile.effective_from.desc(), SessionThresholdProfile.id.desc()
    )
    return s.scalars(q).first()


# ---- doses ---------------------------------------------------------------------------------


def _first_dose(ts: TreatmentSession, when: datetime) -> None:
    if ts.first_dose_at is None:
        ts.first_dose_at = when
    if ts.phase is SessionPhase.PRE_DOSE:
        ts.phase = SessionPhase.DOSING


def record_esketamine_device(
    s: Session,
    session_id: int,
    *,
    device_number: int,
    when: datetime,
    lot: str | None = None,
    mg: float = ESKETAMINE_DEVICE_MG,
    note: str = "",
) -> DoseEvent:
    """One esketamine nasal device. The first one starts the session clock."""
    ts = _session(s, session_id)
    if ts.treatment is TreatmentType.IV_KETAMINE:
        raise RecordError(f"session {session_id} is an IV ketamine session")
    if device_number < 1:
        raise RecordError("the device number starts at 1")
    if not mg > 0:
        raise RecordError("the dose must be positive")
    taken = s.scalar(
        select(DoseEvent.id).where(
            DoseEvent.session_id == session_id,
            DoseEvent.kind == DoseKind.ESKETAMINE_DEVICE,
            DoseEvent.device_number == device_number,
        )
    )
    if taken is not None:
        raise RecordError(f"device {device_number} is already recorded for this session")
    when = _aware(when, "dose")
    dose = DoseEvent(
        session_id=session_id,
        kind=DoseKind.ESKETAMINE_DEVICE,
        given_at=when,
        drug="esketamine",
        mg=mg,
        device_number=device_number,
        lot=(lot or "").strip() or None,
        note=note,
        recorded_by_id=current_user_id(s),
    )
    s.add(dose)
    _first_dose(ts, when)
    s.flush()
    return dose


def start_infusion(
    s: Session,
    session_id: int,
    *,
    mg: float,
    when: datetime,
    rate: float | None = None,
    rate_unit: str = "mg/h",
    weight_kg: float | None = None,
    lot: str | None = None,
    drug: str = "ketamine",
    note: str = "",
) -> DoseEvent:
    """Start of an IV infusion; mg/kg from ``weight_kg`` or the session's or patient's weight."""
    ts = _session(s, session_id)
    if ts.treatment is TreatmentType.ESKETAMINE:
        raise RecordError(f"session {session_id} is an esketamine session")
    if not mg > 0:
        raise RecordError("the dose must be positive")
    if rate is not None and not rate >= 0:
        raise RecordError("the rate must not be negative")
    weight = weight_kg if weight_kg is not None else ts.weight_kg or ts.patient.weight_kg
    if weight is not None and not weight > 0:
        raise RecordError("weight must be positive")
    when = _aware(when, "infusion start")
    dose = DoseEvent(
        session_id=session_id,
        kind=DoseKind.IV_INFUSION,
        given_at=when,
        drug=drug,
        mg=mg,
        lot=(lot or "").strip() or None,
        weight_kg=weight,
        mg_per_kg=round(mg / weight, 4) if weight else None,
        rate=rate,
        rate_unit=rate_unit if rate is not None else None,
        note=note,
        recorded_by_id=current_user_id(s),
    )
    s.add(dose)
    _first_dose(ts, when)
    s.flush()
    return dose


def stop_infusion(s: Session, dose_id: int, when: datetime) -> DoseEvent:
    dose = s.get(DoseEvent, dose_id)
    if dose is None or dose.kind is not DoseKind.IV_INFUSION:
        raise RecordError(f"no infusion {dose_id}")
    if dose.stopped_at is not None:
        raise RecordError(f"infusion {dose_id} was already stopped")
    when = _aware(when, "infusion stop")
    if when < dose.given_at:
        raise RecordError("an infusion cannot stop before it started")
    dose.stopped_at = when
    s.flush()
    return dose


# ---- observations ----------------------------------------------------------------------------


def _observation(
    s: Session, session_id: int, kind: ObservationKind, when: datetime, **values: Any
) -> Observation:
    _session(s, session_id)
    obs = Observation(
        session_id=session_id,
        kind=kind,
        observed_at=_aware(when, kind.value),
        author_id=current_user_id(s),
        **values,
    )
    s.add(obs)
    return obs


def record_moaas(
    s: Session, session_id: int, score: int, when: datetime, *, note: str = ""
) -> Observation:
    if score not in MOAAS_RANGE:
        raise RecordError(f"MOAA/S is 0–5, not {score!r}")
    obs = _observation(s, session_id, ObservationKind.MOAAS, when, score=score, text=note)
    s.flush()
    return obs


def record_rass(
    s: Session, session_id: int, score: int, when: datetime, *, note: str = ""
) -> Observation:
    if score not in RASS_RANGE:
        raise RecordError(f"RASS is −5…+4, not {score!r}")
    obs = _observation(s, session_id, ObservationKind.RASS, when, score=score, text=note)
    s.flush()
    return obs


def record_cadss(
    s: Session, session_id: int, scores: Mapping[int, int], when: datetime, *, note: str = ""
) -> Observation:
    """CADSS item scores (items 1–23, each 0–4); the total is their sum, not stored twice."""
    if not scores:
        raise RecordError("CADSS needs at least one item score")
    for item, score in scores.items():
        if item not in CADSS_ITEMS:
            raise RecordError(f"CADSS items are 1–23, not {item!r}")
        if score not in CADSS_SCORES:
            raise RecordError(f"CADSS item {item}: scores are 0–4, not {score!r}")
    obs = _observation(s, session_id, ObservationKind.CADSS, when, text=note)
    obs.items = [ObservationItem(item=i, score=scores[i]) for i in sorted(scores)]
    s.flush()
    return obs


def record_side_effect(
    s: Session,
    session_id: int,
    item: str,
    severity: Severity | str,
    *,
    when: datetime,
    onset: datetime | None = None,
    serious: bool | None = None,
    note: str = "",
) -> Observation:
    """A side-effect checklist item (clinical.md §4) with severity and onset time."""
    item = item.strip()
    if not item:
        raise RecordError("the side effect needs an item")
    try:
        sev = Severity(severity)
    except ValueError:
        raise RecordError(
            f"severity must be one of {', '.join(v.value for v in Severity)}"
        ) from None
    obs = _observation(
        s,
        session_id,
        ObservationKind.SIDE_EFFECT,
        when,
        item=item,
        severity=sev,
        onset_at=None if onset is None else _aware(onset, "onset"),
        serious=serious,
        text=note,
    )
    s.flush()
    return obs


def record_note(s: Session, session_id: int, text: str, when: datetime) -> Observation:
    if not text.strip():
        raise RecordError("the note is empty")
    obs = _observation(s, session_id, ObservationKind.NOTE, when, text=text)
    s.flush()
    return obs


# ---- manual vitals ---------------------------------------------------------------------------


def record_manual_vitals(
    s: Session, session_id: int, values: Mapping[str, float], when: datetime
) -> list[VitalReading]:
    """Vitals a nurse typed in (marked manual, attributed, audited)."""
    _session(s, session_id)
    if not values:
        raise RecordError("no values given")
    when = _aware(when, "manual vitals")
    uid = current_user_id(s)
    rows = []
    for parameter, value in values.items():
        info = PARAMETERS.get(parameter)
        if info is None:
            raise RecordError(f"unknown parameter {parameter!r}")
        v = float(value)
        if not math.isfinite(v):
            raise RecordError(f"{parameter}: the value must be a number")
        rows.append(
            VitalReading(
                session_id=session_id,
                parameter=parameter,
                value=v,
                unit=info.unit,
                mdc=info.mdc,
                host_time=when,
                device_time=None,
                quality=Quality.MANUAL.value,
                source=MANUAL_SOURCE,
                entered_by_id=uid,
            )
        )
    s.add_all(rows)
    s.flush()
    return rows


# ---- corrections -----------------------------------------------------------------------------

#: what may be corrected after the fact (with a reason); keys, links and authorship may not
EDITABLE: dict[type[Base], frozenset[str]] = {
    Patient: frozenset(
        {
            "mrn",
            "first_name",
            "middle_initial",
            "last_name",
            "date_of_birth",
            "sex",
            "weight_kg",
            "rems_enrolment",
            "rems_enrolled_on",
        }
    ),
    TreatmentSession: frozenset(
        {
            "chair",
            "treatment",
            "phase",
            "started_at",
            "first_dose_at",
            "ended_at",
            "device",
            "note",
            "weight_kg",
            "first_treatment",
            "concomitant_benzodiazepine",
            "concomitant_hypnotic",
            "concomitant_opioid",
            "concomitant_psychostimulant",
            "concomitant_maoi",
            "vitals_ok_before",
            "vitals_ok_end",
            "sedation",
            "dissociation",
            "respiratory_depression",
            "pulse_oximetry_used",
            "serious_adverse_event",
            "ready_to_leave_min",
            "planned_dose_mg",
            "planned_mg_per_kg",
            "planned_minutes",
            "fasting_confirmed",
            "escort_confirmed",
            "predose_decision",
            "predose_override_reason",
            "discharge_checklist",
            "early_discharge_reason",
        }
    ),
    DoseEvent: frozenset(
        {
            "given_at",
            "stopped_at",
            "mg",
            "device_number",
            "lot",
            "weight_kg",
            "mg_per_kg",
            "rate",
            "rate_unit",
            "note",
        }
    ),
    Observation: frozenset(
        {"observed_at", "score", "item", "severity", "onset_at", "serious", "text"}
    ),
    ObservationItem: frozenset({"score"}),
    VitalReading: frozenset({"value", "host_time"}),
}


def edit_with_reason(
    s: Session, model: type[B], entity_id: int, changes: Mapping[str, Any], why: str
) -> B:
    """Correct recorded values; the audit trail keeps old → new, the user and the reason."""
    allowed = EDITABLE.get(model)
    if allowed is None:
        raise RecordError(f"{model.__name__} rows cannot be edited")
    if not why.strip():
        raise RecordError("a correction needs a reason")
    bad = set(changes) - allowed
    if bad:
        raise RecordError(f"{model.__name__}: cannot edit {', '.join(sorted(bad))}")
    obj = s.get(model, entity_id)
    if obj is None:
        raise RecordError(f"no {model.__name__} {entity_id}")
    if isinstance(obj, VitalReading) and obj.source != MANUAL_SOURCE:
        raise RecordError("monitor readings are device data and cannot be edited")
    with reason(s, why):
        for key, value in changes.items():
            if isinstance(value, datetime):
                value = _aware(value, key)
            setattr(obj, key, value)
        if (
            isinstance(obj, DoseEvent)
            and "mg_per_kg" not in changes
            and {"mg", "weight_kg"} & set(changes)
            and obj.weight_kg
        ):
            obj.mg_per_kg = round(obj.mg / obj.weight_kg, 4)
    return obj


# ---- reading the trail -------------------------------------------------------------------


def audit_entries(
    target: Engine | Session,
    *,
    session_id: int | None = None,
    entity: str | None = None,
    entity_id: int | None = None,
) -> list[AuditEntry]:
    """Audit entries in the order written (read-only: the ORM refuses changes to them)."""

    def op(s: Session) -> list[AuditEntry]:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if session_id is not None:
            q = q.where(AuditEntry.session_id == session_id)
        if entity is not None:
            q = q.where(AuditEntry.entity == entity)
        if entity_id is not None:
            q = q.where(AuditEntry.entity_id == entity_id)
        return list(s.scalars(q))

    return in_session(target, op)


def record_alarm(
    s: Session,
    session_id: int,
    *,
    key: str,
    action: str,
    priority: str,
    message: str,
    when: datetime,
    technical: bool = False,
    user_id: int | None = None,
) -> None:
    """An alarm event as it happened; ``user_id`` is who acted (acknowledged it), if anyone."""
    s.add(
        AlarmRecord(
            session_id=session_id,
            key=key,
            action=action,
            priority=priority,
            message=message,
            time=when,
            technical=technical,
            user_id=user_id,
        )
    )
