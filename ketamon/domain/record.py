"""A session's record as entries, and its state as a pure fold over them.

Every fact about a session is one :class:`SessionEntry`: the start, the screening, a prescriber
decision, each device or infusion, every observation, a correction, an alarm raised or
acknowledged, a limit change, the discharge. Entries are only ever appended. The state the chair
screen, a restart, the review screen and every export work from is::

    state = fold(entries)          # = reduce(apply, entries, None)

so nothing about a session lives only in memory. :func:`apply` is pure: it never reads a clock,
the database or the monitor; whatever a rule needed at the time (the baseline BP at the first
dose, the discharge criteria) was written into the entry when the command was decided.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ketamon.domain.session_rules import PrescriberDecision, Treatment

MOAAS_SEDATED_BELOW = 5


class EntryKind(enum.StrEnum):
    STARTED = "started"
    SCREENING = "screening"
    DECISION = "decision"  # prescriber: proceed / delay
    BP_OVERRIDE = "bp_override"  # physician: dose without a pre-dose BP
    DEVICE = "device"  # one esketamine device
    INFUSION_STARTED = "infusion_started"
    INFUSION_STOPPED = "infusion_stopped"
    OTHER_DOSE = "other_dose"
    MOAAS = "moaas"
    RASS = "rass"
    CADSS = "cadss"
    SIDE_EFFECT = "side_effect"
    NOTE = "note"
    VITALS = "vitals"  # typed in by hand
    SYMPTOM_CHECK = "symptom_check"
    BP40_REASON = "bp40_reason"
    CORRECTION = "correction"
    ALARM = "alarm"  # raised / escalated / cleared / acknowledged / reset
    LINK = "link"
    LIMIT_CHANGED = "limit_changed"
    DISCHARGED = "discharged"
    CANCELLED = "cancelled"
    ENDED = "ended"  # monitoring ended without a discharge (a headless recording stopped)
    # after the session: review, sign-off and the REMS Patient Monitoring Form
    SIGNED = "signed"  # a physician's signature over everything recorded before it
    ADDENDUM = "addendum"  # a signed addition to a signed session (the signed part stays)
    COUNTERSIGNED = "countersigned"  # a physician's countersignature of a nurse's addendum
    PMF_FIELDS = "pmf_fields"  # PMF fields entered or confirmed by a user
    PMF_SUBMITTED = "pmf_submitted"  # how and when the form went to the REMS, and its reference
    # the treatment course (issue 15)
    ADMINISTERED = "administered"  # an IM or oral/sublingual dose with its supply and quantities
    WASTE = "waste"  # drug wasted (or a partly used device disposed), witnessed by a second user
    SCALE = "scale"  # PHQ-9, BPRS+, CGI-S, CGI-I or MADRS
    SUICIDALITY_ACTION = "suicidality_action"  # the action taken on a PHQ-9 item-9 flag
    THERAPIST_ASSIGNED = "therapist_assigned"
    THERAPIST_NOTE = "therapist_note"  # kept apart from the nursing record


#: kinds a nurse can correct (with a reason), and the fields of each that may change
CORRECTABLE: dict[EntryKind, frozenset[str]] = {
    EntryKind.MOAAS: frozenset({"score"}),
    EntryKind.RASS: frozenset({"score"}),
    EntryKind.SIDE_EFFECT: frozenset({"severity", "serious", "text"}),
    EntryKind.NOTE: frozenset({"text"}),
    EntryKind.SCREENING: frozenset(
        {
            "bp",
            "hr",
            "fasting",
            "escort",
            "benzodiazepine",
            "hypnotic",
            "opioid",
            "psychostimulant",
            "maoi",
            "rems_enrolled",
        }
    ),
    EntryKind.CADSS: frozenset({"items"}),
    EntryKind.VITALS: frozenset({"values"}),
}


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One recorded fact. ``data`` holds JSON values only (str, int, float, bool, None, lists
    and objects of them) so the entry reads back from the database exactly as it was made."""

    id: int
    session_id: int
    kind: EntryKind
    at: datetime
    author_id: int | None
    author: str
    data: Mapping[str, Any] = field(default_factory=dict)
    #: a second person who authorised the entry (a physician's sign-in at the chair)
    authorised_by_id: int | None = None
    authorised_by: str = ""


