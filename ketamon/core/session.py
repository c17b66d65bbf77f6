"""One chair's session core: a command is checked against the actor's role and the domain's
rules, its entries are recorded in one transaction, and the state is the fold of the record.

``ChairCore.execute`` is synchronous and thread-safe (one lock per chair): the app calls it on
its command thread, ``ketamon record`` and the tests call it directly. A refused command raises
:class:`Refused` with every reason, worded for the user, and changes nothing.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from ketamon.core import commands as c
from ketamon.core.course import CourseCore, Gate
from ketamon.core.ports import (
    AlarmPort,
    Authenticator,
    AuthFailed,
    EntryDraft,
    SessionRepository,
)
from ketamon.domain.alarms import AlarmAction, AlarmEvent, alarm_family
from ketamon.domain.discharge import Latest, Unmet, rems_answers, unmet_criteria
from ketamon.domain.dosing import (
    ESKETAMINE_DEVICE_MG,
    ESKETAMINE_PRODUCT,
    IM_SITES,
    ORAL_FORMS,
    Supply,
    im_dose_mg,
    quantity_problems,
    supply_problems,
)
from ketamon.domain.outcome_scales import PHQ9_FLAG_KEY, ScaleId, rass_priority, score_scale
from ketamon.domain.record import (
    CORRECTABLE,
    EntryKind,
    SessionEntry,
    SessionState,
    apply,
    fold,
)
from ketamon.domain.roles import Action, Actor, Role, refusal
from ketamon.domain.scales import cadss_score, moaas_priority
from ketamon.domain.session_rules import (
    ESKETAMINE_DOSES_MG,
    PredoseState,
    Treatment,
    devices_for_dose,
    dose_blockers,
    iv_dose_mg,
    iv_rate_mg_per_min,
    next_device_blocker,
)
from ketamon.domain.side_effects import BP_SYMPTOMS, SIDE_EFFECTS_BY_KEY
from ketamon.domain.thresholds import Priority, ThresholdError, ThresholdProfile

log = logging.getLogger(__name__)

#: plausible ranges for values typed by hand (a typo must not become a vital sign)
MANUAL_LIMITS: dict[str, tuple[float, float]] = {
    "nibp_sys": (40, 300),
    "nibp_dia": (20, 200),
    "nibp_mean": (30, 250),
    "hr": (20, 250),
    "spo2": (50, 100),
    "rr": (0, 80),
}
SEVERITIES = ("mild", "moderate", "severe")


class Refused(Exception):
    """The command is not allowed now; ``reasons`` say why."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The site's timings the core's rules use (from the site profile)."""

    min_observation_min: float = 120.0
    device_interval_min: float = 5.0
    #: the site profile in force (its name and settings), recorded with every session started
    site: Mapping[str, Any] | None = None
    #: minimum observation per treatment (site setting per route; others: min_observation_min)
    min_observation_by_treatment: Mapping[str, float] = field(default_factory=dict)

    def min_observation(self, treatment: Treatment) -> float:
        return float(
            self.min_observation_by_treatment.get(treatment.value, self.min_observation_min)
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    state: SessionState
    entries: tuple[SessionEntry, ...]
    #: alarm events the command caused, in the order they were recorded
    alarm_events: tuple[AlarmEvent, ...] = ()
    #: manual values to show on the chart and evaluate like monitor readings (not stored again)
    manual_values: Mapping[str, float] = field(default_factory=dict)
    manual_time: datetime | None = None


class _NoAlarms:
    """An alarm port for a chair with no live engine (review, tests of pure rules)."""

    def set_condition(
        self, key: str, priority: Priority | None, message: str, *, technical: bool = False
    ) -> list[AlarmEvent]:
        return []

    def acknowledge(self, key: str) -> list[AlarmEvent]:
        return []

    def acknowledge_all(self) -> list[AlarmEvent]:
        return []

    def reset(self) -> list[AlarmEvent]:
        return []

    def reset_key(self, key: str) -> list[AlarmEvent]:
        return []

    def clear_all(self) -> list[AlarmEvent]:
        return []

    def configure(self, **_: Any) -> list[AlarmEvent]:
        return []

    def restore(self, alarms: Any) -> None:
        return None


def profile_for(base: ThresholdProfile, state: SessionState | None) -> ThresholdProfile:
    """The limits in force for a session: the clinic's, with the session's changes applied."""
    profile = base
    if state is None:
        return profile
    for lc in state.limit_changes:
        profile = profile.with_limit(lc.limit_id, lc.low, lc.high)
    return profile


def alarm_data(e: AlarmEvent) -> dict[str, Any]:
    return {
        "key": e.key,
        "action": e.action.value,
        "priority": e.priority.label,
        "message": e.message,
        "technical": e.technical,
        "family": alarm_family(e.key),
        "direction": getattr(e, "direction", None),
    }


def _clean(text: str) -> str:
    return " ".join(text.split())


class ChairCore:
    """The session at one chair: its state, and the commands that change it."""

    def __init__(
        self,
        chair: str,
        repository: SessionRepository,
        authenticator: Authenticator,
        profile: ThresholdProfile,
        clock: Callable[[], datetime],
        *,
        alarms: AlarmPort | None = None,
        settings: CoreSettings | None = None,
        courses: CourseCore | None = None,
    ) -> None:
        self.chair = chair
        self.repo = repository
        self.auth = authenticator
        self.base_profile = profile
        self.clock = clock
        self.alarms: AlarmPort = alarms or _NoAlarms()
        self.settings = settings or CoreSettings()
        #: the patients' treatment courses (their screening stops dosing); None: not checked
        self.courses = courses
        #: the course gate as last read on the command thread (the UI reads this, never the DB)
        self._gate = Gate(None, (), ())
        self._lock = threading.RLock()
        self._state: SessionState | None = None
        self._entries: tuple[SessionEntry, ...] = ()
        self._system: Actor | None = None
        #: a write failed in a way that may still have committed (a time-out): the next
        #: command first re-reads the record, so the state never drifts from it
        self._stale: int | None = None

    # ---- reading the state (any thread: the state is immutable) --------------------------
    @property
    def state(self) -> SessionState | None:
        """The chair's current session, or None when the chair is free."""
        s = self._state
        return None if s is None or s.ended else s

    @property
    def last_state(self) -> SessionState | None:
        """The latest session at this chair, ended or not (for a closing summary)."""
        return self._state

    @property
    def entries(self) -> tuple[SessionEntry, ...]:
        """The latest session's record, in the order it was made (the state is their fold)."""
        return self._entries

    @property
    def profile(self) -> ThresholdProfile:
        return profile_for(self.base_profile, self.state)

    # ---- restart ---------------------------------------------------------------------------
    def resume(self, session_id: int) -> SessionState:
        """Carry on with a session left open by a restart: the record, folded, is the state;
        the live alarm engine is set up from it (baseline, dose, infusion, limits, flags)."""
        with self._lock:
            entries = tuple(self.repo.load(session_id))
            state = fold(entries)
            if state is None:
                raise Refused([f"Session {session_id} has no record"])
            if state.chair != self.chair:
                raise Refused([f"Session {session_id} belongs to {state.chair}"])
            if state.ended:
                raise Refused([f"Session {session_id} has ended: it is reviewed at the desk"])
            self._state, self._entries = state, entries
            self.alarms.configure(
                profile=profile_for(self.base_profile, state),
                first_dose=state.first_dose,
                baseline=state.baseline,
                infusing=state.infusing,
            )
            self.alarms.restore(_active_alarms(state))
            self.refresh_gate()
            return state

    # ---- commands --------------------------------------------------------------------------
    def execute(self, command: c.Command, actor: Actor, latest: Latest | None = None) -> Outcome:
        with self._lock:
            try:
                return self._execute(command, actor, latest or {})
            finally:
                try:
                    self.refresh_gate()
                except Exception:  # the command's own outcome stands; a dose reads it fresh
                    log.warning("course gate not read", exc_info=True)

    @property
    def gate(self) -> Gate:
        """The patient's course gate (blockers, precautions) as last read; cheap, any thread."""
        return self._gate

    def refresh_gate(self) -> Gate:
        """Read the course gate again (on the command thread: it reads the database). Before the
        first dose only: once dosing has started the course has had its say."""
        s = self.state
        if self.courses is None or s is None:
            self._gate = Gate(None, (), ())
        elif s.first_dose is None or self._gate.course is None:
            self._gate = course_gate(self, s, self.clock())
        return self._gate

    def check(self, command: c.Command, actor: Actor, latest: Latest | None = None) -> None:
        """Raise :class:`Refused` if the command would be refused now; record nothing.

        For an immediate answer on the UI thread; ``execute`` checks again under the lock."""
        action = _action(command, self.state)
        why = refusal(actor.role, action)
        if why and not _authorised_later(command):
            raise Refused([why])

    def _execute(self, cmd: c.Command, actor: Actor, latest: Latest) -> Outcome:
        if self._stale is not None:
            self._resync(self._stale)
        now = self.clock()
        state = self.state
        action = _action(cmd, state)
        if isinstance(cmd, c.StartSession):
            return self._start(cmd, actor, now)
        if state is None:
            last = self._state  # events of a session that has just ended: nothing to record
            if last is not None and isinstance(cmd, c.RecordAlarmEvents | c.RecordLink):
                return Outcome(last, ())
            raise Refused(["No session is running at this chair"])
        handler = _HANDLERS[type(cmd)]
        return handler(_Call(self, state, actor, now, latest, action), cmd)

    def _resync(self, session_id: int) -> None:
        entries = tuple(self.repo.load(session_id))
        state = fold(entries)
        if state is not None:
            self._state, self._entries = state, entries
        self._stale = None

    # ---- helpers -----------------------------------------------------------------------------
    def _role(self, actor: Actor, action: Action) -> None:
        why = refusal(actor.role, action)
        if why:
            raise Refused([why])

    def _physician(
        self, actor: Actor, creds: c.Credentials | None, action: Action, what: str
    ) -> Actor | None:
        """The physician authorising ``action``: the actor, or the one who signed in for it.
        Returns the authoriser when it is a second person (None when it is the actor)."""
        if actor.role is Role.AUDITOR:
            raise Refused([refusal(actor.role, action) or "read-only"])
        if actor.role is Role.PHYSICIAN and (creds is None or creds.username == actor.username):
            return None
        if creds is None:
            raise Refused([f"{what} needs a physician to sign in"])
        try:
            who = self.auth.verify(creds.username, creds.password)
        except AuthFailed as exc:
            raise Refused([f"{what}: {exc}"]) from exc
        if who.role is not Role.PHYSICIAN:
            role = who.role.value
            raise Refused([f"{what} must be authorised by a physician ({who.username}: {role})"])
        return who

    def system(self) -> Actor:
        if self._system is None:
            self._system = self.repo.system_actor()
        return self._system

    def _record(
        self,
        state: SessionState,
        drafts: Sequence[EntryDraft],
        actor: Actor,
        events: Sequence[AlarmEvent] = (),
        **extra: Any,
    ) -> Outcome:
        try:
            entries = self.repo.append(state.session_id, drafts, actor) if drafts else []
        except Exception:
            self._stale = state.session_id
            raise
        for e in entries:
            state = apply(state, e)
        self._state = state
        self._entries += tuple(entries)
        return Outcome(state, tuple(entries), tuple(events), **extra)

    def _alarm_drafts(
        self, events: Sequence[AlarmEvent], actor: Actor | None = None
    ) -> list[EntryDraft]:
        out = []
        for e in events:
            person = e.action in (AlarmAction.ACKNOWLEDGED,) or e.action.value == "reset"
            out.append(
                EntryDraft(
                    EntryKind.ALARM,
                    e.time,
                    alarm_data(e),
                    author=actor if person and actor is not None else self.system(),
                )
            )
        return out

    def _configure(self, state: SessionState) -> list[AlarmEvent]:
        return self.alarms.configure(
            profile=profile_for(self.base_profile, state),
            first_dose=state.first_dose,
            baseline=state.baseline,
            infusing=state.infusing,
        )

    # ---- start -----------------------------------------------------------------------------
    def _start(self, cmd: c.StartSession, actor: Actor, now: datetime) -> Outcome:
        headless = actor.role is Role.SYSTEM
        self._role(actor, Action.RECORDING if headless else Action.START)
        if self.state is not None:
            raise Refused(
                [f"A session is already running at this chair ({self.state.patient.label})"]
            )
        p, plan = cmd.patient, cmd.plan
        reasons = []
        if not cmd.confirmed and not headless:
            reasons.append("Confirm that this is the patient in the chair")
        if not p.mrn.strip() or not p.last_name.strip():
            reasons.append("The patient needs an MRN and a last name")
        if plan.treatment is Treatment.ESKETAMINE and plan.dose_mg not in ESKETAMINE_DOSES_MG:
            reasons.append("Choose the esketamine dose: 56 mg or 84 mg")
        if plan.treatment is Treatment.IV_KETAMINE:
            if not plan.iv_mg_per_kg or not plan.iv_minutes:
                reasons.append("Enter the IV dose in mg/kg and the infusion time in minutes")
            if not p.weight_kg:
                reasons.append("The patient's weight is needed for an IV dose")
            else:
                try:
                    iv_dose_mg(plan.iv_mg_per_kg or 0.5, p.weight_kg)
                except ValueError as exc:
                    reasons.append(str(exc))
            if plan.iv_minutes is not None and not 1 <= plan.iv_minutes <= 600:
                reasons.append("The infusion time must be 1-600 minutes")
        if plan.treatment is Treatment.IM_KETAMINE:
            if not plan.im_mg_per_kg:
                reasons.append("Enter the IM dose in mg/kg")
            elif not p.weight_kg:
                reasons.append("The patient's weight is needed for an IM dose")
            else:
                try:
                    im_dose_mg(plan.im_mg_per_kg, p.weight_kg)
                except ValueError as exc:
                    reasons.append(str(exc))
        if plan.treatment is Treatment.ORAL_KETAMINE:
            if plan.oral_form not in ORAL_FORMS:
                reasons.append("Choose the oral / sublingual form")
            if plan.oral_mg is None or not 0 < plan.oral_mg <= 1000:
                reasons.append("Enter the oral / sublingual dose: above 0 and at most 1000 mg")
        if reasons:
            raise Refused(reasons)
        data = {
            "chair": self.chair,
            "device": cmd.device,
            "site": dict(self.settings.site) if self.settings.site is not None else None,
            "patient": {
                "id": p.id,
                "mrn": p.mrn.strip(),
                "first_name": p.first_name.strip(),
                "last_name": p.last_name.strip(),
                "middle_initial": p.middle_initial.strip(),
                "date_of_birth": p.date_of_birth,
                "sex": p.sex,
                "weight_kg": p.weight_kg,
                "rems_enrolled": p.rems_enrolled,
            },
            "plan": {
                "treatment": plan.treatment.value,
                "dose_mg": plan.dose_mg,
                "iv_mg_per_kg": plan.iv_mg_per_kg,
                "iv_minutes": plan.iv_minutes,
                "first_treatment": plan.first_treatment,
                "im_mg_per_kg": plan.im_mg_per_kg,
                "oral_mg": plan.oral_mg,
                "oral_form": plan.oral_form,
            },
        }
        entry = self.repo.create(EntryDraft(EntryKind.STARTED, now, data), actor)
        state = apply(None, entry)
        self._state, self._entries = state, (entry,)
        # the new session starts clean: no flags, baseline or dose of the previous patient
        events = self.alarms.clear_all()
        self._configure(state)
        drafts = self._alarm_drafts(events)
        if drafts:
            return self._record(state, drafts, actor, events)
        return Outcome(state, (entry,))


def _active_alarms(state: SessionState) -> list[Any]:
    from ketamon.domain.alarms import ActiveAlarm, AlarmState

    return [
        ActiveAlarm(
            a.key,
            Priority[a.priority.upper()],
            a.message,
            AlarmState.ACTIVE if a.active else AlarmState.LATCHED,
            a.acknowledged,
            a.technical,
        )
        for a in state.alarms.values()
    ]


def _action(cmd: c.Command, state: SessionState | None) -> Action:
    if isinstance(cmd, c.Cancel):
        dosed = state is not None and state.first_dose is not None
        return Action.CANCEL_AFTER_DOSE if dosed else Action.CANCEL_BEFORE_DOSE
    return _ACTIONS[type(cmd)]


def _authorised_later(cmd: c.Command) -> bool:
    """Commands a nurse may give on a physician's sign-in (checked when executed)."""
    return isinstance(
        cmd,
        c.PrescriberDecide | c.OverrideMissingBp | c.ResetEmergency | c.ChangeLimit | c.Cancel,
    )


_ACTIONS: dict[type, Action] = {
    c.StartSession: Action.START,
    c.RecordScreening: Action.SCREENING,
    c.PrescriberDecide: Action.PRESCRIBER_DECISION,
    c.OverrideMissingBp: Action.BP_OVERRIDE,
    c.LogDevice: Action.DOSE,
    c.StartInfusion: Action.INFUSION,
    c.StopInfusion: Action.INFUSION,
    c.LogOtherDose: Action.DOSE,
    c.RecordMoaas: Action.OBSERVATION,
    c.RecordRass: Action.OBSERVATION,
    c.RecordCadss: Action.OBSERVATION,
    c.RecordSideEffects: Action.OBSERVATION,
    c.AddNote: Action.OBSERVATION,
    c.RecordVitals: Action.VITALS,
    c.RecordSymptomCheck: Action.SYMPTOM_CHECK,
    c.RecordBp40Reason: Action.VITALS,
    c.Correct: Action.CORRECTION,
    c.Acknowledge: Action.ACKNOWLEDGE,
    c.ResetAlarms: Action.ALARM_RESET,
    c.ResetEmergency: Action.RESET_EMERGENCY,
    c.ChangeLimit: Action.SESSION_LIMITS,
    c.Discharge: Action.DISCHARGE,
    c.RecordAlarmEvents: Action.ALARM_EVENT,
    c.RecordLink: Action.LINK_EVENT,
    c.EndMonitoring: Action.RECORDING,
    c.AdministerDose: Action.DOSE,
    c.RecordWaste: Action.WASTE,
    c.RecordScale: Action.OBSERVATION,
    c.RecordSuicidalityAction: Action.SUICIDALITY_ACTION,
    c.AssignTherapist: Action.ASSIGN_THERAPIST,
    c.AddTherapistNote: Action.THERAPIST_NOTE,
}


# ---- handlers: (the call, the command) -> Outcome -------------------------------------------


class _Call(NamedTuple):
    """What every command handler gets besides the command itself."""

    core: ChairCore
    state: SessionState
    actor: Actor
    now: datetime
    latest: Latest
    action: Action


def _predose(core: ChairCore, state: SessionState) -> PredoseState:
    s = state.screening
    decision = state.decision
    if decision is not None and s is not None and decision.at < s.at:
        decision = None  # a decision applies to the screening it followed, not a later one
    return PredoseState(
        treatment=state.plan.treatment,
        bp=s.bp if s else None,
        hr=s.hr if s else None,
        decision=decision.decision if decision else None,
        physician_override=state.bp_override is not None,
        rems_enrolled=(
            s.rems_enrolled if s and s.rems_enrolled is not None else state.patient.rems_enrolled
        ),
        first_treatment=state.plan.first_treatment,
        escort_confirmed=bool(s and s.escort),
    )


def dose_blockers_for(
    core: ChairCore, state: SessionState, now: datetime, *, fresh: bool = False
) -> list[str]:
    """Why a dose cannot be logged now (empty: it can). ``fresh``: read the course from the
    database (the command thread); otherwise the gate last read (the UI thread)."""
    if state.ended:
        return ["The session has ended"]
    reasons: list[str] = []
    if state.first_dose is None:
        gate = course_gate(core, state, now) if fresh else core.gate
        reasons += list(gate.blockers)
        if state.screening is None and state.bp_override is None:
            reasons.append("Record the pre-dose screening first")
        else:
            reasons += dose_blockers(_predose(core, state), core.profile.predose_advisory)
    if state.plan.treatment is Treatment.ESKETAMINE:
        planned = devices_for_dose(state.plan.dose_mg or 56.0)
        b = next_device_blocker([d.at for d in state.devices], planned, now)
        if b:
            reasons.append(b)
    return reasons


def course_gate(core: ChairCore, state: SessionState, now: datetime) -> Gate:
    """The patient's course: what stops the first dose, and the precautions to show."""
    if core.courses is None:
        return Gate(None, (), ())
    return core.courses.gate(state.patient.id, state.plan.treatment, now)


def _baseline(state: SessionState, latest: Latest) -> tuple[float, float] | None:
    """The latest pre-dose cuff BP: the monitor's or the screening's, whichever is newer."""
    best: tuple[datetime, tuple[float, float]] | None = None
    s = state.screening
    if s is not None and s.bp is not None:
        best = (s.at, s.bp)
    sys, dia = latest.get("nibp_sys"), latest.get("nibp_dia")
    fresh = sys is not None and dia is not None and sys[1] >= state.started
    if fresh and sys is not None and dia is not None and (best is None or sys[1] > best[0]):
        best = (sys[1], (sys[0], dia[0]))
    return None if best is None else best[1]


def _first_dose_data(state: SessionState, latest: Latest) -> dict[str, Any]:
    if state.first_dose is not None:
        return {}
    base = _baseline(state, latest)
    return {"baseline": list(base) if base else None}


def _course_data(core: ChairCore, state: SessionState, now: datetime) -> dict[str, Any]:
    """The course the first dose was given under, and its screening (for the record)."""
    if state.first_dose is not None:
        return {}
    gate = course_gate(core, state, now)
    if gate.course is None:
        return {}
    s = gate.course.screening
    return {
        "course_id": gate.course.course_id,
        "screening_id": s.entry_id if s else None,
        "precautions": list(gate.precautions),
    }


def _screening(k: _Call, cmd: c.RecordScreening) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if state.first_dose is not None:
        raise Refused(
            ["The pre-dose screening is closed once dosing has started: correct it with a reason"]
        )
    problems = _screening_problems(cmd.bp, cmd.hr)
    if problems:
        raise Refused(problems)
    above = cmd.bp is not None and core.profile.predose_advisory.applies(*cmd.bp)
    data = {
        "bp": list(cmd.bp) if cmd.bp else None,
        "hr": cmd.hr,
        "bp_source": cmd.bp_source,
        "fasting": cmd.fasting,
        "escort": cmd.escort,
        "benzodiazepine": cmd.benzodiazepine,
        "hypnotic": cmd.hypnotic,
        "opioid": cmd.opioid,
        "psychostimulant": cmd.psychostimulant,
        "maoi": cmd.maoi,
        "rems_enrolled": cmd.rems_enrolled,
        "above_advisory": above,
    }
    manual: dict[str, float] = {}
    if cmd.bp_source == "manual" and cmd.bp is not None:
        manual = {"nibp_sys": cmd.bp[0], "nibp_dia": cmd.bp[1]}
        if cmd.hr is not None:
            manual["hr"] = cmd.hr
    return core._record(
        state,
        [EntryDraft(EntryKind.SCREENING, now, data)],
        actor,
        manual_values=manual,
        manual_time=now if manual else None,
    )


def _screening_problems(bp: Any, hr: Any) -> list[str]:
    problems = []
    if bp is not None:
        sys, dia = float(bp[0]), float(bp[1])
        if not (40 <= sys <= 300 and 20 <= dia <= 200 and dia < sys) or not (
            math.isfinite(sys) and math.isfinite(dia)
        ):
            problems.append(f"Pre-dose BP {sys:g}/{dia:g} is not plausible")
    if hr is not None and not (math.isfinite(float(hr)) and 20 <= float(hr) <= 250):
        problems.append(f"Pre-dose HR {float(hr):g} is not plausible")
    return problems


def _decide(k: _Call, cmd: c.PrescriberDecide) -> Outcome:
    core, state, actor, now, _latest, action = k
    if actor.role is not Role.PHYSICIAN:
        core._role(actor, Action.SCREENING)  # a nurse records it on the prescriber's sign-in
    who = core._physician(actor, cmd.authoriser, action, "The prescriber decision")
    if state.first_dose is not None:
        raise Refused(["Dosing has started: the pre-dose decision is closed"])
    if state.screening is None:
        raise Refused(["Record the pre-dose screening first"])
    data = {"decision": cmd.decision.value, "note": _clean(cmd.note)}
    return core._record(state, [EntryDraft(EntryKind.DECISION, now, data, who)], actor)


def _override_bp(k: _Call, cmd: c.OverrideMissingBp) -> Outcome:
    core, state, actor, now, _latest, action = k
    if actor.role is not Role.PHYSICIAN:
        core._role(actor, Action.SCREENING)
    who = core._physician(actor, cmd.authoriser, action, "Dosing without a pre-dose BP")
    if not cmd.reason.strip():
        raise Refused(["An override needs a reason"])
    if state.first_dose is not None:
        raise Refused(["Dosing has started"])
    return core._record(
        state,
        [EntryDraft(EntryKind.BP_OVERRIDE, now, {"reason": _clean(cmd.reason)}, who)],
        actor,
    )


def _dose_checks(core: ChairCore, state: SessionState, now: datetime, kind: Treatment) -> None:
    if state.plan.treatment is not kind:
        raise Refused([f"This is a {state.plan.treatment.value.replace('_', ' ')} session"])
    reasons = dose_blockers_for(core, state, now, fresh=True)
    if reasons:
        raise Refused(reasons)


def _device(k: _Call, cmd: c.LogDevice) -> Outcome:
    core, state, actor, now, latest, action = k
    core._role(actor, action)
    _dose_checks(core, state, now, Treatment.ESKETAMINE)
    lot = cmd.lot.strip()
    if not lot:
        raise Refused(["Enter the device's lot number"])
    if len(lot) > 64:
        raise Refused(["The lot number is longer than 64 characters"])
    if cmd.expiry:
        problems = supply_problems(Supply(ESKETAMINE_PRODUCT, 28.0, lot, cmd.expiry), now.date())
        if problems:
            raise Refused(problems)
    data = {
        "number": len(state.devices) + 1,
        "mg": 28.0,
        "lot": lot,
        "expiry": cmd.expiry or None,
        **_first_dose_data(state, latest),
        **_course_data(core, state, now),
    }
    out = core._record(state, [EntryDraft(EntryKind.DEVICE, now, data)], actor)
    if state.first_dose is None:
        out = _after_configure(core, out, actor)
    return out


def _start_infusion(k: _Call, cmd: c.StartInfusion) -> Outcome:
    core, state, actor, now, latest, action = k
    core._role(actor, action)
    if state.infusion is not None:
        raise Refused(["The infusion has already been started"])
    _dose_checks(core, state, now, Treatment.IV_KETAMINE)
    plan, weight = state.plan, state.patient.weight_kg
    assert plan.iv_mg_per_kg and plan.iv_minutes and weight
    mg = iv_dose_mg(plan.iv_mg_per_kg, weight)
    supply: dict[str, Any] = {}
    if cmd.supply is not None:
        problems = supply_problems(cmd.supply, now.date())
        drawn = cmd.drawn_mg if cmd.drawn_mg is not None else mg
        problems += quantity_problems(drawn, mg)
        if problems:
            raise Refused(problems)
        supply = {
            "product": cmd.supply.product.strip(),
            "concentration": float(cmd.supply.concentration),
            "lot": cmd.supply.lot.strip(),
            "expiry": cmd.supply.expiry,
            "drawn_mg": float(drawn),
        }
    data = {
        **supply,
        "planned_mg": mg,
        "rate_mg_per_min": iv_rate_mg_per_min(mg, plan.iv_minutes),
        "mg_per_kg": plan.iv_mg_per_kg,
        "weight_kg": weight,
        "planned_minutes": plan.iv_minutes,
        **_first_dose_data(state, latest),
        **_course_data(core, state, now),
    }
    out = core._record(state, [EntryDraft(EntryKind.INFUSION_STARTED, now, data)], actor)
    return _after_configure(core, out, actor)


def _stop_infusion(k: _Call, cmd: c.StopInfusion) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    inf = state.infusion
    if inf is None or inf.stop is not None:
        raise Refused(["No infusion is running"])
    minutes = max(0.0, (now - inf.start).total_seconds() / 60.0)
    given = round(min(inf.planned_mg, inf.rate_mg_per_min * minutes), 1)
    early = minutes < inf.planned_minutes - 0.5
    if early and not cmd.reason.strip():
        raise Refused(
            [
                f"The infusion is stopped at {minutes:.0f} of {inf.planned_minutes:g} min: "
                "give the reason"
            ]
        )
    data = {"given_mg": given, "minutes": round(minutes, 1), "reason": _clean(cmd.reason)}
    out = core._record(state, [EntryDraft(EntryKind.INFUSION_STOPPED, now, data)], actor)
    return _after_configure(core, out, actor)


def _other_dose(k: _Call, cmd: c.LogOtherDose) -> Outcome:
    core, state, actor, now, latest, action = k
    core._role(actor, action)
    if state.other_dose is not None:
        raise Refused(["The treatment has already been logged"])
    _dose_checks(core, state, now, Treatment.OTHER)
    if not cmd.description.strip():
        raise Refused(["Describe the treatment given (drug, route, dose)"])
    data = {"description": _clean(cmd.description), **_first_dose_data(state, latest)}
    out = core._record(state, [EntryDraft(EntryKind.OTHER_DOSE, now, data)], actor)
    return _after_configure(core, out, actor)


def _sedation_events(core: ChairCore, state: SessionState) -> list[AlarmEvent]:
    """The MOAA/S (and RASS) flag follows the latest rating, also after a correction."""
    events: list[AlarmEvent] = []
    moaas = state.latest_moaas
    if moaas is None:
        events += core.alarms.set_condition("moaas", None, "")
    else:
        prio = moaas_priority(moaas)
        priority = None if prio is None else Priority[prio.upper()]
        msg = f"{priority.marker} MOAA/S {moaas}" if priority else ""
        if moaas == 0:
            msg += " (loss of consciousness)"
        events += core.alarms.set_condition("moaas", priority, msg)
    rass = state.latest_rass
    r_name = None if rass is None else rass_priority(rass)
    r_prio = None if r_name is None else Priority[r_name.upper()]
    r_text = ""
    if r_prio is not None and rass is not None:
        r_text = f"{r_prio.marker} RASS {rass:+d}" + (" (agitation)" if rass >= 2 else "")
    events += core.alarms.set_condition("rass", r_prio, r_text)
    return events


def _observation(
    k: _Call, cmd: c.RecordMoaas | c.RecordRass | c.RecordCadss | c.AddNote
) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if isinstance(cmd, c.RecordMoaas):
        if not isinstance(cmd.score, int) or not 0 <= cmd.score <= 5:
            raise Refused(["MOAA/S is 0-5"])
        draft = EntryDraft(EntryKind.MOAAS, now, {"score": cmd.score})
    elif isinstance(cmd, c.RecordRass):
        if not isinstance(cmd.score, int) or not -5 <= cmd.score <= 4:
            raise Refused(["RASS is -5 to +4"])
        draft = EntryDraft(EntryKind.RASS, now, {"score": cmd.score})
    elif isinstance(cmd, c.RecordCadss):
        try:
            cadss_score(cmd.items, state.predose_cadss)
        except ValueError as exc:
            raise Refused([str(exc)]) from exc
        draft = EntryDraft(
            EntryKind.CADSS, now, {"items": {str(k): int(v) for k, v in cmd.items.items()}}
        )
    else:
        text = cmd.text.strip()
        if not text:
            raise Refused(["The note is empty"])
        if len(text) > 10_000:
            raise Refused(["The note is longer than 10,000 characters"])
        draft = EntryDraft(EntryKind.NOTE, now, {"text": text})
    out = core._record(state, [draft], actor)
    if isinstance(cmd, c.RecordMoaas | c.RecordRass):
        events = _sedation_events(core, out.state)
        if events:
            out = _merge(out, core._record(out.state, core._alarm_drafts(events), actor, events))
    return out


def _after_configure(core: ChairCore, out: Outcome, actor: Actor) -> Outcome:
    """Bring the live engine in line with the new state (dose time, baseline, infusion,
    limits) and record the events that causes."""
    events = core._configure(out.state)
    if not events:
        return out
    return _merge(out, core._record(out.state, core._alarm_drafts(events), actor, events))


def _merge(first: Outcome, second: Outcome) -> Outcome:
    return replace(
        second,
        entries=first.entries + second.entries,
        alarm_events=first.alarm_events + second.alarm_events,
        manual_values=first.manual_values or second.manual_values,
        manual_time=first.manual_time or second.manual_time,
    )


def _side_effects(k: _Call, cmd: c.RecordSideEffects) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if not cmd.effects:
        raise Refused(["Tick at least one side effect"])
    problems = []
    drafts = []
    for se in cmd.effects:
        known = SIDE_EFFECTS_BY_KEY.get(se.item)
        if known is None:
            problems.append(f"Unknown side effect {se.item!r}")
            continue
        if se.severity not in SEVERITIES:
            problems.append(f"{known.label}: severity is mild, moderate or severe")
        if known.serious and se.serious is None:
            problems.append(f"Answer 'serious adverse event?' for: {known.label}")
        if se.item == "other" and not se.text.strip():
            problems.append("Describe the 'other' side effect")
        drafts.append(
            EntryDraft(
                EntryKind.SIDE_EFFECT,
                now,
                {
                    "item": se.item,
                    "severity": se.severity,
                    "serious": se.serious if known.serious else None,
                    "onset": se.onset,
                    "text": se.text.strip(),
                },
            )
        )
    if problems:
        raise Refused(problems)
    return core._record(state, drafts, actor)


def _vitals(k: _Call, cmd: c.RecordVitals) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    problems = _vitals_problems(cmd.values)
    if problems:
        raise Refused(problems)
    values = {k: float(v) for k, v in cmd.values.items()}
    return core._record(
        state,
        [EntryDraft(EntryKind.VITALS, now, {"values": values})],
        actor,
        manual_values=values,
        manual_time=now,
    )


def _vitals_problems(values: Mapping[str, Any]) -> list[str]:
    problems = []
    if not values:
        problems.append("Enter at least one value")
    for k, v in values.items():
        if k not in MANUAL_LIMITS:
            problems.append(f"Unknown parameter {k!r}")
            continue
        lo, hi = MANUAL_LIMITS[k]
        if not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
            problems.append(f"{k} {v} is outside {lo:g}-{hi:g}")
    sys, dia = values.get("nibp_sys"), values.get("nibp_dia")
    if (sys is None) != (dia is None):
        problems.append("Enter both systolic and diastolic")
    elif sys is not None and dia is not None and dia >= sys:
        problems.append(f"Diastolic {dia:g} must be below systolic {sys:g}")
    return problems


def _symptoms(k: _Call, cmd: c.RecordSymptomCheck) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    missing = [label for key, label in BP_SYMPTOMS if key not in cmd.answers]
    if missing:
        raise Refused([f"Answer every symptom question ({', '.join(missing)})"])
    yes = [label for key, label in BP_SYMPTOMS if cmd.answers[key]]
    data = {"answers": {k: bool(v) for k, v in cmd.answers.items()}, "yes": yes}
    out = core._record(state, [EntryDraft(EntryKind.SYMPTOM_CHECK, now, data)], actor)
    if yes:
        events = core.alarms.set_condition(
            "hypertensive_emergency",
            Priority.HIGH,
            "*** Possible hypertensive emergency — escalate: prescriber notified ("
            + ", ".join(yes)
            + ")",
        )
        if events:
            out = _merge(out, core._record(out.state, core._alarm_drafts(events), actor, events))
    return out


def _bp40(k: _Call, cmd: c.RecordBp40Reason) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if not cmd.reason.strip():
        raise Refused(["Enter the reason the 40-minute BP was not taken"])
    draft = EntryDraft(EntryKind.BP40_REASON, now, {"reason": _clean(cmd.reason)})
    return core._record(state, [draft], actor)


def _correct(k: _Call, cmd: c.Correct) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if not cmd.reason.strip():
        raise Refused(["A correction needs a reason"])
    target_kind, old = _current(state, cmd.target_id)
    if target_kind is None:
        raise Refused(["Select the entry to correct"])
    allowed = CORRECTABLE.get(target_kind, frozenset())
    changes = dict(cmd.changes)
    if cmd.in_error:
        if target_kind is EntryKind.SCREENING:
            raise Refused(["A screening cannot be marked in error: correct its answers"])
        if changes:
            raise Refused(["An entry marked 'entered in error' takes no new values"])
    else:
        bad = [k for k in changes if k not in allowed]
        if bad or not changes:
            raise Refused(
                [f"Only {', '.join(sorted(allowed)) or 'nothing'} can be corrected here"]
            )
        changes = {k: v for k, v in changes.items() if old.get(k) != v}
        if not changes:
            raise Refused(["Nothing was changed"])
        problems = _correction_problems(target_kind, changes, state)
        if problems:
            raise Refused(problems)
    data: dict[str, Any] = {
        "target": cmd.target_id,
        "target_kind": target_kind.value,
        "changes": _json(changes),
        "old": _json({k: old.get(k) for k in (changes or old)}),
        "reason": _clean(cmd.reason),
        "in_error": cmd.in_error,
    }
    if target_kind is EntryKind.SCREENING and "bp" in changes:
        bp: Any = changes["bp"]
        data["above_advisory"] = bool(
            bp is not None and core.profile.predose_advisory.applies(float(bp[0]), float(bp[1]))
        )
    out = core._record(state, [EntryDraft(EntryKind.CORRECTION, now, data)], actor)
    if target_kind in (EntryKind.MOAAS, EntryKind.RASS):
        events = _sedation_events(core, out.state)
        if events:
            out = _merge(out, core._record(out.state, core._alarm_drafts(events), actor, events))
    return out


def _json(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, Mapping):
            v = {str(a): b for a, b in v.items()}
        out[k] = v
    return out


def _current(state: SessionState, target: int) -> tuple[EntryKind | None, dict[str, Any]]:
    s = state.screening
    if s is not None and s.entry_id == target:
        return EntryKind.SCREENING, {
            "bp": list(s.bp) if s.bp else None,
            "hr": s.hr,
            "fasting": s.fasting,
            "escort": s.escort,
            "benzodiazepine": s.benzodiazepine,
            "hypnotic": s.hypnotic,
            "opioid": s.opioid,
            "psychostimulant": s.psychostimulant,
            "maoi": s.maoi,
            "rems_enrolled": s.rems_enrolled,
        }
    for v in state.vitals:
        if v.entry_id == target:
            if v.in_error:
                return None, {}
            return EntryKind.VITALS, {"values": dict(v.values)}
    o = state.entry(target)
    if o is None or o.in_error:
        return None, {}
    if o.kind in (EntryKind.MOAAS, EntryKind.RASS):
        return o.kind, {"score": o.score}
    if o.kind is EntryKind.CADSS:
        return o.kind, {"items": {str(i): s for i, s in o.items}}
    if o.kind is EntryKind.SIDE_EFFECT:
        return o.kind, {"severity": o.severity, "serious": o.serious, "text": o.text}
    return o.kind, {"text": o.text}


def _correction_problems(
    kind: EntryKind, changes: Mapping[str, Any], state: SessionState
) -> list[str]:
    p: list[str] = []
    if "score" in changes:
        v = changes["score"]
        lo, hi = (0, 5) if kind is EntryKind.MOAAS else (-5, 4)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            p.append(f"{'MOAA/S' if kind is EntryKind.MOAAS else 'RASS'} is {lo} to {hi}")
    if "severity" in changes and changes["severity"] not in SEVERITIES:
        p.append("Severity is mild, moderate or severe")
    if "text" in changes and not str(changes["text"]).strip():
        p.append("The new text is empty")
    if "items" in changes:
        try:
            cadss_score({int(k): int(v) for k, v in changes["items"].items()}, None)
        except (ValueError, TypeError, AttributeError) as exc:
            p.append(str(exc))
    if "values" in changes:
        p += _vitals_problems(changes["values"])
    if kind is EntryKind.SCREENING:
        p += _screening_problems(changes.get("bp"), changes.get("hr"))
    return p


#: an acknowledgement given from the locked screen (issue 13): recorded with the flag, by the
#: station's system actor when nobody is signed in to the screen
LOCK_SCREEN = "at lock screen"


def _acknowledge(k: _Call, cmd: c.Acknowledge) -> Outcome:
    core, state, actor, _now, _latest, action = k
    if not (cmd.where == LOCK_SCREEN and actor.role is Role.SYSTEM):
        core._role(actor, action)
    if cmd.key is None:
        events = core.alarms.acknowledge_all()
    else:
        if cmd.key not in state.alarms:
            raise Refused(["That flag is no longer active"])
        events = core.alarms.acknowledge(cmd.key)
    drafts = core._alarm_drafts(events, actor)
    if cmd.where:
        drafts = [replace(d, data={**d.data, "where": cmd.where}) for d in drafts]
    return core._record(state, drafts, actor, events)


def _reset(k: _Call, cmd: c.ResetAlarms) -> Outcome:
    core, state, actor, _now, _latest, action = k
    core._role(actor, action)
    events = core.alarms.reset()
    return core._record(state, core._alarm_drafts(events, actor), actor, events)


def _reset_emergency(k: _Call, cmd: c.ResetEmergency) -> Outcome:
    core, state, actor, now, _latest, action = k
    who = core._physician(actor, cmd.authoriser, action, "Resetting the emergency flag")
    if "hypertensive_emergency" not in state.alarms:
        raise Refused(["No hypertensive-emergency flag is active"])
    if not cmd.documentation.strip():
        raise Refused(["Document the escalation (what was done) before resetting the flag"])
    note = EntryDraft(
        EntryKind.NOTE,
        now,
        {"text": f"Escalation documented: {_clean(cmd.documentation)}"},
        who,
    )
    events = core.alarms.reset_key("hypertensive_emergency")
    drafts = [note, *core._alarm_drafts(events, who or actor)]
    if not events:  # the engine had no such condition (e.g. review): record the reset itself
        drafts.append(
            EntryDraft(
                EntryKind.ALARM,
                now,
                {
                    "key": "hypertensive_emergency",
                    "action": "reset",
                    "priority": "high",
                    "message": "",
                    "technical": False,
                    "family": "bp_high",
                },
                who,
            )
        )
    return core._record(state, drafts, actor, events)


def _limit(k: _Call, cmd: c.ChangeLimit) -> Outcome:
    core, state, actor, now, _latest, action = k
    if actor.role is not Role.PHYSICIAN:
        core._role(actor, Action.OBSERVATION)  # nurses may carry a physician's sign-in
    who = core._physician(actor, cmd.authoriser, action, "Changing this session's limits")
    if not cmd.reason.strip():
        raise Refused(["A limit change needs a reason"])
    for v in (cmd.low, cmd.high):
        if v is not None and not math.isfinite(v):
            raise Refused(["A limit must be a finite number"])
    try:
        core.profile.with_limit(cmd.limit_id, cmd.low, cmd.high)
    except (ThresholdError, ValueError) as exc:
        raise Refused([str(exc)]) from exc
    data = {
        "limit_id": cmd.limit_id,
        "low": cmd.low,
        "high": cmd.high,
        "reason": _clean(cmd.reason),
    }
    out = core._record(state, [EntryDraft(EntryKind.LIMIT_CHANGED, now, data, who)], actor)
    return _after_configure(core, out, actor)


def discharge_unmet(
    core: ChairCore,
    state: SessionState,
    now: datetime,
    latest: Latest,
    checklist: Mapping[str, bool],
    ready_to_leave_min: int | None,
) -> list[Any]:
    unmet = unmet_criteria(
        state,
        now,
        latest,
        core.profile,
        min_observation_min=core.settings.min_observation(state.plan.treatment),
        checklist=checklist,
        ready_to_leave_min=ready_to_leave_min,
    )
    if state.suicidality_pending:
        unmet.append(
            Unmet(
                "suicidality",
                "PHQ-9 item 9 was answered above 0: record the action taken",
                overridable=False,
            )
        )
    if state.unaccounted_mg > 0:
        a = state.administration
        assert a is not None
        unmet.append(
            Unmet(
                "accountability",
                f"{state.unaccounted_mg:g} mg of {a.product} lot {a.lot} drawn but not given: "
                "record the waste (witnessed)",
                overridable=False,
            )
        )
    return unmet


def _discharge(k: _Call, cmd: c.Discharge) -> Outcome:
    core, state, actor, now, latest, action = k
    core._role(actor, action)
    if state.first_dose is None:
        raise Refused(["No dose has been logged: cancel the session instead"])
    unmet = discharge_unmet(core, state, now, latest, cmd.checklist, cmd.ready_to_leave_min)
    soft = [u for u in unmet if u.overridable]
    accept = "Discharging with an unmet criterion needs a physician's sign-in and a reason"
    if any(not u.overridable for u in unmet):  # every unmet criterion is listed, at once
        raise Refused([u.text for u in unmet] + ([accept] if soft else []))
    who: Actor | None = None
    if soft:
        if not cmd.override_reason.strip():
            raise Refused([u.text for u in soft] + [accept])
        who = core._physician(actor, cmd.authoriser, Action.DISCHARGE_OVERRIDE, "This discharge")
    try:
        core.auth.verify(actor.username, cmd.password)
    except AuthFailed as exc:
        raise Refused([f"Sign the discharge with your password: {exc}"]) from exc
    assert cmd.ready_to_leave_min is not None
    vitals_unmet = {u.criterion for u in soft} & {"spo2", "rr", "bp"}
    total = int((now - state.first_dose).total_seconds() // 60)
    sys, dia = latest.get("nibp_sys"), latest.get("nibp_dia")
    end_bp = [sys[0], dia[0]] if sys and dia and sys[1] >= state.first_dose else None
    pulse_ox = "spo2" in latest
    early = [u for u in soft if u.criterion == "min_observation"]
    data = {
        "checklist": {k: bool(v) for k, v in cmd.checklist.items()},
        "ready_to_leave_min": int(cmd.ready_to_leave_min),
        "total_min": total,
        "unmet": [u.text for u in soft],
        "early_reason": _clean(cmd.override_reason) if early else "",
        "override_reason": _clean(cmd.override_reason) if soft else "",
        "pulse_oximetry_used": pulse_ox,
        "end_bp": end_bp,
        "rems": rems_answers(state, vitals_ok_end=not vitals_unmet, pulse_oximetry_used=pulse_ox),
    }
    events = core.alarms.clear_all()
    drafts = [*core._alarm_drafts(events), EntryDraft(EntryKind.DISCHARGED, now, data, who)]
    return core._record(state, drafts, actor, events)


def _cancel(k: _Call, cmd: c.Cancel) -> Outcome:
    core, state, actor, now, _latest, action = k
    who: Actor | None = None
    if action is Action.CANCEL_AFTER_DOSE:
        who = core._physician(actor, cmd.authoriser, action, "Cancelling a dosed session")
    else:
        core._role(actor, action)
    if not cmd.reason.strip():
        raise Refused(["Give the reason the session is cancelled (entered in error)"])
    events = core.alarms.clear_all()
    drafts = [
        *core._alarm_drafts(events),
        EntryDraft(EntryKind.CANCELLED, now, {"reason": _clean(cmd.reason)}, who),
    ]
    return core._record(state, drafts, actor, events)


def _end_monitoring(k: _Call, cmd: c.EndMonitoring) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    events = core.alarms.clear_all()
    drafts = [
        *core._alarm_drafts(events),
        EntryDraft(EntryKind.ENDED, now, {"reason": _clean(cmd.reason) or "monitoring ended"}),
    ]
    return core._record(state, drafts, actor, events)


def _alarm_events(k: _Call, cmd: c.RecordAlarmEvents) -> Outcome:
    core, state, actor, _now, _latest, action = k
    core._role(actor, action)
    return core._record(state, core._alarm_drafts(cmd.events), actor, cmd.events)


def _link(k: _Call, cmd: c.RecordLink) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    draft = EntryDraft(EntryKind.LINK, now, {"state": cmd.state, "reason": cmd.reason})
    return core._record(state, [draft], actor)


# ---- the treatment course (issue 15) ---------------------------------------------------------


def _administer(k: _Call, cmd: c.AdministerDose) -> Outcome:
    core, state, actor, now, latest, action = k
    core._role(actor, action)
    plan, weight = state.plan, state.patient.weight_kg
    if plan.treatment not in (Treatment.IM_KETAMINE, Treatment.ORAL_KETAMINE):
        raise Refused([f"This is a {plan.treatment.value.replace('_', ' ')} session"])
    if state.administration is not None:
        raise Refused(["The dose has already been given"])
    reasons = dose_blockers_for(core, state, now, fresh=True)
    reasons += supply_problems(cmd.supply, now.date())
    mg_per_kg: float | None = None
    if plan.treatment is Treatment.IM_KETAMINE:
        assert plan.im_mg_per_kg and weight
        mg_per_kg = plan.im_mg_per_kg
        mg = im_dose_mg(plan.im_mg_per_kg, weight)
        route, form = "im", ""
        if cmd.site not in IM_SITES:
            reasons.append("Choose the injection site")
    else:
        assert plan.oral_mg
        mg = float(plan.oral_mg)
        form = plan.oral_form
        route = ORAL_FORMS[form][0]
    reasons += quantity_problems(cmd.drawn_mg, mg)
    if reasons:
        raise Refused(reasons)
    data = {
        "route": route,
        "product": cmd.supply.product.strip(),
        "concentration": float(cmd.supply.concentration),
        "lot": cmd.supply.lot.strip(),
        "expiry": cmd.supply.expiry,
        "drawn_mg": float(cmd.drawn_mg),
        "given_mg": mg,
        "mg_per_kg": mg_per_kg,
        "weight_kg": weight if mg_per_kg else None,
        "site": cmd.site if route == "im" else "",
        "form": form,
        **_first_dose_data(state, latest),
        **_course_data(core, state, now),
    }
    out = core._record(state, [EntryDraft(EntryKind.ADMINISTERED, now, data)], actor)
    return _after_configure(core, out, actor)


def _waste_limits(state: SessionState) -> dict[tuple[str, str], float]:
    """(product, lot) -> the most that may still be recorded as waste in this session (the IM
    / oral dose's drawn-but-not-given; 28 mg per esketamine device, less waste recorded)."""
    limits: dict[tuple[str, str], float] = {}
    for d in state.devices:
        key = (ESKETAMINE_PRODUCT, d.lot)
        limits[key] = limits.get(key, 0.0) + ESKETAMINE_DEVICE_MG
    for w in state.wastes:
        if (w.product, w.lot) in limits:
            limits[(w.product, w.lot)] -= w.mg
    a = state.administration
    if a is not None:
        limits[(a.product, a.lot)] = state.unaccounted_mg
    return limits


def _waste(k: _Call, cmd: c.RecordWaste) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    reasons: list[str] = []
    product, lot = cmd.product.strip(), cmd.lot.strip()
    if not isinstance(cmd.mg, int | float) or not math.isfinite(cmd.mg) or cmd.mg <= 0:
        reasons.append(f"The quantity wasted must be a positive number of mg, got {cmd.mg!r}")
    if not cmd.reason.strip():
        reasons.append("Give the reason for the waste (e.g. drawn more than the dose)")
    limits = _waste_limits(state)
    limits.update(_infusion_waste_limit(core, state))
    if (product, lot) not in limits:
        known = ", ".join(f"{p} lot {lt}" for p, lt in limits) or "nothing yet"
        reasons.append(f"{product} lot {lot} was not drawn in this session (drawn: {known})")
    elif not reasons and cmd.mg > limits[(product, lot)] + 1e-9:
        reasons.append(
            f"Only {max(0.0, limits[(product, lot)]):g} mg of {product} lot {lot} are left to "
            f"account for, not {cmd.mg:g}"
        )
    if product == ESKETAMINE_PRODUCT:
        numbers = {d.number for d in state.devices if d.lot == lot}
        if cmd.device_number not in numbers:
            reasons.append("Name the device (its number in this session) that was disposed")
    if cmd.witness is None:
        reasons.append("A second user must witness the waste: they sign in with their password")
    if reasons:
        raise Refused(reasons)
    assert cmd.witness is not None
    try:
        witness = core.auth.verify(cmd.witness.username, cmd.witness.password)
    except AuthFailed as exc:
        raise Refused([f"The witness: {exc}"]) from exc
    if witness.id == actor.id:
        raise Refused(["The witness must be a second user, not the one recording the waste"])
    if witness.role not in (Role.NURSE, Role.PHYSICIAN):
        raise Refused([f"The witness must be a nurse or a physician ({witness.username})"])
    data = {
        "product": product,
        "lot": lot,
        "mg": float(cmd.mg),
        "reason": _clean(cmd.reason),
        "device_number": cmd.device_number,
        "witness_id": witness.id,
    }
    return core._record(state, [EntryDraft(EntryKind.WASTE, now, data, witness)], actor)


def _infusion_waste_limit(core: ChairCore, state: SessionState) -> dict[tuple[str, str], float]:
    """The IV bag's drawn quantity less what was given (once the infusion has stopped)."""
    inf = state.infusion
    if inf is None or inf.stop is None or inf.given_mg is None:
        return {}
    started = next((e for e in core.entries if e.id == inf.entry_id), None)
    if started is None or "lot" not in started.data:
        return {}
    key = (str(started.data["product"]), str(started.data["lot"]))
    left = float(started.data["drawn_mg"]) - inf.given_mg
    left -= sum(w.mg for w in state.wastes if (w.product, w.lot) == key)
    return {key: round(left, 3)}


def _scale(k: _Call, cmd: c.RecordScale) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    try:
        scale = ScaleId(cmd.scale)
    except ValueError as exc:
        raise Refused([f"Unknown scale {cmd.scale!r}"]) from exc
    try:
        result = score_scale(scale, dict(cmd.items))
    except ValueError as exc:
        raise Refused(str(exc).split("; ")) from exc
    data = {
        "scale": scale.value,
        "items": {str(i): v for i, v in result.items},
        "total": result.total,
        "band": result.band,
        "suicidality": result.suicidality,
    }
    out = core._record(state, [EntryDraft(EntryKind.SCALE, now, data)], actor)
    if result.suicidality:
        item9 = dict(result.items)[9]
        events = core.alarms.set_condition(
            PHQ9_FLAG_KEY,
            Priority.HIGH,
            f"{Priority.HIGH.marker} PHQ-9 item 9 (thoughts of self-harm) answered {item9}: "
            "acknowledge and record the action taken",
        )
        if events:
            out = _merge(out, core._record(out.state, core._alarm_drafts(events), actor, events))
    return out


def _suicidality(k: _Call, cmd: c.RecordSuicidalityAction) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if not state.suicidality_pending:
        raise Refused(["No PHQ-9 item-9 answer is waiting for an action"])
    if not cmd.action.strip():
        raise Refused(["Record the action taken (e.g. risk assessment done, prescriber told)"])
    draft = EntryDraft(EntryKind.SUICIDALITY_ACTION, now, {"action": _clean(cmd.action)})
    out = core._record(state, [draft], actor)
    events = core.alarms.set_condition(PHQ9_FLAG_KEY, None, "")
    events += core.alarms.reset_key(PHQ9_FLAG_KEY)
    if events:
        out = _merge(
            out, core._record(out.state, core._alarm_drafts(events, actor), actor, events)
        )
    return out


def _assign_therapist(k: _Call, cmd: c.AssignTherapist) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    try:
        who = core.auth.verify(cmd.therapist.username, cmd.therapist.password)
    except AuthFailed as exc:
        raise Refused([f"The therapist: {exc}"]) from exc
    if who.role is not Role.THERAPIST:
        raise Refused([f"{who.username} is not a therapist ({who.role.value})"])
    if who.id in state.therapist_ids:
        raise Refused([f"{who.full_name} is already assigned to this session"])
    data = {"user_id": who.id, "username": who.username, "name": who.full_name}
    return core._record(state, [EntryDraft(EntryKind.THERAPIST_ASSIGNED, now, data, who)], actor)


def _therapist_note(k: _Call, cmd: c.AddTherapistNote) -> Outcome:
    core, state, actor, now, _latest, action = k
    core._role(actor, action)
    if actor.id not in state.therapist_ids:
        raise Refused(["A therapist writes notes only on a session they are assigned to"])
    text = cmd.text.strip()
    if not text:
        raise Refused(["The note is empty"])
    if len(text) > 10_000:
        raise Refused(["The note is longer than 10,000 characters"])
    return core._record(state, [EntryDraft(EntryKind.THERAPIST_NOTE, now, {"text": text})], actor)


_HANDLERS: dict[type, Callable[..., Outcome]] = {
    c.RecordScreening: _screening,
    c.PrescriberDecide: _decide,
    c.OverrideMissingBp: _override_bp,
    c.LogDevice: _device,
    c.StartInfusion: _start_infusion,
    c.StopInfusion: _stop_infusion,
    c.LogOtherDose: _other_dose,
    c.RecordMoaas: _observation,
    c.RecordRass: _observation,
    c.RecordCadss: _observation,
    c.AddNote: _observation,
    c.RecordSideEffects: _side_effects,
    c.RecordVitals: _vitals,
    c.RecordSymptomCheck: _symptoms,
    c.RecordBp40Reason: _bp40,
    c.Correct: _correct,
    c.Acknowledge: _acknowledge,
    c.ResetAlarms: _reset,
    c.ResetEmergency: _reset_emergency,
    c.ChangeLimit: _limit,
    c.Discharge: _discharge,
    c.Cancel: _cancel,
    c.EndMonitoring: _end_monitoring,
    c.RecordAlarmEvents: _alarm_events,
    c.RecordLink: _link,
    c.AdministerDose: _administer,
    c.RecordWaste: _waste,
    c.RecordScale: _scale,
    c.RecordSuicidalityAction: _suicidality,
    c.AssignTherapist: _assign_therapist,
    c.AddTherapistNote: _therapist_note,
}

__all__ = [
    "ChairCore",
    "CoreSettings",
    "Outcome",
    "Refused",
    "course_gate",
    "discharge_unmet",
    "dose_blockers_for",
    "profile_for",
]
