"""One chair's session: the state the nurse works with, and the rules applied to each action.

Every action validates with the pure domain rules, persists through the store (committed at
once, with the signed-in user), then updates the in-memory state and emits ``sig_changed``.
A refused action raises :class:`ActionRefused` with the reasons, worded for the nurse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from PySide6.QtCore import QObject, Signal

from devices.readings import Quality, Reading, make_reading
from devices.supervisor import LinkState, StatusEvent
from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.config import ChairConfig, ConfigError, parse_chair
from ketamon.domain.alarms import AlarmAction, AlarmEvent
from ketamon.domain.prompts import Prompt, PromptConfig, Recorded, next_due, prompts
from ketamon.domain.scales import cadss_score, moaas_priority
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.session_rules import (
    ChecklistItem,
    Phase,
    PredoseState,
    Treatment,
    devices_for_dose,
    discharge_blockers,
    dose_blockers,
    iv_dose_mg,
    iv_rate_mg_per_min,
    next_device_blocker,
    phase,
    total_duration_min,
)
from ketamon.domain.side_effects import BP_SYMPTOMS, Severity, suggested_side_effects
from ketamon.domain.thresholds import Priority
from ketamon.model.types import (
    CurrentUser,
    DischargeOutcome,
    Entry,
    OpenSessionInfo,
    PatientDetails,
    Screening,
    SessionPlan,
    SessionStore,
    SideEffectEntry,
)

LINK_LOST_ALARM_S = 30.0  # a connection loss longer than this is a medium technical alarm
PROBE_OFF_ALARM_S = 10.0
NIBP_GRACE_MIN = 2.0


class ActionRefused(Exception):
    """The action is not allowed now; ``reasons`` say why."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass
