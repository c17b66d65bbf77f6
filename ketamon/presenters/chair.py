"""One chair's presenter: the widgets' only way to the chair's session and its monitor.

Commands go to the Qt-free :class:`~ketamon.core.session.ChairCore` on the command thread; the
result comes back as a queued signal and the presenter applies its effects on the UI thread
(manual values onto the chart, the dose time to the simulated patient, a clean chart for a new
patient). Widgets read immutable snapshots: the session state, the alarm list, the buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from devices.readings import Quality, Reading, make_reading
from devices.supervisor import LinkState, StatusEvent
from ketamon.acquisition.buffers import TrendBuffers, WaveBuffer
from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.config import ChairConfig, ConfigError, parse_chair
from ketamon.core import commands as c
from ketamon.core.alarms import EngineAlarms
from ketamon.core.commands import SideEffectInput
from ketamon.core.ports import Authenticator, SessionRepository
from ketamon.core.read_models import (
    ChairSummary,
    DosingStatus,
    RecordLine,
    chair_summary,
    correctable,
    dosing_status,
    record_lines,
)
from ketamon.core.session import (
    LOCK_SCREEN,
    ChairCore,
    CoreSettings,
    Outcome,
    Refused,
    discharge_unmet,
    dose_blockers_for,
)
from ketamon.domain.alarms import ActiveAlarm, AlarmAction, AlarmEvent, evaluate
from ketamon.domain.discharge import Latest, Unmet
from ketamon.domain.prompts import Prompt, PromptConfig, Recorded, next_due, prompts
from ketamon.domain.record import EntryKind, PatientInfo, Plan, SessionState
from ketamon.domain.roles import Actor
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.session_rules import (
    Phase,
    PrescriberDecision,
    Treatment,
    devices_for_dose,
    phase,
)
from ketamon.domain.side_effects import suggested_side_effects
from ketamon.domain.technical import max_ages
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.presenters.runner import CommandRunner, Pending

MEDICINES = ("benzodiazepine", "hypnotic", "opioid", "psychostimulant", "maoi")
__all__ = ["ChairPresenter", "LinkInfo", "RecordLine", "Refused", "SideEffectInput"]


def _screen_part(s: SessionState) -> SessionState:
    """The state without what only the flag list shows (compared cheaply: unchanged parts
    are the same objects)."""
    return replace(s, alarms={}, entry_count=0, last_entry_id=0, link_state="")


def _creds(username: str, password: str) -> c.Credentials | None:
    return c.Credentials(username.strip(), password) if username.strip() else None


def _current_values(s: SessionState, entry_id: int) -> Mapping[str, Any] | None:
    from ketamon.core.session import _current

    kind, values = _current(s, entry_id)
    return None if kind is None else values


def _now_text(kind: EntryKind, current: Mapping[str, Any], text: str) -> str:
    if kind in (EntryKind.MOAAS, EntryKind.RASS):
        return str(current.get("score"))
    if kind is EntryKind.NOTE:
        return str(current.get("text"))
    if kind is EntryKind.SIDE_EFFECT:
        return text.split(":")[0] + f": {current.get('severity')}"
    return text


log = logging.getLogger(__name__)

LINK_TEXT = {
    LinkState.CONNECTING: "MONITOR NOT CONNECTED",
    LinkState.NEGOTIATING: "MONITOR: waiting for data",
    LinkState.STREAMING: "MONITOR: streaming",
    LinkState.STOPPED: "MONITOR: stopped",
}


#: the station's durable path for a flag or link event: (session id, execute, command, time)
DurableRecord = Callable[[int, Callable[[], object], object, datetime], None]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    streaming: bool
    text: str


@dataclass(frozen=True, slots=True)
class AlarmAnnouncement:
    key: str
    priority: Priority


class ChairPresenter(QObject):
    """State and commands of one chair, for its widgets; lives in the UI thread."""

    sig_changed = Signal()  # the session's state changed
    sig_session_changed = Signal()  # another session (or none): forms start empty
    sig_symptom_check_requested = Signal()
    sig_alarm_raised = Signal(object)  # AlarmAnnouncement: sound and flash now
    sig_alarms_changed = Signal()  # redraw the flag list now, not on the next tick
    sig_link_changed = Signal(object)  # LinkInfo
    sig_error = Signal(str)  # a command or a recording could not be saved

    def __init__(
        self,
        acquisition: ChairAcquisition,
        repository: SessionRepository,
        authenticator: Authenticator,
        runner: CommandRunner,
        user: Callable[[], Actor],
        *,
        settings: CoreSettings | None = None,
        prompt_config: PromptConfig | None = None,
        nibp_interval_min: float = 15.0,
        monitor_factory: Callable[[ChairConfig], MonitorSpec] | None = None,
        submit_readings: Callable[[int, Sequence[Reading]], None] | None = None,
        load_readings: Callable[[int], list[Reading]] | None = None,
        storage_problem: Callable[[], str | None] | None = None,
        record_durably: DurableRecord | None = None,
    ) -> None:
        super().__init__()
        self._acq = acquisition
        self._durable = record_durably
        self._runner = runner
        self._user = user
        self.prompt_config = prompt_config or PromptConfig()
        self.nibp_interval_min = nibp_interval_min
        self._monitor_factory = monitor_factory
        self._submit_readings = submit_readings
        self._load_readings = load_readings
        self._storage_problem = storage_problem
        self._storage_flagged = False
        #: hide the patient's name on screen (set while the screen is locked, issue 13)
        self.mask_names = False
        pipeline = acquisition.pipeline
        self.core = ChairCore(
            acquisition.name,
            repository,
            authenticator,
            acquisition.profile,
            acquisition.clock.now,
            alarms=EngineAlarms(
                pipeline.alarms,
                acquisition.clock.now,
                pipeline.alarm_lock,
                acknowledged=pipeline.acknowledged,
            ),
            settings=settings,
        )
        self._session_id: int | None = None  # read by the device thread (an atomic read)
        self._shown_state: SessionState | None = None
        self._shown_session: int | None = None
        self._pending_symptoms = False
        #: when each flag held now was raised (the record has it too, while a session runs)
        self._raised_at: dict[str, datetime] = {}
        #: the monitor's own latest valid reading per parameter (written on the device thread,
        #: one dict assignment each): a value typed by hand never hides it
        self._monitor_latest: dict[str, Reading] = {}
        acquisition.set_sink(self._on_device_readings)
        acquisition.sig_alarm_changed.connect(self._on_acquisition_alarm_changed)
        acquisition.sig_link_changed.connect(self._on_acquisition_link_changed)

    # ---- what the widgets read -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._acq.name

    @property
    def buffers(self) -> TrendBuffers:
        return self._acq.buffers

    @property
    def pleth(self) -> WaveBuffer:
        return self._acq.pleth

    @property
    def profile(self) -> ThresholdProfile:
        return self._acq.profile

    @property
    def monitor_description(self) -> str:
        return self._acq.monitor.description

    @property
    def link(self) -> LinkInfo:
        st = self._acq.link_state
        text = LINK_TEXT[st]
        if st is not LinkState.STREAMING and self._acq.link_reason:
            text += f" ({self._acq.link_reason})"
        return LinkInfo(st is LinkState.STREAMING, text)

    def active_alarms(self) -> list[ActiveAlarm]:
        return self._acq.active_alarms()

    def worst_alarm(self) -> Priority | None:
        return self._acq.worst_alarm()

    def raised_at(self, key: str) -> datetime | None:
        """When the flag ``key`` was raised (as recorded, else as announced here)."""
        s = self.state
        if s is not None:
            status = s.alarms.get(key)
            if status is not None:
                return status.raised_at
        return self._raised_at.get(key)

    @property
    def state(self) -> SessionState | None:
        """The session running at this chair (None: the chair is free)."""
        return self.core.state

    @property
    def last_state(self) -> SessionState | None:
        return self.core.last_state

    @property
    def actor(self) -> Actor:
        return self._user()

    def now(self) -> datetime:
        return self._acq.clock.now()

    def session_clock(self) -> SessionClock:
        s = self.state
        if s is None:
            return SessionClock(self.now())
        return SessionClock(s.started, s.first_dose)

    def phase(self) -> Phase | None:
        s = self.state
        if s is None:
            return None
        return phase(
            self.session_clock(),
            self.now(),
            dosing_complete=s.dosing_complete,
            discharged=s.ended,
        )

    def latest(self) -> Latest:
        """The newest valid value of each parameter, with its time."""
        out: dict[str, tuple[float, datetime]] = {}
        for p, (r, _flag) in self._acq.buffers.latest().items():
            if r.valid:
                out[p] = (r.value, r.host_time)
        return out

    def monitor_latest(self) -> dict[str, tuple[Reading, int]]:
        """The monitor's latest valid reading per parameter, with the priority it breached."""
        held = self._acq.buffers.latest()
        out: dict[str, tuple[Reading, int]] = {}
        for p, r in list(self._monitor_latest.items()):
            got = held.get(p)
            if got is not None and got[0] is r:
                out[p] = got
            else:  # a manual value came later: the monitor's own breach, by its limits
                breach = evaluate(r, self.profile)
                out[p] = (r, int(breach.priority) if breach else 0)
        return out

    def standing_artifacts(self) -> dict[str, str]:
        """Parameters whose newest monitor value was implausible (an artifact, stored invalid
        and never used), newer than their last valid value: parameter → why."""
        latest = self._monitor_latest
        out: dict[str, str] = {}
        for a in list(self._acq.pipeline.artifacts):  # newest last
            p = a.reading.parameter
            good = latest.get(p)
            if good is None or a.reading.host_time >= good.host_time:
                out[p] = a.reason
            else:
                out.pop(p, None)
        return out

    def manual_latest(self) -> dict[str, tuple[datetime, float, str]]:
        """The latest value typed by hand per parameter: (time, value, by), from the record
        (an entry marked entered in error no longer counts)."""
        s = self.state
        out: dict[str, tuple[datetime, float, str]] = {}
        if s is None:
            return out
        scr = s.screening
        if scr is not None and scr.bp_source == "manual" and scr.bp is not None:
            by = next((e.author for e in self.core.entries if e.id == scr.entry_id), "")
            out["nibp_sys"] = (scr.at, scr.bp[0], by)
            out["nibp_dia"] = (scr.at, scr.bp[1], by)
            if scr.hr is not None:
                out["hr"] = (scr.at, scr.hr, by)
        for v in s.vitals:
            if v.in_error:
                continue
            for p, value in v.values.items():
                cur = out.get(p)
                if cur is None or v.at >= cur[0]:
                    out[p] = (v.at, float(value), v.by)
        return out

    def numeric_ages(self) -> tuple[dict[str, float], dict[str, float]]:
        """(grey after, "--" after) in seconds per parameter. Continuous values grey after 10 s
        and blank once the link loss is medium priority (the site's ``link_lost_medium_s``);
        a cuff value greys after its interval plus grace and blanks after one more interval."""
        grey = max_ages(self.nibp_interval_min)
        site = self.core.settings.site or {}
        link_medium = float(site.get("link_lost_medium_s", 30.0))
        blank = {
            p: (age + self.nibp_interval_min * 60.0 if p.startswith("nibp") else link_medium)
            for p, age in grey.items()
        }
        return grey, blank

    def latest_value(self, parameter: str) -> float | None:
        got = self.latest().get(parameter)
        return None if got is None else got[0]

    def latest_nibp(self) -> tuple[float, float] | None:
        latest = self.latest()
        sys, dia = latest.get("nibp_sys"), latest.get("nibp_dia")
        if sys is None or dia is None:
            return None
        return sys[0], dia[0]

    def needs_prescriber_decision(self, bp: tuple[float, float] | None) -> bool:
        return bp is not None and self.profile.predose_advisory.applies(*bp)

    def _bp_minutes(self, s: SessionState, clock: SessionClock) -> list[float]:
        series = self._acq.buffers.series("nibp_sys")
        start, zero = s.started.timestamp(), clock.zero.timestamp()
        times = [] if series is None else [(t - zero) / 60.0 for t in series.t if t >= start]
        times += [clock.minutes(v.at) for v in s.vitals if "nibp_sys" in v.values]
        return sorted(times)

    def prompts(self) -> list[Prompt]:
        s = self.state
        if s is None:
            return []
        clock = self.session_clock()
        rec = Recorded(
            bp=self._bp_minutes(s, clock),
            moaas=[clock.minutes(o.at) for o in s.live(EntryKind.MOAAS)]
            + [clock.minutes(o.at) for o in s.live(EntryKind.RASS)],
            cadss=[clock.minutes(o.at) for o in s.live(EntryKind.CADSS)],
            bp40_reason=bool(s.bp40_reason),
        )
        return prompts(clock, self.now(), rec, self.prompt_config)

    def next_due(self) -> Prompt | None:
        return next_due(self.prompts())

    def dose_blockers(self) -> list[str]:
        s = self.state
        if s is None:
            return ["Start a session first"]
        return dose_blockers_for(self.core, s, self.now())

    def next_device_in_s(self) -> float | None:
        s = self.state
        if s is None or not s.devices or s.dosing_complete:
            return None
        left = (s.devices[-1].at + timedelta(minutes=5) - self.now()).total_seconds()
        return max(0.0, left)

    def dosing_status(self) -> DosingStatus | None:
        """The next device's countdown, or the infusion's elapsed time and planned stop."""
        s = self.state
        return None if s is None else dosing_status(s, self.now())

    def planned_devices(self) -> int:
        s = self.state
        if s is None or s.plan.treatment is not Treatment.ESKETAMINE or not s.plan.dose_mg:
            return 0
        return devices_for_dose(s.plan.dose_mg)

    def discharge_unmet(
        self, checklist: Mapping[str, bool], ready_to_leave_min: int | None
    ) -> list[Unmet]:
        s = self.state
        if s is None:
            return []
        return discharge_unmet(
            self.core, s, self.now(), self.latest(), checklist, ready_to_leave_min
        )

    def suggested_side_effects(self) -> list[str]:
        s = self.state
        return suggested_side_effects(set(s.flagged_families)) if s else []

    @property
    def symptom_check_pending(self) -> bool:
        s = self.state
        return bool(s and s.symptom_check_pending)

    # ---- commands ----------------------------------------------------------------------------
    def submit(self, command: c.Command, what: str = "") -> Pending[Outcome]:
        """Give ``command`` to the core on the command thread. A refusal the UI can know at
        once (the user's role) comes back resolved before this returns."""
        latest = self.latest()
        try:
            actor = self.actor  # refused while the screen is locked (issue 13)
            self.core.check(command, actor, latest)
        except Refused as exc:
            p: Pending[Outcome] = Pending(what)
            p.reasons = exc.reasons
            p._resolve()
            return p
        core = self.core
        pending = self._runner.submit(lambda: core.execute(command, actor, latest), what)
        pending.on_done(self._on_command_done)
        return pending

    def start_session(
        self, patient: PatientInfo, plan: Plan, *, confirmed: bool
    ) -> Pending[Outcome]:
        cmd = c.StartSession(patient, plan, self.monitor_description, confirmed=confirmed)
        return self.submit(cmd, "start session")

    def find_patients(self, query: str) -> Pending[list[PatientInfo]]:
        repo = self.core.repo
        return self._runner.submit(lambda: repo.find_patients(query), "patient search")

    def record_screening(
        self,
        *,
        bp: tuple[float, float] | None,
        hr: float | None,
        bp_source: str,
        fasting: bool,
        escort: bool,
        rems_enrolled: bool | None,
        medicines: Mapping[str, bool],
    ) -> Pending[Outcome]:
        meds = {k: bool(medicines.get(k, False)) for k in MEDICINES}
        cmd = c.RecordScreening(
            bp, hr, bp_source, fasting, escort, rems_enrolled=rems_enrolled, **meds
        )
        return self.submit(cmd, "screening")

    def prescriber_decision(
        self, decision: PrescriberDecision, *, username: str = "", password: str = ""
    ) -> Pending[Outcome]:
        cmd = c.PrescriberDecide(decision, authoriser=_creds(username, password))
        return self.submit(cmd, "prescriber decision")

    def override_missing_bp(
        self, reason: str, *, username: str = "", password: str = ""
    ) -> Pending[Outcome]:
        cmd = c.OverrideMissingBp(reason, authoriser=_creds(username, password))
        return self.submit(cmd, "BP override")

    def log_esketamine_device(self, lot: str) -> Pending[Outcome]:
        return self.submit(c.LogDevice(lot), "device")

    def start_infusion(self) -> Pending[Outcome]:
        return self.submit(c.StartInfusion(), "infusion start")

    def stop_infusion(self, reason: str = "") -> Pending[Outcome]:
        return self.submit(c.StopInfusion(reason), "infusion stop")

    def log_other_treatment(self, description: str) -> Pending[Outcome]:
        return self.submit(c.LogOtherDose(description), "treatment")

    def record_moaas(self, score: int) -> Pending[Outcome]:
        return self.submit(c.RecordMoaas(score), "MOAA/S")

    def record_rass(self, score: int) -> Pending[Outcome]:
        return self.submit(c.RecordRass(score), "RASS")

    def record_cadss(self, items: Mapping[int, int]) -> Pending[Outcome]:
        return self.submit(c.RecordCadss(dict(items)), "CADSS")

    def record_side_effects(self, effects: Sequence[SideEffectInput]) -> Pending[Outcome]:
        return self.submit(c.RecordSideEffects(list(effects)), "side effects")

    def add_note(self, text: str) -> Pending[Outcome]:
        return self.submit(c.AddNote(text), "note")

    def record_manual_vitals(self, values: Mapping[str, float]) -> Pending[Outcome]:
        return self.submit(c.RecordVitals(dict(values)), "vitals")

    def record_bp40_reason(self, reason: str) -> Pending[Outcome]:
        return self.submit(c.RecordBp40Reason(reason), "40-min BP reason")

    def record_symptom_check(self, answers: Mapping[str, bool]) -> Pending[Outcome]:
        return self.submit(c.RecordSymptomCheck(dict(answers)), "symptom check")

    def correct(
        self,
        entry_id: int,
        changes: Mapping[str, object],
        reason: str,
        *,
        in_error: bool = False,
    ) -> Pending[Outcome]:
        return self.submit(c.Correct(entry_id, dict(changes), reason, in_error), "correction")

    def acknowledge(self, key: str | None = None) -> Pending[Outcome]:
        return self.submit(c.Acknowledge(key), "acknowledge")

    def acknowledge_at_lock_screen(self, key: str | None = None) -> Pending[Outcome]:
        """ACKNOWLEDGED from the locked screen (issue 13): nobody is signed in to the screen, so
        it is recorded by the station's system actor, marked "at lock screen" in the flag's
        entry (and so in the audit row that seals it). Refused, as at the chair's own screen,
        when no session runs at the chair."""
        core, latest = self.core, self.latest()
        cmd = c.Acknowledge(key, where=LOCK_SCREEN)

        def run() -> Outcome:
            return core.execute(cmd, core.system(), latest)

        pending = self._runner.submit(run, "acknowledge at lock screen")
        pending.on_done(self._on_command_done)
        return pending

    def reset_alarms(self) -> Pending[Outcome]:
        return self.submit(c.ResetAlarms(), "alarm reset")

    def reset_emergency(
        self, documentation: str, *, username: str = "", password: str = ""
    ) -> Pending[Outcome]:
        cmd = c.ResetEmergency(documentation, authoriser=_creds(username, password))
        return self.submit(cmd, "emergency reset")

    def change_limit(
        self,
        limit_id: str,
        low: float | None,
        high: float | None,
        reason: str,
        *,
        username: str = "",
        password: str = "",
    ) -> Pending[Outcome]:
        cmd = c.ChangeLimit(limit_id, low, high, reason, _creds(username, password))
        return self.submit(cmd, "limit change")

    def discharge(
        self,
        checklist: Mapping[str, bool],
        ready_to_leave_min: int | None,
        *,
        password: str,
        override_reason: str = "",
        physician: str = "",
        physician_password: str = "",
    ) -> Pending[Outcome]:
        cmd = c.Discharge(
            dict(checklist),
            ready_to_leave_min,
            password=password,
            override_reason=override_reason,
            authoriser=_creds(physician, physician_password),
        )
        return self.submit(cmd, "discharge")

    def cancel(self, reason: str, *, username: str = "", password: str = "") -> Pending[Outcome]:
        return self.submit(c.Cancel(reason, _creds(username, password)), "cancel")

    def summary(self) -> ChairSummary:
        """This chair at a glance, for the overview (the patient's name hidden while
        ``mask_names`` says so: behind the idle lock, when the site asks for it)."""
        x = chair_summary(
            self.name,
            self.state,
            self.last_state,
            self.now(),
            self.next_due(),
            self.worst_alarm(),
            self.link.text,
        )
        if self.mask_names and self.state is not None:
            x = replace(x, patient="(name hidden: screen locked)")
        return x

    def patient_label(self) -> str:
        """The running session's patient as the screen shows them ("" when none)."""
        s = self.state
        if s is None:
            return ""
        return "(name hidden: screen locked)" if self.mask_names else s.patient.label

    def record(self) -> list[RecordLine]:
        """The latest session's record in words, in time order (flags and link events too)."""
        return record_lines(self.core.entries)

    def correctable_entries(self) -> list[tuple[int, str, EntryKind, Mapping[str, Any]]]:
        """(id, description, kind, current values) of the entries that can be corrected."""
        s = self.state
        if s is None:
            return []
        lines = {line.entry_id: line for line in record_lines(self.core.entries)}
        out = []
        for e in correctable(self.core.entries):
            current = _current_values(s, e.id)
            if current is None:
                continue
            line = lines[e.id]
            text = f"{line.at.astimezone().strftime('%H:%M')} · {line.author} · {line.label}: "
            out.append((e.id, text + _now_text(e.kind, current, line.text), e.kind, current))
        return out

    def resume(
        self, session_id: int, *, first: Callable[[], None] | None = None
    ) -> Pending[SessionState]:
        """Carry on with a session left open by a restart, loaded on the command thread
        (``first`` runs there before it: the station notes the resume in the audit trail)."""
        core, load = self.core, self._load_readings

        def run() -> tuple[SessionState, list[Reading]]:
            if first is not None:
                first()
            state = core.resume(session_id)
            readings = load(session_id) if load is not None else []
            return state, readings

        pending: Pending[Any] = self._runner.submit(run, "resume")
        out: Pending[SessionState] = Pending("resume")

        def done(p: Pending[Any]) -> None:
            if p.ok and p.result is not None:
                state, readings = p.result
                self._acq.buffers.clear()
                self._acq.buffers.extend(readings)  # the chart's history, not re-evaluated
                self._monitor_latest.clear()
                for r in readings:
                    if r.valid and not r.quality & Quality.MANUAL:
                        self._monitor_latest[r.parameter] = r
                out.result = state
                self._after(state)
            out.reasons = p.reasons
            out._resolve()

        pending.on_done(done)
        return out

    # ---- the chair's monitor ------------------------------------------------------------------
    def connect_monitor(self, protocol: str, address: str = "", scenario: str = "stable") -> str:
        """Connect this chair to another monitor (while no session runs). ``address`` is a
        serial port, or HOST:PORT for HL7 over TCP (``listen:HOST:PORT`` to wait for it)."""
        if self.state is not None:
            raise Refused(["Change the monitor before starting the session"])
        if self._monitor_factory is None:
            raise Refused(["This station cannot change monitors"])
        raw: dict[str, object] = {"name": self.name, "protocol": protocol}
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
            raise Refused([str(exc).removeprefix(f"monitor ({self.name}): ")]) from exc
        spec = self._monitor_factory(chair_config)
        self._acq.replace_monitor(spec)
        self.sig_changed.emit()
        return spec.description

    # ---- periodic (the view's 2 Hz timer) ------------------------------------------------------
    def tick(self) -> None:
        s = self.state
        problem = self._storage_problem() if self._storage_problem is not None else None
        if problem and not self._storage_flagged:
            self._acq.storage_failed(problem)
        elif not problem and self._storage_flagged:
            self._acq.storage_ok()
        self._storage_flagged = bool(problem)
        self._acq.tick(
            self.now(),
            session_active=s is not None,
            first_dose=s.first_dose if s else None,
            nibp_interval_min=self.nibp_interval_min,
        )

    # ---- results, on the UI thread ------------------------------------------------------------
    def _on_command_done(self, p: Pending[Outcome]) -> None:
        if p.error is not None:
            self.sig_error.emit(p.reasons[0] if p.reasons else str(p.error))
        out = p.result
        if out is None:
            return
        if out.manual_values and out.manual_time is not None:
            try:
                who = self.actor.username
            except Refused:  # locked since it was given: the record names its author
                who = "locked"
            readings = [
                make_reading(k, v, out.manual_time, quality=Quality.MANUAL, source=f"manual:{who}")
                for k, v in out.manual_values.items()
            ]
            # the chart and the rules see them like monitor readings; the record has them
            self._acq.inject(readings, store=False)
        self._announce(out.alarm_events)
        self._after(out.state)

    def _durably(
        self, session_id: int, cmd: c.Command, at: datetime
    ) -> Callable[[], Outcome | None]:
        """A flag or link event's recording, for the command thread: through the station's
        durable path when it has one (retried while the database is away, spooled at a stop;
        None then), else at once."""
        core, durable = self.core, self._durable

        def execute() -> Outcome:
            return core.execute(cmd, core.system())

        def run() -> Outcome | None:
            if durable is None:
                return execute()
            done: list[Outcome] = []
            durable(session_id, lambda: done.append(execute()), cmd, at)
            return done[0] if done else None

        return run

    def _on_recorded(self, p: Pending[Outcome | None]) -> None:
        """A flag or link event the monitor's side raised was recorded (already announced)."""
        if p.error is not None:
            self.sig_error.emit(p.reasons[0] if p.reasons else str(p.error))
        if p.result is not None:
            self._after(p.result.state)

    def _after(self, state: SessionState) -> None:
        """Bring the live side in line with the recorded state."""
        current = self.core.state
        sid = current.session_id if current is not None else None
        if sid != self._shown_session:
            new_patient = current is not None and state.entry_count <= 2
            if new_patient or current is None:
                # a new patient, or the last one gone: nothing of theirs shows any more
                self._acq.buffers.clear()
                self._monitor_latest.clear()
            self._shown_session = sid
            self._pending_symptoms = False
            self.sig_session_changed.emit()
        self._session_id = sid
        self._acq.set_first_dose(current.first_dose if current else None)
        if current is not None and current.symptom_check_pending and not self._pending_symptoms:
            self.sig_symptom_check_requested.emit()
        self._pending_symptoms = bool(current and current.symptom_check_pending)
        self.sig_alarms_changed.emit()
        # A recorded flag or link event changes nothing else the screen shows: skip the full
        # refresh for those (a flag storm must not keep the UI thread busy).
        shown = None if current is None else _screen_part(current)
        if shown is None or shown != self._shown_state:
            self._shown_state = shown
            self.sig_changed.emit()

    def _announce(self, events: Sequence[AlarmEvent]) -> None:
        for e in events:
            if e.action is AlarmAction.RAISED:
                self._raised_at[e.key] = e.time
            elif e.action in (AlarmAction.CLEARED, AlarmAction.RESET):
                self._raised_at.pop(e.key, None)
            if e.action in (AlarmAction.RAISED, AlarmAction.ESCALATED):
                self.sig_alarm_raised.emit(AlarmAnnouncement(e.key, e.priority))

    # ---- events from the acquisition ----------------------------------------------------------
    def _on_device_readings(self, readings: Sequence[Reading]) -> None:
        # Device thread: only readings of a running session are stored.
        latest = self._monitor_latest
        for r in readings:
            if r.valid:
                latest[r.parameter] = r
        sid = self._session_id
        if sid is not None and self._submit_readings is not None:
            self._submit_readings(sid, readings)

    @Slot(object)
    def _on_acquisition_alarm_changed(self, event: AlarmEvent) -> None:
        # drawn and sounded now; recorded on the command thread
        self._announce([event])
        self.sig_alarms_changed.emit()
        if self._session_id is None:
            return
        cmd = c.RecordAlarmEvents([event])
        run = self._durably(self._session_id, cmd, event.time)
        # announced above already: the result only brings the state up to date
        self._runner.submit(run, "record flag").on_done(self._on_recorded)

    @Slot(object)
    def _on_acquisition_link_changed(self, event: StatusEvent) -> None:
        self.sig_link_changed.emit(self.link)
        if self._session_id is None:
            return
        cmd = c.RecordLink(event.state.value, event.reason)
        run = self._durably(self._session_id, cmd, event.time)
        self._runner.submit(run, "record link").on_done(self._on_recorded)
