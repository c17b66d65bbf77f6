"""The chair screen's store, on the database: every call runs in the single writer thread, in
its own transaction, committed at once, attributed to the signed-in user (and so audited)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.readings import Reading
from devices.supervisor import StatusEvent
from ketamon import services
from ketamon.domain.alarms import AlarmEvent
from ketamon.domain.session_rules import Treatment
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.model.types import (
    CurrentUser,
    DischargeOutcome,
    Entry,
    OpenSessionInfo,
    PatientDetails,
    Screening,
    SessionPlan,
    SideEffectEntry,
)
from ketamon.storage import audit, records
from ketamon.storage.models import (
    DoseEvent,
    DoseKind,
    Observation,
    Patient,
    RemsEnrolment,
    Sex,
    StaffRole,
    TreatmentSession,
    TreatmentType,
    User,
)
from ketamon.storage.writer import DatabaseWriter

TIMEOUT_S = 15.0
T = TypeVar("T")


def _details(p: Patient) -> PatientDetails:
    return PatientDetails(
        id=p.id,
        mrn=p.mrn,
        first_name=p.first_name,
        last_name=p.last_name,
        middle_initial=p.middle_initial,
        date_of_birth=p.date_of_birth,
        sex=p.sex.value if p.sex else None,
        weight_kg=p.weight_kg,
        rems_enrolled=(
            True
            if p.rems_enrolment is RemsEnrolment.ENROLLED
            else False
            if p.rems_enrolment is RemsEnrolment.NOT_ENROLLED
            else None
        ),
    )


class WriterSessionStore:
    def __init__(
        self,
        writer: DatabaseWriter,
        engine: Engine,
        profile: ThresholdProfile,
        profile_origin: str = "",
    ) -> None:
        self.writer = writer
        self.engine = engine
        self.profile = profile
        self.profile_origin = profile_origin

    def _call(self, op: Callable[[Session], T], user: CurrentUser | None) -> T:
        return self.writer.call(op, TIMEOUT_S, user_id=None if user is None else user.id)

    # ---- reads (own short Session, never shared) ----------------------------------------
    def find_patients(self, query: str) -> list[PatientDetails]:
        return [_details(p) for p in records.find_patients(self.engine, query)]

    def open_sessions(self) -> list[OpenSessionInfo]:
        out: list[OpenSessionInfo] = []
        with Session(self.engine) as s:
            rows = s.scalars(
                select(TreatmentSession).where(TreatmentSession.ended_at.is_(None))
            ).all()
            for ts in rows:
                doses = s.scalars(
                    select(DoseEvent)
                    .where(DoseEvent.session_id == ts.id)
                    .order_by(DoseEvent.given_at)
                ).all()
                treatment = Treatment(ts.treatment.value)
                plan = SessionPlan(
                    treatment,
                    dose_mg=ts.planned_dose_mg,
                    iv_mg_per_kg=ts.planned_mg_per_kg,
                    iv_minutes=ts.planned_minutes,
                    first_treatment=bool(ts.first_treatment),
                )
                infusions = [d for d in doses if d.kind is DoseKind.IV_INFUSION]
                out.append(
                    OpenSessionInfo(
                        session_id=ts.id,
                        chair=ts.chair,
                        patient=_details(ts.patient),
                        plan=plan,
                        started=ts.started_at,
                        first_dose=ts.first_dose_at,
                        device_times=[
                            d.given_at for d in doses if d.kind is DoseKind.ESKETAMINE_DEVICE
                        ],
                        entries=self._entries(s, ts.id),
                        infusion=(
                            (infusions[0].id, infusions[0].given_at, infusions[0].stopped_at)
                            if infusions
                            else None
                        ),
                    )
                )
        return out

    @staticmethod
    def _entries(s: Session, session_id: int) -> list[Entry]:
        names = {u.id: u.full_name for u in s.scalars(select(User))}
        rows = s.scalars(
            select(Observation)
            .where(Observation.session_id == session_id)
            .order_by(Observation.observed_at, Observation.id)
        ).all()
        out: list[Entry] = []
        for o in rows:
            author = names.get(o.author_id, "?")
            kind = o.kind.value
            if kind == "moaas" and o.score is not None:
                out.append(Entry(o.id, kind, o.observed_at, author, str(o.score)))
            elif kind == "cadss":
                total = sum(i.score for i in o.items)
                out.append(Entry(o.id, kind, o.observed_at, author, str(total)))
            elif kind == "side_effect" and o.severity is not None:
                out.append(
                    Entry(
                        o.id,
                        kind,
                        o.observed_at,
                        author,
                        o.severity.value,
                        item=o.item or "",
                        serious=o.serious,
                    )
                )
            elif kind == "note":
                out.append(Entry(o.id, kind, o.observed_at, author, o.text))
        return out

    # ---- writes ------------------------------------------------------------------------
    def start_session(
        self,
        chair: str,
        patient: PatientDetails,
        plan: SessionPlan,
        device: str,
        user: CurrentUser,
        when: datetime,
    ) -> int:
        def op(s: Session) -> int:
            rems = (
                RemsEnrolment.ENROLLED
                if patient.rems_enrolled
                else RemsEnrolment.NOT_ENROLLED
                if patient.rems_enrolled is False
                else RemsEnrolment.UNKNOWN
            )
            p = records.get_or_create_patient(
                s,
                patient.mrn,
                patient.first_name,
                patient.last_name,
                middle_initial=patient.middle_initial,
                date_of_birth=patient.date_of_birth,
                sex=Sex(patient.sex) if patient.sex else None,
                weight_kg=patient.weight_kg,
                rems_enrolment=rems,
            )
            if patient.weight_kg and p.weight_kg != patient.weight_kg:
                p.weight_kg = patient.weight_kg
            if patient.rems_enrolled is not None and p.rems_enrolment is not rems:
                p.rems_enrolment = rems
            role = StaffRole.PRESCRIBER if user.is_physician else StaffRole.MONITORING
            ts = records.start_session(
                s,
                chair=chair,
                patient=p,
                device=device,
                started=when,
                treatment=TreatmentType(plan.treatment.value),
                profile=self.profile,
                profile_origin=self.profile_origin,
                staff=[(user.id, role)],
                weight_kg=patient.weight_kg,
                first_treatment=plan.first_treatment,
                planned_dose_mg=plan.dose_mg,
                planned_mg_per_kg=plan.iv_mg_per_kg,
                planned_minutes=plan.iv_minutes,
            )
            return ts.id

        return self._call(op, user)

    def save_screening(
        self, session_id: int, screening: Screening, user: CurrentUser, when: datetime
    ) -> None:
        def op(s: Session) -> None:
            records.record_screening(
                s,
                session_id,
                when=when,
                fasting=screening.fasting,
                escort=screening.escort_confirmed,
                benzodiazepine=screening.benzodiazepine,
                hypnotic=screening.hypnotic,
                opioid=screening.opioid,
                psychostimulant=screening.psychostimulant,
                maoi=screening.maoi,
                decision=screening.decision.value if screening.decision else None,
                decision_by_id=screening.decision_by_id,
                override_reason=screening.override_reason,
                override_by_id=screening.override_by_id,
            )
            ts = s.get(TreatmentSession, session_id)
            assert ts is not None
            if ts.vitals_ok_before is None:
                ts.vitals_ok_before = screening.bp is not None and screening.decision is None
            if screening.rems_enrolled is not None:
                rems = (
                    RemsEnrolment.ENROLLED
                    if screening.rems_enrolled
                    else RemsEnrolment.NOT_ENROLLED
                )
                if ts.patient.rems_enrolment is not rems:
                    with audit.reason(s, "confirmed at the pre-dose screening"):
                        ts.patient.rems_enrolment = rems
            parts = [
                "Pre-dose screening: BP "
                + (
                    f"{screening.bp[0]:g}/{screening.bp[1]:g} ({screening.bp_source})"
                    if screening.bp
                    else "not taken"
                ),
                f"HR {screening.hr:g}" if screening.hr is not None else "HR not taken",
            ]
            if screening.decision is not None:
                parts.append(
                    f"prescriber decision: {screening.decision.value} ({screening.decision_by})"
                )
            records.record_note(s, session_id, "; ".join(parts), when)

        self._call(op, user)

    def log_esketamine_device(
        self,
        session_id: int,
        device_number: int,
        mg: float,
        lot: str,
        user: CurrentUser,
        when: datetime,
    ) -> int:
        def op(s: Session) -> int:
            return records.record_esketamine_device(
                s, session_id, device_number=device_number, when=when, lot=lot, mg=mg
            ).id

        return self._call(op, user)

    def start_infusion(
        self,
        session_id: int,
        mg: float,
        mg_per_kg: float,
        weight_kg: float,
        rate_mg_per_min: float,
        user: CurrentUser,
        when: datetime,
    ) -> int:
        def op(s: Session) -> int:
            return records.start_infusion(
                s,
                session_id,
                mg=mg,
                when=when,
                rate=rate_mg_per_min,
                rate_unit="mg/min",
                weight_kg=weight_kg,
            ).id

        return self._call(op, user)

    def stop_infusion(self, dose_id: int, user: CurrentUser, when: datetime) -> None:
        self._call(lambda s: records.stop_infusion(s, dose_id, when), user)

    def record_moaas(self, session_id: int, score: int, user: CurrentUser, when: datetime) -> int:
        return int(self._call(lambda s: records.record_moaas(s, session_id, score, when).id, user))

    def record_cadss(
        self, session_id: int, items: Mapping[int, int], user: CurrentUser, when: datetime
    ) -> int:
        return int(
            self._call(lambda s: records.record_cadss(s, session_id, dict(items), when).id, user)
        )

    def record_side_effect(
        self, session_id: int, entry: SideEffectEntry, user: CurrentUser, when: datetime
    ) -> int:
        return int(
            self._call(
                lambda s: (
                    records.record_side_effect(
                        s,
                        session_id,
                        entry.key,
                        entry.severity.value,
                        when=when,
                        onset=entry.onset,
                        serious=entry.serious,
                        note=entry.text,
                    ).id
                ),
                user,
            )
        )

    def record_note(self, session_id: int, text: str, user: CurrentUser, when: datetime) -> int:
        return int(self._call(lambda s: records.record_note(s, session_id, text, when).id, user))

    def correct_entry(self, entry: Entry, new_value: str, reason: str, user: CurrentUser) -> None:
        field = {"moaas": "score", "side_effect": "severity", "note": "text"}[entry.kind]
        value: object = int(new_value) if field == "score" else new_value
        self._call(
            lambda s: records.edit_with_reason(s, Observation, entry.id, {field: value}, reason),
            user,
        )

    def record_manual_vitals(
        self, session_id: int, readings: Sequence[Reading], user: CurrentUser
    ) -> None:
        if not readings:
            return
        when = readings[0].host_time
        values = {r.parameter: r.value for r in readings}
        self._call(lambda s: records.record_manual_vitals(s, session_id, values, when), user)

    def submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        self.writer.submit_readings(session_id, readings)

    def record_alarm(self, session_id: int, event: AlarmEvent, user: CurrentUser | None) -> None:
        # Asynchronous: alarms are recorded in order by the one writer, without blocking the UI.
        acted = user if event.action.value == "acknowledged" else None
        self.writer.submit(
            lambda s: services.record_alarm(
                s,
                session_id,
                key=event.key,
                action=event.action.value,
                priority=event.priority.label,
                message=event.message,
                when=event.time,
                technical=event.technical,
                user_id=None if acted is None else acted.id,
            ),
            user_id=None if user is None else user.id,
        )

    def record_link(self, session_id: int, event: StatusEvent) -> None:
        self.writer.submit(
            lambda s: services.record_link_event(
                s, session_id, event.state.value, event.reason, event.time
            )
        )

    def record_threshold_override(
        self,
        session_id: int,
        profile: ThresholdProfile,
        limit_id: str,
        reason: str,
        user: CurrentUser,
        when: datetime,
    ) -> None:
        def op(s: Session) -> None:
            lim = next(x for x in profile.limits if x.id == limit_id)
            bounds = "/".join("–" if v is None else f"{v:g}" for v in (lim.low, lim.high))
            with audit.reason(s, reason):
                records.record_profile(s, session_id, profile, when, origin="session override")
            records.record_note(
                s,
                session_id,
                f"Threshold {limit_id} changed to {bounds} for this session: {reason}",
                when,
            )

        self._call(op, user)

    def discharge(
        self, session_id: int, outcome: DischargeOutcome, user: CurrentUser, when: datetime
    ) -> None:
        def op(s: Session) -> None:
            ts = s.get(TreatmentSession, session_id)
            assert ts is not None
            ts.sedation = outcome.sedation
            ts.dissociation = outcome.dissociation
            ts.respiratory_depression = outcome.respiratory_depression
            ts.serious_adverse_event = outcome.serious_adverse_event
            ts.pulse_oximetry_used = outcome.pulse_oximetry_used
            ts.vitals_ok_end = outcome.vitals_ok_end
            text = f"Discharge: total duration {outcome.total_duration_min} min"
            if outcome.early_override_reason:
                text += (
                    f". Early discharge authorised by {outcome.override_by}: "
                    f"{outcome.early_override_reason}"
                )
            records.record_note(s, session_id, text, when)
            records.discharge_session(
                s,
                session_id,
                when=when,
                checklist={k.value: v for k, v in outcome.checklist.items()},
                ready_to_leave_min=outcome.ready_to_leave_min,
                early_reason=outcome.early_override_reason,
                early_by_id=outcome.override_by_id,
            )

        self._call(op, user)