# ---- the state -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientInfo:
    id: int | None
    mrn: str
    first_name: str
    last_name: str
    middle_initial: str = ""
    date_of_birth: str | None = None  # ISO date
    sex: str | None = None
    weight_kg: float | None = None
    rems_enrolled: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.mrn})"


@dataclass(frozen=True, slots=True)
class Plan:
    treatment: Treatment
    dose_mg: float | None = None
    iv_mg_per_kg: float | None = None
    iv_minutes: float | None = None
    first_treatment: bool = False
    im_mg_per_kg: float | None = None
    oral_mg: float | None = None
    oral_form: str = ""  # a key of ketamon.domain.dosing.ORAL_FORMS


@dataclass(frozen=True, slots=True)
class ScreeningState:
    entry_id: int
    at: datetime
    bp: tuple[float, float] | None
    hr: float | None
    bp_source: str
    fasting: bool
    escort: bool
    benzodiazepine: bool = False
    hypnotic: bool = False
    opioid: bool = False
    psychostimulant: bool = False
    maoi: bool = False
    rems_enrolled: bool | None = None
    #: the pre-dose BP was above the advisory when screened (decided and written by the core)
    above_advisory: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    decision: PrescriberDecision
    by: str
    by_id: int | None
    at: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    entry_id: int
    number: int
    at: datetime
    mg: float
    lot: str


@dataclass(frozen=True, slots=True)
class Infusion:
    entry_id: int
    start: datetime
    planned_mg: float
    rate_mg_per_min: float
    mg_per_kg: float
    weight_kg: float
    planned_minutes: float
    stop: datetime | None = None
    given_mg: float | None = None  # rate × time when stopped (early or on time)


@dataclass(frozen=True, slots=True)
class Observation:
    """A MOAA/S, RASS or CADSS rating, a side effect or a note, with corrections applied."""

    entry_id: int
    kind: EntryKind
    at: datetime
    author: str
    score: int | None = None  # MOAA/S, RASS, CADSS total
    items: tuple[tuple[int, int], ...] = ()  # CADSS (item, score)
    item: str = ""  # side-effect key
    severity: str = ""
    serious: bool | None = None
    onset: str | None = None
    text: str = ""
    in_error: bool = False
    corrected: bool = False


@dataclass(frozen=True, slots=True)
class Correction:
    entry_id: int  # the correction's own entry
    target_id: int
    target_kind: EntryKind
    changes: Mapping[str, Any]
    old: Mapping[str, Any]
    reason: str
    by: str
    at: datetime
    in_error: bool = False


@dataclass(frozen=True, slots=True)
class ManualVitals:
    entry_id: int
    at: datetime
    values: Mapping[str, float]
    by: str
    in_error: bool = False


@dataclass(frozen=True, slots=True)
class SymptomCheck:
    entry_id: int
    at: datetime
    yes: tuple[str, ...]
    answers: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class AlarmStatus:
    """An alarm condition as the record has it: raised and not yet cleared."""

    key: str
    priority: str  # high | medium | low
    message: str
    active: bool  # False: the condition has gone but the (high) flag is latched
    acknowledged: bool
    technical: bool
    raised_at: datetime
    family: str | None = None


@dataclass(frozen=True, slots=True)
class LimitChange:
    entry_id: int
    limit_id: str
    low: float | None
    high: float | None
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DischargeState:
    entry_id: int
    at: datetime
    by: str
    checklist: Mapping[str, bool]
    ready_to_leave_min: int
    total_min: int
    unmet: tuple[str, ...]  # criteria unmet at discharge, accepted by ``authorised_by``
    early_reason: str
    override_reason: str
    authorised_by: str
    rems: Mapping[str, Any]
    pulse_oximetry_used: bool
    end_bp: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Cancellation:
    at: datetime
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Signature:
    """A signature manifestation (21 CFR 11.50): who, as what, when, meaning, what was signed."""

    entry_id: int
    at: datetime
    signer_id: int | None
    name: str
    credentials: str
    meaning_id: str
    meaning: str
    content_sha256: str
    covers_entry_id: int  # the last entry signed: every entry up to and including it


@dataclass(frozen=True, slots=True)
class Addendum:
    entry_id: int
    at: datetime
    text: str
    signature: Signature  # its author's
    #: written by a nurse (a late entry): pending until a physician countersigns it
    countersign_required: bool = False
    countersignature: Signature | None = None

    @property
    def pending(self) -> bool:
        return self.countersign_required and self.countersignature is None