class _Session:
    id: int
    patient: PatientDetails
    plan: SessionPlan
    started: datetime
    screening: Screening | None = None
    first_dose: datetime | None = None
    device_times: list[datetime] = field(default_factory=list)
    infusion_id: int | None = None
    infusion_start: datetime | None = None
    infusion_stop: datetime | None = None
    moaas: list[tuple[datetime, int]] = field(default_factory=list)
    cadss: list[tuple[datetime, int]] = field(default_factory=list)
    predose_cadss_total: int | None = None
    side_effects: list[SideEffectEntry] = field(default_factory=list)
    notes: list[tuple[int, datetime, str]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    manual_bp: list[datetime] = field(default_factory=list)
    bp40_reason: str = ""
    symptom_check_pending: bool = False
    escalated: bool = False
    discharged: datetime | None = None
    flagged_families: set[str] = field(default_factory=set)


class ChairSessionModel(QObject):
    """State and actions of one chair; lives in the UI thread."""

    sig_changed = Signal()
    sig_symptom_check_requested = Signal()

    def __init__(
        self,
        chair: ChairAcquisition,
        store: SessionStore,
        user: Callable[[], CurrentUser],
        *,
        prompt_config: PromptConfig | None = None,
        nibp_interval_min: float = 15.0,
        monitor_factory: Callable[[ChairConfig], MonitorSpec] | None = None,
    ) -> None:
        super().__init__()
        self.chair = chair
        self.store = store
        self._user = user
        self.prompt_config = prompt_config or PromptConfig()
        self.nibp_interval_min = nibp_interval_min
        self.session: _Session | None = None
        self._session_id: int | None = None  # read by the device thread (an atomic int read)
        self._link_lost_since: datetime | None = None
        self._monitor_factory = monitor_factory
        chair.set_sink(self._on_chair_readings)
        chair.sig_alarm_changed.connect(self._on_chair_alarm_changed)
        chair.sig_link_changed.connect(self._on_chair_link_changed)

    # ---- clock and derived state ------------------------------------------------------------
    def now(self) -> datetime:
        return self.chair.clock.now()

    @property
    def user(self) -> CurrentUser:
        return self._user()

    def session_clock(self) -> SessionClock:
        s = self.session
        if s is None:
            return SessionClock(self.now())
        return SessionClock(s.started, s.first_dose)

    def dosing_complete(self) -> bool:
        s = self.session
        if s is None or s.first_dose is None:
            return False
        if s.plan.treatment is Treatment.ESKETAMINE and s.plan.dose_mg:
            return len(s.device_times) >= devices_for_dose(s.plan.dose_mg)
        if s.plan.treatment is Treatment.IV_KETAMINE:
            return s.infusion_stop is not None
        return True

    def phase(self) -> Phase | None:
        s = self.session
        if s is None:
            return None
        return phase(
            self.session_clock(),
            self.now(),
            dosing_complete=self.dosing_complete(),
            discharged=s.discharged is not None,
        )

    def _bp_minutes(self) -> list[float]:
        clock = self.session_clock()
        series = self.chair.buffers.series("nibp_sys")
        s = self.session
        if series is None or s is None:
            return []
        start = s.started.timestamp()
        zero = clock.zero.timestamp()
        return [(t - zero) / 60.0 for t in series.t if t >= start]

    def prompts(self) -> list[Prompt]:
        s = self.session
        if s is None or s.discharged is not None:
            return []
        clock = self.session_clock()
        rec = Recorded(
            bp=self._bp_minutes(),
            moaas=[clock.minutes(t) for t, _ in s.moaas],
            cadss=[clock.minutes(t) for t, _ in s.cadss],
            bp40_reason=bool(s.bp40_reason),
        )
        return prompts(clock, self.now(), rec, self.prompt_config)

    def next_due(self) -> Prompt | None:
        return next_due(self.prompts())

    def predose_state(self) -> PredoseState | None:
        s = self.session
        if s is None:
            return None
        sc = s.screening
        return PredoseState(
            treatment=s.plan.treatment,
            bp=sc.bp if sc else None,
            hr=sc.hr if sc else None,
            decision=sc.decision if sc else None,
            physician_override=bool(sc and sc.override_reason.strip()),
            rems_enrolled=(
                sc.rems_enrolled
                if sc and sc.rems_enrolled is not None
                else s.patient.rems_enrolled
            ),
            first_treatment=s.plan.first_treatment,
            escort_confirmed=bool(sc and sc.escort_confirmed),
        )

    def dose_blockers(self) -> list[str]:
        s = self.session
        if s is None:
            return ["Start a session first"]
        if s.discharged is not None:
            return ["The session has ended"]
        reasons: list[str] = []
        if s.first_dose is None:
            if s.screening is None:
                reasons.append("Record the pre-dose screening first")
            state = self.predose_state()
            assert state is not None
            reasons += [
                r
                for r in dose_blockers(state, self.chair.profile.predose_advisory)
                if s.screening is not None or "missing" not in r
            ]
        if s.plan.treatment is Treatment.ESKETAMINE:
            planned = devices_for_dose(s.plan.dose_mg or 56.0)
            b = next_device_blocker(s.device_times, planned, self.now())
            if b:
                reasons.append(b)
        return reasons

    def next_device_in_s(self) -> float | None:
        """Seconds until the next esketamine device may be given (None: no countdown)."""
        s = self.session
        if s is None or not s.device_times or self.dosing_complete():
            return None
        left = (s.device_times[-1] + timedelta(minutes=5) - self.now()).total_seconds()
        return max(0.0, left)

    def latest_nibp(self) -> tuple[float, float] | None:
        latest = self.chair.buffers.latest()
        sys, dia = latest.get("nibp_sys"), latest.get("nibp_dia")
        if sys is None or dia is None:
            return None
        return sys[0].value, dia[0].value

    def latest_value(self, parameter: str) -> float | None:
        item = self.chair.buffers.latest().get(parameter)
        return None if item is None else item[0].value

    def suggested_side_effects(self) -> list[str]:
        s = self.session
        return suggested_side_effects(s.flagged_families) if s else []

    # ---- the chair's monitor ------------------------------------------------------------------
    def connect_monitor(self, protocol: str, address: str = "", scenario: str = "stable") -> str:
        """Connect this chair to another monitor (before a session starts). ``address`` is a
        serial port, or HOST:PORT for HL7 over TCP (``listen:HOST:PORT`` to wait for the
        sender). Returns the new monitor's description."""
        if self.session is not None and self.session.discharged is None:
            raise ActionRefused(["Change the monitor before starting the session"])
        if self._monitor_factory is None:
            raise ActionRefused(["This station cannot change monitors"])
        raw: dict[str, object] = {"name": self.chair.name, "protocol": protocol}
        address = address.strip()
        if protocol == "simulator":
            raw["scenario"] = scenario
        elif protocol == "hl7" and address.startswith("listen:"):
            raw["listen"] = address.removeprefix("listen:")
        elif protocol == "hl7" and ":" in address and not address.startswith("/"):
            raw["tcp"] = address
        elif address:
            raw["port"] = address
        try:
            chair_config = parse_chair(raw, "monitor")
        except ConfigError as exc:
            raise ActionRefused([str(exc).removeprefix(f"monitor ({self.chair.name}): ")]) from exc
        spec = self._monitor_factory(chair_config)
        self.chair.replace_monitor(spec)
        self._changed()
        return spec.description

    # ---- session lifecycle -------------------------------------------------------------------
    def start_session(self, patient: PatientDetails, plan: SessionPlan) -> int:
        if self.session is not None and self.session.discharged is None:
            raise ActionRefused(["A session is already running at this chair"])
        reasons = []
        if plan.treatment is Treatment.ESKETAMINE and plan.dose_mg not in (56.0, 84.0):
            reasons.append("Choose the esketamine dose: 56 mg or 84 mg")
        if plan.treatment is Treatment.IV_KETAMINE:
            if not plan.iv_mg_per_kg or not plan.iv_minutes:
                reasons.append("Enter the IV dose in mg/kg and the infusion time in minutes")
            if not patient.weight_kg:
                reasons.append("The patient's weight is needed for an IV dose")
        if not patient.mrn.strip() or not patient.last_name.strip():
            reasons.append("The patient needs an MRN and a last name")
        if reasons:
            raise ActionRefused(reasons)
        now = self.now()
        sid = self.store.start_session(
            self.chair.name, patient, plan, self.chair.monitor.description, self.user, now
        )
        self.session = _Session(sid, patient, plan, now)
        self._session_id = sid
        # The record starts with the monitor's state at that moment.
        state = self.chair.link_state
        self.store.record_link(
            sid,
            StatusEvent(
                self.chair.name,
                state,
                state,
                f"at session start: {self.chair.link_reason or state.value}",
                now,
            ),
        )
        self.chair.set_first_dose(None)
        self._changed()
        return sid

    def resume(self, info: OpenSessionInfo) -> None:
        """Carry on with a session left open by a crash or restart, as it was recorded."""
        self.session = s = _Session(
            info.session_id,
            info.patient,
            info.plan,
            info.started,
            first_dose=info.first_dose,
            device_times=list(info.device_times),
        )
        s.entries = list(info.entries)
        for e in info.entries:
            if e.kind == "moaas":
                s.moaas.append((e.time, int(e.value)))
            elif e.kind == "cadss":
                s.cadss.append((e.time, int(e.value)))
                if info.first_dose is None or e.time < info.first_dose:
                    s.predose_cadss_total = int(e.value)
            elif e.kind == "note":
                s.notes.append((e.id, e.time, e.value))
            elif e.kind == "side_effect":
                s.side_effects.append(
                    SideEffectEntry(e.item, e.item, Severity(e.value), None, e.serious)
                )
        if info.infusion is not None:
            s.infusion_id, s.infusion_start, s.infusion_stop = info.infusion
        self._session_id = info.session_id
        self.chair.set_first_dose(info.first_dose)
        self._changed()

    def record_screening(self, screening: Screening) -> None:
        s = self._require_session()
        if s.first_dose is not None:
            raise ActionRefused(["The pre-dose screening is closed once dosing has started"])
        problems = []
        if screening.bp is None and not screening.override_reason.strip():
            problems.append("Enter the pre-dose BP, or a physician override with a reason")
        if screening.bp is not None:
            sys, dia = screening.bp
            if not (40 <= sys <= 300 and 20 <= dia <= 200 and dia < sys):
                problems.append(f"Pre-dose BP {sys:g}/{dia:g} is not plausible")
        if screening.hr is not None and not 20 <= screening.hr <= 250:
            problems.append(f"Pre-dose HR {screening.hr:g} is not plausible")
        if screening.decision is not None and screening.decision_by_id is None:
            problems.append("The prescriber must sign in to record the decision")
        if screening.override_reason.strip() and screening.override_by_id is None:
            problems.append("A physician must sign in to override the missing BP")
        if problems:
            raise ActionRefused(problems)
        now = self.now()
        self.store.save_screening(s.id, screening, self.user, now)
        if screening.bp_source == "manual" and screening.bp is not None:
            self._inject_manual(
                {
                    "nibp_sys": screening.bp[0],
                    "nibp_dia": screening.bp[1],
                    **({"hr": screening.hr} if screening.hr else {}),
                },
                now,
            )
        s.screening = screening
        self._changed()

    def needs_prescriber_decision(self, bp: tuple[float, float] | None) -> bool:
        return bp is not None and self.chair.profile.predose_advisory.applies(*bp)

    # ---- dosing ------------------------------------------------------------------------------
    def log_esketamine_device(self, lot: str) -> int:
        s = self._require_session()
        if s.plan.treatment is not Treatment.ESKETAMINE:
            raise ActionRefused(["This session is not an esketamine session"])
        reasons = self.dose_blockers()
        if not lot.strip():
            reasons.append("Enter the device's lot number")
        if reasons:
            raise ActionRefused(reasons)
        now = self.now()
        number = len(s.device_times) + 1
        did = self.store.log_esketamine_device(s.id, number, 28.0, lot.strip(), self.user, now)
        s.device_times.append(now)
        if s.first_dose is None:
            self._set_first_dose(now)
        self._changed()
        return did

    def start_infusion(self) -> int:
        s = self._require_session()
        if s.plan.treatment is not Treatment.IV_KETAMINE:
            raise ActionRefused(["This session is not an IV ketamine session"])
        if s.infusion_start is not None:
            raise ActionRefused(["The infusion has already started"])
        reasons = self.dose_blockers()
        if reasons:
            raise ActionRefused(reasons)
        weight = s.patient.weight_kg or 0.0
        mgkg = s.plan.iv_mg_per_kg or 0.0
        try:
            mg = iv_dose_mg(mgkg, weight)
            rate = iv_rate_mg_per_min(mg, s.plan.iv_minutes or 0.0)
        except ValueError as exc:
            raise ActionRefused([str(exc)]) from exc
        now = self.now()
        s.infusion_id = self.store.start_infusion(s.id, mg, mgkg, weight, rate, self.user, now)
        s.infusion_start = now
        self._set_first_dose(now)
        self._changed()
        return s.infusion_id

    def stop_infusion(self) -> None:
        s = self._require_session()
        if s.infusion_id is None or s.infusion_stop is not None:
            raise ActionRefused(["No infusion is running"])
        now = self.now()
        self.store.stop_infusion(s.infusion_id, self.user, now)
        s.infusion_stop = now
        self._changed()

    def log_other_treatment(self) -> None:
        """Start of a treatment other than esketamine or IV ketamine: starts the clock."""
        s = self._require_session()
        if s.first_dose is not None:
            raise ActionRefused(["The treatment start is already logged"])
        reasons = self.dose_blockers()
        if reasons:
            raise ActionRefused(reasons)
        now = self.now()
        self.store.record_note(s.id, "Treatment started", self.user, now)
        self._set_first_dose(now)
        self._changed()

    def _set_first_dose(self, when: datetime) -> None:
        s = self._require_session()
        s.first_dose = when
        self.chair.set_first_dose(when)

    # ---- observations ------------------------------------------------------------------------
    def _entry(self, oid: int, kind: str, when: datetime, value: str, **kw: object) -> None:
        s = self._require_session()
        s.entries.append(Entry(oid, kind, when, self.user.full_name, value, **kw))  # type: ignore[arg-type]

    def record_moaas(self, score: int) -> None:
        s = self._require_session()
        moaas_priority(score)  # validates 0-5
        now = self.now()
        oid = self.store.record_moaas(s.id, score, self.user, now)
        s.moaas.append((now, score))
        self._entry(oid, "moaas", now, str(score))
        self._apply_latest_moaas()
        self._changed()

    def _apply_latest_moaas(self) -> None:
        """The MOAA/S flag follows the latest score (also after a correction)."""
        s = self._require_session()
        if not s.moaas:
            return
        score = s.moaas[-1][1]
        prio = moaas_priority(score)
        priority = None if prio is None else Priority[prio.upper()]
        msg = f"{priority.marker if priority else ''} MOAA/S {score}".strip()
        if score == 0:
            msg += " (loss of consciousness)"
        self.chair.set_condition("moaas", priority, msg)
        if score <= 3:
            s.flagged_families.add("sedation")

    def record_cadss(self, items: Mapping[int, int]) -> int:
        s = self._require_session()
        try:
            result = cadss_score(items, s.predose_cadss_total)
        except ValueError as exc:
            raise ActionRefused([str(exc)]) from exc
        now = self.now()
        oid = self.store.record_cadss(s.id, items, self.user, now)
        s.cadss.append((now, result.total))
        self._entry(oid, "cadss", now, str(result.total))
        if s.first_dose is None:
            s.predose_cadss_total = result.total
        self._changed()
        return result.total

    def record_side_effects(self, entries: Sequence[SideEffectEntry]) -> None:
        s = self._require_session()
        missing = [e.label for e in entries if e.serious is None and _is_serious(e.key)]
        if missing:
            raise ActionRefused([f"Answer 'serious adverse event?' for: {', '.join(missing)}"])
        now = self.now()
        for e in entries:
            oid = self.store.record_side_effect(s.id, e, self.user, now)
            s.side_effects.append(e)
            self._entry(oid, "side_effect", now, e.severity.value, item=e.key, serious=e.serious)
        self._changed()

    def add_note(self, text: str) -> int:
        s = self._require_session()
        if not text.strip():
            raise ActionRefused(["The note is empty"])
        now = self.now()
        oid = self.store.record_note(s.id, text.strip(), self.user, now)
        s.notes.append((oid, now, text.strip()))
        self._entry(oid, "note", now, text.strip())
        self._changed()
        return oid

    def correct_entry(self, entry_id: int, new_value: str, reason: str) -> None:
        """Correct a recorded MOAA/S score, side-effect severity or note, with a reason."""
        s = self._require_session()
        entry = next((e for e in s.entries if e.id == entry_id), None)
        if entry is None:
            raise ActionRefused(["Select the entry to correct"])
        if entry.kind == "cadss":
            raise ActionRefused(["A CADSS rating is corrected by rating it again"])
        if not reason.strip():
            raise ActionRefused(["A correction needs a reason"])
        value = new_value.strip()
        if entry.kind == "moaas" and value not in {str(i) for i in range(6)}:
            raise ActionRefused(["MOAA/S is 0-5"])
        if entry.kind == "side_effect" and value not in {"mild", "moderate", "severe"}:
            raise ActionRefused(["Severity is mild, moderate or severe"])
        if not value:
            raise ActionRefused(["The new value is empty"])
        if value == entry.value:
            raise ActionRefused(["Nothing was changed"])
        self.store.correct_entry(entry, value, reason.strip(), self.user)
        fixed = Entry(
            entry.id, entry.kind, entry.time, entry.author, value, entry.item, entry.serious
        )
        s.entries = [fixed if e.id == entry_id else e for e in s.entries]
        if entry.kind == "note":
            s.notes = [(i, t, value if i == entry_id else x) for i, t, x in s.notes]
        if entry.kind == "moaas":
            s.moaas = [(t, int(value) if t == entry.time else v) for t, v in s.moaas]
            self._apply_latest_moaas()
        self._changed()

    def record_manual_vitals(self, values: Mapping[str, float]) -> None:
        self._require_session()
        limits = {
            "nibp_sys": (40, 300),
            "nibp_dia": (20, 200),
            "hr": (20, 250),
            "spo2": (50, 100),
            "rr": (0, 80),
        }
        problems = [
            f"{k} {v:g} is outside {limits[k][0]}-{limits[k][1]}"
            for k, v in values.items()
            if k in limits and not limits[k][0] <= v <= limits[k][1]
        ]
        unknown = [k for k in values if k not in limits]
        if unknown:
            problems.append(f"unknown parameter(s): {', '.join(unknown)}")
        if not values:
            problems.append("Enter at least one value")
        if problems:
            raise ActionRefused(problems)
        self._inject_manual(values, self.now())
        self._changed()

    def _inject_manual(self, values: Mapping[str, float], when: datetime) -> None:
        s = self._require_session()
        readings = [
            make_reading(k, v, when, quality=Quality.MANUAL, source=f"manual:{self.user.username}")
            for k, v in values.items()
        ]
        nibp = [r for r in readings if r.parameter.startswith("nibp_")]
        self.store.record_manual_vitals(s.id, readings, self.user)
        if nibp:
            s.manual_bp.append(when)
        # Through the chair: the same buffers and alarm rules as monitor readings, not stored
        # twice (the store has them already).
        self.chair.inject(readings, store=False)

    def record_bp40_reason(self, reason: str) -> None:
        s = self._require_session()
        if not reason.strip():
            raise ActionRefused(["Enter the reason the 40-minute BP was not taken"])
        self.store.record_note(
            s.id, f"40-min BP not taken: {reason.strip()}", self.user, self.now()
        )
        s.bp40_reason = reason.strip()
        self._changed()

    # ---- thresholds -------------------------------------------------------------------------
    def override_threshold(
        self, limit_id: str, low: float | None, high: float | None, reason: str
    ) -> None:
        """A per-session change of one limit; needs a reason, recorded with the new profile."""
        s = self._require_session()
        if not reason.strip():
            raise ActionRefused(["A threshold override needs a reason"])
        try:
            profile = self.chair.profile.with_limit(limit_id, low, high)
        except ValueError as exc:
            raise ActionRefused([str(exc)]) from exc
        self.store.record_threshold_override(
            s.id, profile, limit_id, reason.strip(), self.user, self.now()
        )
        self.chair.set_profile(profile)
        self._changed()

    # ---- symptom check after a BP flag -------------------------------------------------------
    @property
    def symptom_check_pending(self) -> bool:
        return bool(self.session and self.session.symptom_check_pending)

    def record_symptom_check(self, answers: Mapping[str, bool]) -> bool:
        """Record the answers; any "yes" raises the high-priority escalation. Returns it."""
        s = self._require_session()
        missing = [label for key, label in BP_SYMPTOMS if key not in answers]
        if missing:
            raise ActionRefused([f"Answer every symptom question ({', '.join(missing)})"])
        yes = [label for key, label in BP_SYMPTOMS if answers[key]]
        now = self.now()
        text = "Symptom check after BP flag: " + (", ".join(yes) if yes else "no symptoms")
        if yes:
            text += ". Possible hypertensive emergency: prescriber notified."
        self.store.record_note(s.id, text, self.user, now)
        s.symptom_check_pending = False
        if yes:
            s.escalated = True
            s.flagged_families.add("bp")
            self.chair.set_condition(
                "hypertensive_emergency",
                Priority.HIGH,
                "*** Possible hypertensive emergency — escalate (" + ", ".join(yes) + ")",
            )
        self._changed()
        return bool(yes)

    # ---- discharge ---------------------------------------------------------------------------
    def discharge_blockers(
        self,
        checklist: Mapping[ChecklistItem, bool],
        ready_to_leave_min: float | None,
        early_override_reason: str = "",
    ) -> list[str]:
        s = self.session
        if s is None:
            return ["No session"]
        return discharge_blockers(
            self.session_clock(),
            self.now(),
            dict(checklist),
            early_override_reason=early_override_reason or None,
            ready_to_leave_min=ready_to_leave_min,
        )

    def discharge(
        self,
        checklist: Mapping[ChecklistItem, bool],
        ready_to_leave_min: int,
        early_override_reason: str = "",
        override_by: CurrentUser | None = None,
    ) -> int:
        s = self._require_session()
        reasons = self.discharge_blockers(checklist, ready_to_leave_min, early_override_reason)
        early = self.session_clock().minutes(self.now()) < 120
        if (
            early
            and early_override_reason.strip()
            and (override_by is None or not override_by.is_physician)
        ):
            reasons.append("An early discharge must be authorised by a physician")
        if reasons:
            raise ActionRefused(reasons)
        now = self.now()
        assert s.first_dose is not None
        total = total_duration_min(s.first_dose, now)
        dosed = s.first_dose
        outcome = DischargeOutcome(
            checklist=dict(checklist),
            ready_to_leave_min=ready_to_leave_min,
            early_override_reason=early_override_reason.strip(),
            override_by=override_by.username if override_by else "",
            override_by_id=override_by.id if override_by else None,
            total_duration_min=total,
            sedation=any(score < 5 for t, score in s.moaas if t >= dosed),
            dissociation=any(c > 4 for t, c in s.cadss if t >= dosed)
            or any(e.key == "dissociation" for e in s.side_effects),
            respiratory_depression=any(e.key == "respiratory_depression" for e in s.side_effects),
            serious_adverse_event=any(bool(e.serious) for e in s.side_effects),
            pulse_oximetry_used=self.chair.buffers.count("spo2") > 0,
            vitals_ok_end=bool(checklist.get(ChecklistItem.SPO2_RR_OK))
            and bool(checklist.get(ChecklistItem.BP_BASELINE)),
        )
        self.store.discharge(s.id, outcome, self.user, now)
        s.discharged = now
        self._session_id = None
        self._changed()
        return total

    # ---- periodic checks (called by the view's timer) ----------------------------------------
    def tick(self) -> None:
        s = self.session
        if s is None or s.discharged is not None:
            return
        now = self.now()
        self._technical_alarms(now)

    def _technical_alarms(self, now: datetime) -> None:
        lost = self._link_lost_since
        if lost is not None and (now - lost).total_seconds() > LINK_LOST_ALARM_S:
            self.chair.set_condition(
                "tech_link",
                Priority.MEDIUM,
                f"** Monitor disconnected for {int((now - lost).total_seconds())} s",
                technical=True,
            )
        latest = self.chair.buffers.latest()
        clock = self.session_clock()
        if clock.first_dose is not None:
            sys = latest.get("nibp_sys")
            last = sys[0].host_time if sys else clock.first_dose
            overdue = (now - last).total_seconds() / 60 - (self.nibp_interval_min + NIBP_GRACE_MIN)
            if overdue > 0:
                self.chair.set_condition(
                    "tech_nibp",
                    Priority.LOW,
                    f"* No NIBP for {int((now - last).total_seconds() // 60)} min",
                    technical=True,
                )
            else:
                self.chair.set_condition("tech_nibp", None, "", technical=True)
        spo2 = self.chair.buffers.series("spo2")
        if spo2 is not None and len(spo2.t):
            recent = spo2.t >= now.timestamp() - PROBE_OFF_ALARM_S
            if recent.sum() >= 3 and bool(spo2.invalid[recent].all()):
                self.chair.set_condition(
                    "tech_spo2",
                    Priority.MEDIUM,
                    "** SpO₂ probe off / invalid signal",
                    technical=True,
                )
            elif recent.any() and not bool(spo2.invalid[recent].all()):
                self.chair.set_condition("tech_spo2", None, "", technical=True)

    # ---- events from the chair ---------------------------------------------------------------
    def _on_chair_readings(self, readings: Sequence[Reading]) -> None:
        # Device thread: only readings of an active session are stored.
        sid = self._session_id
        if sid is not None:
            self.store.submit_readings(sid, readings)

    def _on_chair_alarm_changed(self, event: AlarmEvent) -> None:
        s = self.session
        if s is None or s.discharged is not None:
            return
        self.store.record_alarm(s.id, event, self.user)
        if event.action in (AlarmAction.RAISED, AlarmAction.ESCALATED):
            family = _family(event.key)
            if family:
                s.flagged_families.add(family)
            if family == "bp" and event.key != "hypertensive_emergency" and not s.escalated:
                s.symptom_check_pending = True
                self.sig_symptom_check_requested.emit()
        self._changed()

    def _on_chair_link_changed(self, event: StatusEvent) -> None:
        if event.state is LinkState.STREAMING:
            self._link_lost_since = None
            self.chair.set_condition("tech_link", None, "", technical=True)
        elif self._link_lost_since is None and event.previous is LinkState.STREAMING:
            self._link_lost_since = event.time
        s = self.session
        if s is not None and s.discharged is None:
            self.store.record_link(s.id, event)
        self._changed()

    def _require_session(self) -> _Session:
        if self.session is None or self.session.discharged is not None:
            raise ActionRefused(["No session is running at this chair"])
        return self.session

    def _changed(self) -> None:
        self.sig_changed.emit()


def _family(key: str) -> str | None:
    if key.startswith(("nibp_", "bp_rise")):
        return "bp"
    if key in ("hr", "pr"):
        return "hr"
    return None


def _is_serious(key: str) -> bool:
    from ketamon.domain.side_effects import SIDE_EFFECTS_BY_KEY

    se = SIDE_EFFECTS_BY_KEY.get(key)
    return bool(se and se.serious)
