"""The commands a user (or the alarm engine) gives a chair's session core.

Each is a frozen value: what was asked, never who asked it (the actor travels beside it). A
second person's authorisation (a physician signing in at the chair) and a signature travel as
:class:`Credentials`, checked by the core's authenticator, never trusted as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ketamon.domain.alarms import AlarmEvent
from ketamon.domain.dosing import Supply
from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.session_rules import PrescriberDecision


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartSession:
    patient: PatientInfo
    plan: Plan
    device: str = ""
    #: the nurse confirmed this is the patient in the chair
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class RecordScreening:
    bp: tuple[float, float] | None
    hr: float | None
    bp_source: str  # monitor | manual
    fasting: bool
    escort: bool
    benzodiazepine: bool = False
    hypnotic: bool = False
    opioid: bool = False
    psychostimulant: bool = False
    maoi: bool = False
    rems_enrolled: bool | None = None


@dataclass(frozen=True, slots=True)
class PrescriberDecide:
    decision: PrescriberDecision
    note: str = ""
    authoriser: Credentials | None = None  # needed unless the actor is a physician


@dataclass(frozen=True, slots=True)
class OverrideMissingBp:
    reason: str
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class LogDevice:
    lot: str
    expiry: str = ""  # ISO date; checked when given


@dataclass(frozen=True, slots=True)
class StartInfusion:
    #: the bag's product, concentration, lot and expiry (dose accountability); optional
    supply: Supply | None = None
    drawn_mg: float | None = None


@dataclass(frozen=True, slots=True)
class StopInfusion:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LogOtherDose:
    description: str


@dataclass(frozen=True, slots=True)
class RecordMoaas:
    score: int


@dataclass(frozen=True, slots=True)
class RecordRass:
    score: int


@dataclass(frozen=True, slots=True)
class RecordCadss:
    items: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class SideEffectInput:
    item: str
    severity: str  # mild | moderate | severe
    serious: bool | None = None
    onset: str | None = None  # ISO time
    text: str = ""


@dataclass(frozen=True, slots=True)
class RecordSideEffects:
    effects: Sequence[SideEffectInput]


@dataclass(frozen=True, slots=True)
class AddNote:
    text: str


@dataclass(frozen=True, slots=True)
class RecordVitals:
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class RecordSymptomCheck:
    answers: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class RecordBp40Reason:
    reason: str


@dataclass(frozen=True, slots=True)
class Correct:
    target_id: int
    changes: Mapping[str, object]
    reason: str
    in_error: bool = False


@dataclass(frozen=True, slots=True)
class Acknowledge:
    key: str | None = None  # None: every unacknowledged flag
    #: where it was given when not at the chair's own screen: "at lock screen" (issue 13) is
    #: allowed to the station's system actor (whoever stands at a locked screen), and is
    #: recorded with each flag acknowledged
    where: str = ""


@dataclass(frozen=True, slots=True)
class ResetAlarms:
    pass


@dataclass(frozen=True, slots=True)
class ResetEmergency:
    documentation: str
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class ChangeLimit:
    limit_id: str
    low: float | None
    high: float | None
    reason: str
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class Discharge:
    checklist: Mapping[str, bool]
    ready_to_leave_min: int | None
    #: the discharging clinician's password, asked again to sign the discharge
    password: str = field(repr=False, default="")
    override_reason: str = ""
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class EndMonitoring:
    """A headless recording stopped: monitoring ended without a discharge."""

    reason: str


@dataclass(frozen=True, slots=True)
class RecordAlarmEvents:
    """Events the alarm engine raised on its own (readings, technical conditions)."""

    events: Sequence[AlarmEvent]


@dataclass(frozen=True, slots=True)
class RecordLink:
    state: str
    reason: str


# ---- at the review desk (ketamon.core.desk), after the session --------------------------------


@dataclass(frozen=True, slots=True)
class Sign:
    """A physician signs a finished session, typing their password again."""

    meaning_id: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AddAddendum:
    """A signed addition to a signed session; the physician types their password again."""

    text: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AddLateEntry:
    """A nurse's addendum to a signed session (something remembered or learned later), signed
    as its author with their password; it is pending until a physician countersigns it."""

    text: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CountersignAddendum:
    """A physician countersigns a pending addendum (``addendum_id``: its entry id)."""

    addendum_id: int
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class EnterPmfFields:
    """PMF fields a user enters or confirms (field id -> value), against a form version."""

    values: Mapping[str, object]
    form_version: str


@dataclass(frozen=True, slots=True)
class RecordPmfSubmission:
    method: str  # portal | fax
    submitted_at: str  # ISO time as the user gives it
    reference: str


# ---- the treatment course (issue 15) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdministerDose:
    """An IM or oral/sublingual dose, as planned: the mg follow from the plan (mg/kg x weight
    for IM, mg for oral); ``drawn_mg`` is what was drawn up or dispensed (the rest is waste)."""

    supply: Supply
    drawn_mg: float
    site: str = ""  # IM: a key of ketamon.domain.dosing.IM_SITES


@dataclass(frozen=True, slots=True)
class RecordWaste:
    """Drug wasted (or a partly used esketamine device disposed), witnessed by a second user
    who signs in with their own password."""

    product: str
    lot: str
    mg: float
    reason: str
    witness: Credentials | None = None
    device_number: int | None = None


@dataclass(frozen=True, slots=True)
class RecordScale:
    """A PHQ-9, BPRS+, CGI-S, CGI-I or MADRS rating (item -> score)."""

    scale: str
    items: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class RecordSuicidalityAction:
    """The clinician's action on a PHQ-9 item-9 answer above 0 (acknowledges the flag)."""

    action: str


@dataclass(frozen=True, slots=True)
class AssignTherapist:
    """A therapist joins the session: they sign in at the chair with their own password."""

    therapist: Credentials


@dataclass(frozen=True, slots=True)
class AddTherapistNote:
    text: str


Command = (
    StartSession
    | RecordScreening
    | PrescriberDecide
    | OverrideMissingBp
    | LogDevice
    | StartInfusion
    | StopInfusion
    | LogOtherDose
    | RecordMoaas
    | RecordRass
    | RecordCadss
    | RecordSideEffects
    | AddNote
    | RecordVitals
    | RecordSymptomCheck
    | RecordBp40Reason
    | Correct
    | Acknowledge
    | ResetAlarms
    | ResetEmergency
    | ChangeLimit
    | Discharge
    | Cancel
    | EndMonitoring
    | RecordAlarmEvents
    | RecordLink
    | AdministerDose
    | RecordWaste
    | RecordScale
    | RecordSuicidalityAction
    | AssignTherapist
    | AddTherapistNote
)