@dataclass(frozen=True, slots=True)
class PmfSubmission:
    entry_id: int
    at: datetime
    by: str
    method: str  # portal | fax
    submitted_at: str  # ISO time the user gives
    reference: str
    form_version: str
    form_sha256: str


@dataclass(frozen=True, slots=True)
class Administration:
    """An IM or oral/sublingual dose: the clock starts at its time."""

    entry_id: int
    at: datetime
    route: str  # im | oral | sublingual
    product: str
    concentration: float
    lot: str
    expiry: str
    drawn_mg: float
    given_mg: float
    mg_per_kg: float | None = None
    weight_kg: float | None = None
    site: str = ""  # IM injection site
    form: str = ""  # oral form

    @property
    def unwasted_mg(self) -> float:
        return round(self.drawn_mg - self.given_mg, 3)


@dataclass(frozen=True, slots=True)
class Waste:
    entry_id: int
    at: datetime
    product: str
    lot: str
    mg: float
    reason: str
    by: str
    witness: str
    device_number: int | None = None


@dataclass(frozen=True, slots=True)
class ScaleRating:
    entry_id: int
    at: datetime
    by: str
    scale: str
    items: tuple[tuple[int, int], ...]
    total: int
    band: str = ""


@dataclass(frozen=True, slots=True)
class TherapistNote:
    entry_id: int
    at: datetime
    by: str
    text: str


@dataclass(frozen=True, slots=True)
class SessionState:
    session_id: int
    chair: str
    patient: PatientInfo
    plan: Plan
    started: datetime
    started_by: str
    device_description: str = ""
    screening: ScreeningState | None = None
    decision: Decision | None = None
    decisions: tuple[Decision, ...] = ()
    bp_override: Decision | None = None  # physician override of a missing pre-dose BP
    first_dose: datetime | None = None
    baseline: tuple[float, float] | None = None  # (sys, dia) the BP-rise rule is measured from
    devices: tuple[Device, ...] = ()
    infusion: Infusion | None = None
    other_dose: datetime | None = None
    observations: tuple[Observation, ...] = ()
    corrections: tuple[Correction, ...] = ()
    vitals: tuple[ManualVitals, ...] = ()
    symptom_checks: tuple[SymptomCheck, ...] = ()
    #: a high BP flag opened a symptom check that has not been answered yet
    symptom_check_pending: bool = False
    escalated_at: datetime | None = None
    escalation_reset_at: datetime | None = None
    alarms: Mapping[str, AlarmStatus] = field(default_factory=dict)
    #: flag families raised after the first dose (bp_high, hr_high, resp, ...)
    flagged_families: frozenset[str] = frozenset()
    #: the worst MOAA/S after the first dose, and whether a respiratory flag was raised then
    lowest_moaas: int | None = None
    respiratory_flag: bool = False
    bp40_reason: str = ""
    limit_changes: tuple[LimitChange, ...] = ()
    link_state: str = ""
    discharge: DischargeState | None = None
    cancelled: Cancellation | None = None
    closed: Cancellation | None = None
    signature: Signature | None = None
    addenda: tuple[Addendum, ...] = ()
    #: PMF fields a user entered or confirmed (the rest is filled from the record)
    pmf_values: Mapping[str, Any] = field(default_factory=dict)
    pmf_version: str = ""
    pmf_submissions: tuple[PmfSubmission, ...] = ()
    administration: Administration | None = None
    wastes: tuple[Waste, ...] = ()
    scales: tuple[ScaleRating, ...] = ()
    #: a PHQ-9 item 9 > 0 waits for the clinician's recorded action
    suicidality_pending: bool = False
    suicidality_actions: tuple[Decision, ...] = ()
    #: user ids of the therapists assigned to the session
    therapist_ids: frozenset[int] = frozenset()
    therapists: tuple[str, ...] = ()
    therapist_notes: tuple[TherapistNote, ...] = ()
    entry_count: int = 0
    last_entry_id: int = 0

    # ---- derived, cheap ----------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.discharge is not None or self.cancelled is not None or self.closed is not None

    @property
    def signed(self) -> bool:
        """Signed by a physician: locked; changes from now on are signed addenda."""
        return self.signature is not None

    @property
    def addendum_pending(self) -> bool:
        """A nurse's addendum still waits for a physician's countersignature."""
        return any(a.pending for a in self.addenda)

    @property
    def ended_at(self) -> datetime | None:
        if self.discharge is not None:
            return self.discharge.at
        if self.cancelled is not None:
            return self.cancelled.at
        if self.closed is not None:
            return self.closed.at
        return None

    @property
    def dosing_complete(self) -> bool:
        if self.first_dose is None:
            return False
        if self.plan.treatment is Treatment.ESKETAMINE and self.plan.dose_mg:
            return len(self.devices) >= round(self.plan.dose_mg / 28.0)
        if self.plan.treatment is Treatment.IV_KETAMINE:
            return self.infusion is not None and self.infusion.stop is not None
        if self.plan.treatment in (Treatment.IM_KETAMINE, Treatment.ORAL_KETAMINE):
            return self.administration is not None
        return True

    @property
    def infusing(self) -> bool:
        return self.infusion is not None and self.infusion.stop is None

    def live(self, kind: EntryKind) -> list[Observation]:
        """Observations of ``kind`` not marked entered in error, in time order."""
        return [o for o in self.observations if o.kind is kind and not o.in_error]

    def after_dose(self, kind: EntryKind) -> list[Observation]:
        dosed = self.first_dose
        if dosed is None:
            return []
        return [o for o in self.live(kind) if o.at >= dosed]

    @property
    def latest_moaas(self) -> int | None:
        scores = self.live(EntryKind.MOAAS)
        return scores[-1].score if scores else None

    def latest_scale(self, scale: str) -> ScaleRating | None:
        rated = [r for r in self.scales if r.scale == scale]
        return rated[-1] if rated else None

    @property
    def unaccounted_mg(self) -> float:
        """Drawn for the IM / oral dose but neither given nor recorded as waste (mg)."""
        a = self.administration
        if a is None:
            return 0.0
        wasted = sum(w.mg for w in self.wastes if w.lot == a.lot and w.product == a.product)
        return round(max(0.0, a.unwasted_mg - wasted), 3)

    @property
    def latest_rass(self) -> int | None:
        scores = self.live(EntryKind.RASS)
        return scores[-1].score if scores else None

    @property
    def predose_cadss(self) -> int | None:
        pre = [
            o
            for o in self.live(EntryKind.CADSS)
            if self.first_dose is None or o.at < self.first_dose
        ]
        return pre[-1].score if pre else None

    def entry(self, entry_id: int) -> Observation | None:
        return next((o for o in self.observations if o.entry_id == entry_id), None)


