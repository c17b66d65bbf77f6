"""Values passed between the chair screen, its model and the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from devices.readings import Reading
from devices.supervisor import StatusEvent
from ketamon.domain.alarms import AlarmEvent
from ketamon.domain.session_rules import ChecklistItem, PrescriberDecision, Treatment
from ketamon.domain.side_effects import Severity
from ketamon.domain.thresholds import ThresholdProfile


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int
    username: str
    full_name: str
    role: str  # nurse | physician | admin

    @property
    def is_physician(self) -> bool:
        return self.role == "physician"


@dataclass(frozen=True, slots=True)
class PatientDetails:
    mrn: str
    first_name: str
    last_name: str
    middle_initial: str = ""
    date_of_birth: date | None = None
    sex: str | None = None  # male | female | other
    weight_kg: float | None = None
    rems_enrolled: bool | None = None
    id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.mrn})"


@dataclass(frozen=True, slots=True)
class SessionPlan:
    treatment: Treatment
    dose_mg: float | None = None  # esketamine 56 or 84
    iv_mg_per_kg: float | None = None
    iv_minutes: float | None = None
    first_treatment: bool = False


@dataclass(frozen=True, slots=True)
class Screening:
    bp: tuple[float, float] | None
    hr: float | None
    bp_source: str  # "monitor" | "manual"
    fasting: bool
    escort_confirmed: bool
    benzodiazepine: bool = False
    hypnotic: bool = False
    opioid: bool = False
    psychostimulant: bool = False
    maoi: bool = False
    rems_enrolled: bool | None = None
    decision: PrescriberDecision | None = None
    decision_by: str = ""
    decision_by_id: int | None = None  # the prescriber who signed in to record it
    override_reason: str = ""  # physician override for a missing pre-dose BP
    override_by_id: int | None = None


@dataclass(frozen=True, slots=True)
class SideEffectEntry:
    key: str
    label: str
    severity: Severity
    onset: datetime | None
    serious: bool | None  # answer to "serious adverse event?" for serious items
    text: str = ""


@dataclass(frozen=True, slots=True)
class DischargeOutcome:
    checklist: Mapping[ChecklistItem, bool]
    ready_to_leave_min: int
    early_override_reason: str = ""
    override_by: str = ""
    override_by_id: int | None = None
    total_duration_min: int = 0
    # REMS Patient Monitoring Form answers, derived from the record at discharge
    sedation: bool = False
    dissociation: bool = False
    respiratory_depression: bool = False
    serious_adverse_event: bool = False
    pulse_oximetry_used: bool = False
    vitals_ok_end: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded observation as the chair screen lists it: when, who, what."""

    id: int
    kind: str  # moaas | cadss | side_effect | note
    time: datetime
    author: str
    value: str  # MOAA/S score, CADSS total, side-effect severity, or the note's text
    item: str = ""  # side-effect key
    serious: bool | None = None

    @property
    def summary(self) -> str:
        if self.kind == "moaas":
            return f"MOAA/S {self.value}"
        if self.kind == "cadss":
            return f"CADSS total {self.value}"
        if self.kind == "side_effect":
            return f"Side effect: {self.item} ({self.value})"
        return f"Note: {self.value}"


@dataclass(frozen=True, slots=True)
class OpenSessionInfo:
    session_id: int
    chair: str
    patient: PatientDetails
    plan: SessionPlan
    started: datetime
    first_dose: datetime | None
    device_times: Sequence[datetime] = field(default=())
    entries: Sequence[Entry] = field(default=())
    infusion: tuple[int, datetime, datetime | None] | None = None  # id, start, stop


class SessionStore(Protocol):
    """Persistence for one station; every call commits at once (nurse entries)."""

    def find_patients(self, query: str) -> list[PatientDetails]: ...

    def start_session(
        self,
        chair: str,
        patient: PatientDetails,
        plan: SessionPlan,
        device: str,
        user: CurrentUser,
        when: datetime,
    ) -> int: ...

    def save_screening(
        self, session_id: int, screening: Screening, user: CurrentUser, when: datetime
    ) -> None: ...

    def log_esketamine_device(
        self,
        session_id: int,
        device_number: int,
        mg: float,
        lot: str,
        user: CurrentUser,
        when: datetime,
    ) -> int: ...

    def start_infusion(
        self,
        session_id: int,
        mg: float,
        mg_per_kg: float,
        weight_kg: float,
        rate_mg_per_min: float,
        user: CurrentUser,
        when: datetime,
    ) -> int: ...

    def stop_infusion(self, dose_id: int, user: CurrentUser, when: datetime) -> None: ...

    def record_moaas(
        self, session_id: int, score: int, user: CurrentUser, when: datetime
    ) -> int: ...

    def record_cadss(
        self, session_id: int, items: Mapping[int, int], user: CurrentUser, when: datetime
    ) -> int: ...

    def record_side_effect(
        self, session_id: int, entry: SideEffectEntry, user: CurrentUser, when: datetime
    ) -> int: ...

    def record_note(
        self, session_id: int, text: str, user: CurrentUser, when: datetime
    ) -> int: ...

    def correct_entry(
        self, entry: Entry, new_value: str, reason: str, user: CurrentUser
    ) -> None: ...

    def record_manual_vitals(
        self, session_id: int, readings: Sequence[Reading], user: CurrentUser
    ) -> None: ...

    def submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None: ...

    def record_alarm(
        self, session_id: int, event: AlarmEvent, user: CurrentUser | None
    ) -> None: ...

    def record_link(self, session_id: int, event: StatusEvent) -> None: ...

    def discharge(
        self, session_id: int, outcome: DischargeOutcome, user: CurrentUser, when: datetime
    ) -> None: ...

    def record_threshold_override(
        self,
        session_id: int,
        profile: ThresholdProfile,
        limit_id: str,
        reason: str,
        user: CurrentUser,
        when: datetime,
    ) -> None: ...