class RecordError(ValueError):
    """An entry that cannot be applied to the state it follows (a corrupt or foreign record)."""


# ---- the fold --------------------------------------------------------------------------------


def fold(entries: Iterable[SessionEntry]) -> SessionState | None:
    state: SessionState | None = None
    for e in entries:
        state = apply(state, e)
    return state


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def _bp(v: Any) -> tuple[float, float] | None:
    if v is None:
        return None
    return (float(v[0]), float(v[1]))


def _signature(e: SessionEntry) -> Signature:
    d = e.data
    return Signature(
        entry_id=e.id,
        at=e.at,
        signer_id=e.author_id,
        name=str(d.get("name", e.author)),
        credentials=str(d.get("credentials", "")),
        meaning_id=str(d.get("meaning_id", "")),
        meaning=str(d.get("meaning", "")),
        content_sha256=str(d.get("content_sha256", "")),
        covers_entry_id=int(d.get("covers_entry_id", e.id)),
    )


def _started(e: SessionEntry) -> SessionState:
    d = e.data
    p = d["patient"]
    plan = d["plan"]
    return SessionState(
        session_id=e.session_id,
        chair=str(d["chair"]),
        patient=PatientInfo(
            id=p.get("id"),
            mrn=str(p["mrn"]),
            first_name=str(p.get("first_name", "")),
            last_name=str(p.get("last_name", "")),
            middle_initial=str(p.get("middle_initial", "")),
            date_of_birth=p.get("date_of_birth"),
            sex=p.get("sex"),
            weight_kg=_f(p.get("weight_kg")),
            rems_enrolled=p.get("rems_enrolled"),
        ),
        plan=Plan(
            treatment=Treatment(plan["treatment"]),
            dose_mg=_f(plan.get("dose_mg")),
            iv_mg_per_kg=_f(plan.get("iv_mg_per_kg")),
            iv_minutes=_f(plan.get("iv_minutes")),
            first_treatment=bool(plan.get("first_treatment", False)),
            im_mg_per_kg=_f(plan.get("im_mg_per_kg")),
            oral_mg=_f(plan.get("oral_mg")),
            oral_form=str(plan.get("oral_form") or ""),
        ),
        started=e.at,
        started_by=e.author,
        device_description=str(d.get("device", "")),
        entry_count=1,
        last_entry_id=e.id,
    )


def _screening(e: SessionEntry) -> ScreeningState:
    d = e.data
    return ScreeningState(
        entry_id=e.id,
        at=e.at,
        bp=_bp(d.get("bp")),
        hr=_f(d.get("hr")),
        bp_source=str(d.get("bp_source", "")),
        fasting=bool(d.get("fasting", False)),
        escort=bool(d.get("escort", False)),
        benzodiazepine=bool(d.get("benzodiazepine", False)),
        hypnotic=bool(d.get("hypnotic", False)),
        opioid=bool(d.get("opioid", False)),
        psychostimulant=bool(d.get("psychostimulant", False)),
        maoi=bool(d.get("maoi", False)),
        rems_enrolled=d.get("rems_enrolled"),
        above_advisory=bool(d.get("above_advisory", False)),
    )


def _observation(e: SessionEntry) -> Observation:
    d = e.data
    if e.kind is EntryKind.CADSS:
        items = tuple(sorted((int(k), int(v)) for k, v in d["items"].items()))
        return Observation(
            e.id, e.kind, e.at, e.author, score=sum(v for _, v in items), items=items
        )
    if e.kind in (EntryKind.MOAAS, EntryKind.RASS):
        return Observation(e.id, e.kind, e.at, e.author, score=int(d["score"]))
    if e.kind is EntryKind.SIDE_EFFECT:
        return Observation(
            e.id,
            e.kind,
            e.at,
            e.author,
            item=str(d["item"]),
            severity=str(d["severity"]),
            serious=d.get("serious"),
            onset=d.get("onset"),
            text=str(d.get("text", "")),
        )
    return Observation(e.id, e.kind, e.at, e.author, text=str(d.get("text", "")))


def _alarm(state: SessionState, e: SessionEntry) -> SessionState:
    d = e.data
    key = str(d["key"])
    action = str(d["action"])
    alarms = dict(state.alarms)
    cur = alarms.get(key)
    family = d.get("family")
    if action in ("raised", "escalated"):
        alarms[key] = AlarmStatus(
            key=key,
            priority=str(d["priority"]),
            message=str(d.get("message", "")),
            active=True,
            acknowledged=False if action == "escalated" or cur is None else cur.acknowledged,
            technical=bool(d.get("technical", False)),
            raised_at=cur.raised_at if cur is not None and action == "escalated" else e.at,
            family=family,
        )
    elif action == "latched" and cur is not None:
        alarms[key] = replace(cur, active=False)
    elif action == "acknowledged" and cur is not None:
        alarms[key] = replace(cur, acknowledged=True)
    elif action in ("cleared", "reset"):
        alarms.pop(key, None)
    families = state.flagged_families
    resp = state.respiratory_flag
    pending = state.symptom_check_pending
    after_dose = state.first_dose is not None and e.at >= state.first_dose
    if action in ("raised", "escalated") and after_dose and family:
        families = families | {str(family)}
        if family == "resp":
            resp = True
    if (
        action == "raised"
        and family == "bp_high"
        and key != "hypertensive_emergency"
        and after_dose
        and not _bp_high_active(state.alarms, exclude=key)
    ):
        # a new high-BP episode (no other high-BP condition was active) asks for symptoms again
        pending = True
    return replace(
        state,
        alarms=alarms,
        flagged_families=families,
        respiratory_flag=resp,
        symptom_check_pending=pending,
    )


def _bp_high_active(alarms: Mapping[str, AlarmStatus], exclude: str) -> bool:
    return any(
        a.family == "bp_high" and a.active and k not in (exclude, "hypertensive_emergency")
        for k, a in alarms.items()
    )


def _lowest(current: int | None, score: int) -> int:
    return score if current is None else min(current, score)


def _recompute_lowest_moaas(state: SessionState) -> int | None:
    scores = [o.score for o in state.after_dose(EntryKind.MOAAS) if o.score is not None]
    return min(scores) if scores else None


def _correct(state: SessionState, e: SessionEntry) -> SessionState:
    d = e.data
    target = int(d["target"])
    changes: dict[str, Any] = dict(d.get("changes", {}))
    in_error = bool(d.get("in_error", False))
    corr = Correction(
        entry_id=e.id,
        target_id=target,
        target_kind=EntryKind(d["target_kind"]),
        changes=changes,
        old=dict(d.get("old", {})),
        reason=str(d.get("reason", "")),
        by=e.author,
        at=e.at,
        in_error=in_error,
    )
    state = replace(state, corrections=(*state.corrections, corr))
    kind = corr.target_kind
    if kind is EntryKind.SCREENING:
        s = state.screening
        if s is None or s.entry_id != target:
            raise RecordError(f"correction {e.id}: no screening entry {target}")
        fields: dict[str, Any] = {}
        for k, v in changes.items():
            if k == "bp":
                fields["bp"] = _bp(v)
            elif k == "hr":
                fields["hr"] = _f(v)
            else:
                fields[k] = v
        if "above_advisory" in d:
            fields["above_advisory"] = bool(d["above_advisory"])
        return replace(state, screening=replace(s, **fields))
    if kind is EntryKind.VITALS:
        vitals = tuple(
            replace(
                v,
                values=dict(changes.get("values", v.values)),
                in_error=in_error or v.in_error,
            )
            if v.entry_id == target
            else v
            for v in state.vitals
        )
        return replace(state, vitals=vitals)
    obs = state.entry(target)
    if obs is None:
        raise RecordError(f"correction {e.id}: no entry {target} to correct")
    fixed = replace(obs, corrected=True, in_error=in_error or obs.in_error)
    if "score" in changes:
        fixed = replace(fixed, score=int(changes["score"]))
    if "items" in changes:
        items = tuple(sorted((int(k), int(v)) for k, v in changes["items"].items()))
        fixed = replace(fixed, items=items, score=sum(v for _, v in items))
    if "severity" in changes:
        fixed = replace(fixed, severity=str(changes["severity"]))
    if "text" in changes:
        fixed = replace(fixed, text=str(changes["text"]))
    if "serious" in changes:
        fixed = replace(fixed, serious=changes["serious"])
    state = replace(
        state,
        observations=tuple(fixed if o.entry_id == target else o for o in state.observations),
    )
    if kind is EntryKind.MOAAS:
        state = replace(state, lowest_moaas=_recompute_lowest_moaas(state))
    return state


def apply(state: SessionState | None, e: SessionEntry) -> SessionState:
    """The state after entry ``e`` (pure)."""
    if state is None:
        if e.kind is not EntryKind.STARTED:
            raise RecordError(f"entry {e.id} ({e.kind}): a session record starts with 'started'")
        return _started(e)
    if e.kind is EntryKind.STARTED:
        raise RecordError(f"entry {e.id}: the session has already started")
    if e.session_id != state.session_id:
        raise RecordError(f"entry {e.id} belongs to session {e.session_id}")
    state = _apply(state, e)
    return replace(state, entry_count=state.entry_count + 1, last_entry_id=e.id)


def _apply(state: SessionState, e: SessionEntry) -> SessionState:
    d = e.data
    k = e.kind
    if k is EntryKind.SCREENING:
        s = _screening(e)
        patient = state.patient
        if s.rems_enrolled is not None:
            patient = replace(patient, rems_enrolled=s.rems_enrolled)
        return replace(state, screening=s, patient=patient)
    if k is EntryKind.DECISION:
        dec = Decision(
            PrescriberDecision(d["decision"]),
            e.authorised_by or e.author,
            e.authorised_by_id or e.author_id,
            e.at,
            str(d.get("note", "")),
        )
        return replace(state, decision=dec, decisions=(*state.decisions, dec))
    if k is EntryKind.BP_OVERRIDE:
        dec = Decision(
            PrescriberDecision.PROCEED,
            e.authorised_by or e.author,
            e.authorised_by_id or e.author_id,
            e.at,
            str(d.get("reason", "")),
        )
        return replace(state, bp_override=dec)
    if k in (
        EntryKind.DEVICE,
        EntryKind.INFUSION_STARTED,
        EntryKind.OTHER_DOSE,
        EntryKind.ADMINISTERED,
    ):
        first = state.first_dose is None
        if first:
            state = replace(state, first_dose=e.at, baseline=_bp(d.get("baseline")))
        if k is EntryKind.DEVICE:
            dev = Device(e.id, int(d["number"]), e.at, float(d["mg"]), str(d.get("lot", "")))
            return replace(state, devices=(*state.devices, dev))
        if k is EntryKind.INFUSION_STARTED:
            inf = Infusion(
                entry_id=e.id,
                start=e.at,
                planned_mg=float(d["planned_mg"]),
                rate_mg_per_min=float(d["rate_mg_per_min"]),
                mg_per_kg=float(d["mg_per_kg"]),
                weight_kg=float(d["weight_kg"]),
                planned_minutes=float(d["planned_minutes"]),
            )
            return replace(state, infusion=inf)
        if k is EntryKind.ADMINISTERED:
            return replace(state, administration=_administration(e))
        return replace(state, other_dose=e.at)
    if k is EntryKind.INFUSION_STOPPED:
        if state.infusion is None:
            raise RecordError(f"entry {e.id}: no infusion to stop")
        inf = replace(state.infusion, stop=e.at, given_mg=float(d["given_mg"]))
        return replace(state, infusion=inf)
    if k in (
        EntryKind.MOAAS,
        EntryKind.RASS,
        EntryKind.CADSS,
        EntryKind.SIDE_EFFECT,
        EntryKind.NOTE,
    ):
        obs = _observation(e)
        state = replace(state, observations=(*state.observations, obs))
        if (
            k is EntryKind.MOAAS
            and obs.score is not None
            and state.first_dose is not None
            and e.at >= state.first_dose
        ):
            state = replace(state, lowest_moaas=_lowest(state.lowest_moaas, obs.score))
        return state
    if k is EntryKind.VITALS:
        mv = ManualVitals(e.id, e.at, {str(p): float(v) for p, v in d["values"].items()}, e.author)
        return replace(state, vitals=(*state.vitals, mv))
    if k is EntryKind.SYMPTOM_CHECK:
        answers = {str(a): bool(v) for a, v in d["answers"].items()}
        yes = tuple(str(x) for x in d.get("yes", []))
        check = SymptomCheck(e.id, e.at, yes, answers)
        return replace(
            state,
            symptom_checks=(*state.symptom_checks, check),
            symptom_check_pending=False,
            escalated_at=e.at if yes and state.escalated_at is None else state.escalated_at,
        )
    if k is EntryKind.BP40_REASON:
        return replace(state, bp40_reason=str(d["reason"]))
    if k is EntryKind.CORRECTION:
        return _correct(state, e)
    if k is EntryKind.ALARM:
        state = _alarm(state, e)
        if d.get("action") == "reset" and d.get("key") == "hypertensive_emergency":
            state = replace(state, escalation_reset_at=e.at)
        return state
    if k is EntryKind.LINK:
        return replace(state, link_state=str(d.get("state", "")))
    if k is EntryKind.LIMIT_CHANGED:
        lc = LimitChange(
            e.id,
            str(d["limit_id"]),
            _f(d.get("low")),
            _f(d.get("high")),
            str(d.get("reason", "")),
            e.authorised_by or e.author,
            e.at,
        )
        return replace(state, limit_changes=(*state.limit_changes, lc))
    if k is EntryKind.DISCHARGED:
        dis = DischargeState(
            entry_id=e.id,
            at=e.at,
            by=e.author,
            checklist={str(a): bool(b) for a, b in d.get("checklist", {}).items()},
            ready_to_leave_min=int(d["ready_to_leave_min"]),
            total_min=int(d["total_min"]),
            unmet=tuple(str(x) for x in d.get("unmet", [])),
            early_reason=str(d.get("early_reason", "")),
            override_reason=str(d.get("override_reason", "")),
            authorised_by=e.authorised_by,
            rems=dict(d.get("rems", {})),
            pulse_oximetry_used=bool(d.get("pulse_oximetry_used", False)),
            end_bp=_bp(d.get("end_bp")),
        )
        return replace(state, discharge=dis, alarms={}, symptom_check_pending=False, link_state="")
    if k is EntryKind.CANCELLED:
        canc = Cancellation(e.at, e.authorised_by or e.author, str(d.get("reason", "")))
        return replace(state, cancelled=canc, alarms={}, symptom_check_pending=False)
    if k is EntryKind.ENDED:
        end = Cancellation(e.at, e.author, str(d.get("reason", "")))
        return replace(state, closed=end, alarms={}, symptom_check_pending=False)
    if k is EntryKind.SIGNED:
        return replace(state, signature=_signature(e))
    if k is EntryKind.ADDENDUM:
        add = Addendum(
            e.id,
            e.at,
            str(d.get("text", "")),
            _signature(e),
            countersign_required=bool(d.get("countersign_required", False)),
        )
        return replace(state, addenda=(*state.addenda, add))
    if k is EntryKind.COUNTERSIGNED:
        target = int(d.get("addendum_id", 0))
        addenda = tuple(
            replace(a, countersignature=_signature(e)) if a.entry_id == target else a
            for a in state.addenda
        )
        return replace(state, addenda=addenda)
    if k is EntryKind.PMF_FIELDS:
        values = {**state.pmf_values, **{str(a): b for a, b in d.get("values", {}).items()}}
        return replace(state, pmf_values=values, pmf_version=str(d.get("form_version", "")))
    if k is EntryKind.PMF_SUBMITTED:
        sub = PmfSubmission(
            e.id,
            e.at,
            e.author,
            str(d.get("method", "")),
            str(d.get("submitted_at", "")),
            str(d.get("reference", "")),
            str(d.get("form_version", "")),
            str(d.get("form_sha256", "")),
        )
        return replace(state, pmf_submissions=(*state.pmf_submissions, sub))
    course = _course_entry(state, e)
    if course is not None:
        return course
    raise RecordError(f"entry {e.id}: unknown kind {k!r}")


def _administration(e: SessionEntry) -> Administration:
    d = e.data
    return Administration(
        entry_id=e.id,
        at=e.at,
        route=str(d["route"]),
        product=str(d["product"]),
        concentration=float(d["concentration"]),
        lot=str(d["lot"]),
        expiry=str(d["expiry"]),
        drawn_mg=float(d["drawn_mg"]),
        given_mg=float(d["given_mg"]),
        mg_per_kg=_f(d.get("mg_per_kg")),
        weight_kg=_f(d.get("weight_kg")),
        site=str(d.get("site") or ""),
        form=str(d.get("form") or ""),
    )


def _course_entry(state: SessionState, e: SessionEntry) -> SessionState | None:
    """The treatment-course entries (issue 15); None: not one of them."""
    d = e.data
    k = e.kind
    if k is EntryKind.WASTE:
        w = Waste(
            entry_id=e.id,
            at=e.at,
            product=str(d["product"]),
            lot=str(d["lot"]),
            mg=float(d["mg"]),
            reason=str(d.get("reason", "")),
            by=e.author,
            witness=e.authorised_by,
            device_number=d.get("device_number"),
        )
        return replace(state, wastes=(*state.wastes, w))
    if k is EntryKind.SCALE:
        items = tuple(sorted((int(a), int(b)) for a, b in d["items"].items()))
        r = ScaleRating(
            e.id,
            e.at,
            e.author,
            str(d["scale"]),
            items,
            int(d["total"]),
            str(d.get("band", "")),
        )
        pending = state.suicidality_pending or bool(d.get("suicidality", False))
        return replace(state, scales=(*state.scales, r), suicidality_pending=pending)
    if k is EntryKind.SUICIDALITY_ACTION:
        act = Decision(
            PrescriberDecision.PROCEED, e.author, e.author_id, e.at, str(d.get("action", ""))
        )
        return replace(
            state,
            suicidality_pending=False,
            suicidality_actions=(*state.suicidality_actions, act),
        )
    if k is EntryKind.THERAPIST_ASSIGNED:
        return replace(
            state,
            therapist_ids=state.therapist_ids | {int(d["user_id"])},
            therapists=(*state.therapists, str(d.get("name", ""))),
        )
    if k is EntryKind.THERAPIST_NOTE:
        note = TherapistNote(e.id, e.at, e.author, str(d["text"]))
        return replace(state, therapist_notes=(*state.therapist_notes, note))
    return None
