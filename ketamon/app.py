"""GUI wiring: the station (database, writer, command thread, chairs and their presenters)
and the main window."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import SimulatorProtocol
from devices.readings import Reading, Waveform
from devices.transports import Transport
from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.clinic import registry
from ketamon.clinic.feed import CentralFeed
from ketamon.config import ChairConfig, Config
from ketamon.core.course import CourseCore
from ketamon.core.desk import Reviewed, SessionDesk
from ketamon.core.pmf import build_form, deadline, pmf_required
from ketamon.core.ports import AuthFailed, OpenSessionRef
from ketamon.core.session import CoreSettings, Refused
from ketamon.core.signing import load_meanings
from ketamon.domain.record import PatientInfo, SessionState
from ketamon.domain.roles import Actor, Role
from ketamon.domain.site import SiteProfile
from ketamon.domain.sources import SourceSelector
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.exports import ExportError, ExportRefused, ExportResult, export_session
from ketamon.exports.pmf_pdf import write_pmf_pdf
from ketamon.hl7out import Hl7OutWorker
from ketamon.hl7out import start_from_config as start_hl7_out
from ketamon.paths import AppPaths
from ketamon.presenters.admin import AdminPresenter
from ketamon.presenters.chair import ChairPresenter
from ketamon.presenters.review import BP, ReviewPresenter, ReviewView
from ketamon.presenters.runner import CommandRunner, Pending
from ketamon.services import build_monitor, open_database
from ketamon.site_settings import load_site_profile
from ketamon.storage import records
from ketamon.storage.admin import AdminStore
from ketamon.storage.courses import SqlCourseRepository
from ketamon.storage.database import sqlite_path
from ketamon.storage.emergency import Emergency, emergencies, start_emergency
from ketamon.storage.history import session_readings, session_series
from ketamon.storage.models import Patient, RemsEnrolment
from ketamon.storage.outbox import record_export
from ketamon.storage.profiles import profile_file
from ketamon.storage.repository import SqlSessionRepository, list_sessions, previous_session
from ketamon.storage.spool import EntryRetrier, Spool, replay_spool, spool_path_for
from ketamon.storage.users import AuthError, authenticate, change_own_password, ensure_demo_users
from ketamon.storage.waves import WaveformRecorder, session_waveform
from ketamon.storage.writer import DatabaseWriter
from ketamon.ui import theme
from ketamon.ui.admin import AdminWidget
from ketamon.ui.central import CentralWidget
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.lock import AccessHooks
from ketamon.ui.login import LoginDialog, ResumeSessionsDialog
from ketamon.ui.main_window import MainWindow
from ketamon.ui.review import ReviewWidget
from ketamon.ui.sound import AlarmSounder

log = logging.getLogger(__name__)

DEMO_CHAIRS = (
    ChairConfig(name="Chair 1", protocol="simulator", scenario="bp_rise"),
    ChairConfig(name="Chair 2", protocol="simulator", scenario="desaturation"),
)
DEMO_PATIENTS = (
    PatientInfo(
        None, "DEMO-0001", "Alex", "Demo", weight_kg=78.0, rems_enrolled=True, sex="female"
    ),
    PatientInfo(
        None, "DEMO-0002", "Sam", "Sample", weight_kg=91.0, rems_enrolled=True, sex="male"
    ),
    PatientInfo(None, "DEMO-0003", "Robin", "Example", weight_kg=64.0, rems_enrolled=False),
)
DEMO_NURSE = ("nurse", "demo")


class StationAuth:
    """The core's authenticator: a password checked against the station's database."""

    def __init__(self, station: Station) -> None:
        self._station = station

    def verify(self, username: str, password: str) -> Actor:
        writer = self._station.writer
        if writer is None:
            raise AuthFailed("the station is not open")
        try:
            u = authenticate(
                writer.engine,
                username,
                password,
                lockout_after=self._station.site.lockout_failures,
            )
        except AuthError as exc:
            raise AuthFailed(str(exc)) from exc
        role = Role(u.role.value)
        if self._station.emergency_active_for(u.id):  # break-glass: physician rights for now
            role = Role.PHYSICIAN
        return Actor(u.id, u.username, u.full_name, role, u.credentials)


class ClinicPresence:
    """A GUI station on a clinic's PostgreSQL: registered with its chairs, a heartbeat every
    2 s, and each chair's session, link and next item due published when they change, so the
    central view shows this station's chairs as it shows a headless station's (issue 14).

    Its own thread; it reads only immutable session snapshots and the thread-safe buffers.
    A failed write is logged and tried again at the next beat: presence never stops a chair.
    """

    def __init__(self, engine: Any, name: str, models: Sequence[ChairPresenter]) -> None:
        self.engine, self.name, self.models = engine, name, list(models)
        self.station_id: int | None = None
        self._published: dict[str, tuple[Any, ...]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clinic-presence", daemon=True)

    def start(self) -> ClinicPresence:
        self.station_id = registry.register(
            self.engine, self.name, [m.name for m in self.models], kind="gui"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self.station_id is not None:
            with contextlib.suppress(Exception):
                registry.stopped(self.engine, self.station_id)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # the server away: the next beat tries again
                log.warning("clinic presence: %s", exc)
            if self._stop.wait(registry.HEARTBEAT_S):
                return

    def beat(self) -> None:
        assert self.station_id is not None
        registry.heartbeat(self.engine, self.station_id)
        for m in self.models:
            state = m.state
            due = m.next_due() if state is not None else None
            text = "" if state is None else "nothing due" if due is None else due.label
            link = m.link.text
            key = (None if state is None else state.session_id, link, text)
            if self._published.get(m.name) == key:
                continue
            registry.update_chair(
                self.engine, self.station_id, m.name, session_id=key[0], link=link, next_due=text
            )
            self._published[m.name] = key


@dataclass
class Station:
    """Everything one station runs: the database writer, the command thread, and one
    acquisition + presenter per chair."""

    database_url: str
    profile: ThresholdProfile
    clock: Clock = field(default_factory=SystemClock)
    backup_dir: Path | None = None
    profile_origin: str = ""
    site: SiteProfile = field(default_factory=lambda: load_site_profile(None))
    chairs: list[ChairAcquisition] = field(default_factory=list)
    models: list[ChairPresenter] = field(default_factory=list)
    wave_recorders: list[WaveformRecorder] = field(default_factory=list)
    hl7_out: Hl7OutWorker | None = None
    presence: ClinicPresence | None = None
    central_feed: CentralFeed | None = None
    #: flag and link events retried per session; at shutdown their deadline passes
    _retriers: dict[int, EntryRetrier] = field(default_factory=dict)
    _stop_deadline: float | None = None
    writer: DatabaseWriter | None = None
    repository: SqlSessionRepository | None = None
    runner: CommandRunner | None = None
    user: Actor | None = None
    #: a break-glass sign-in in force (physician rights until it expires), and the user's own
    emergency: Emergency | None = None
    emergency_ended: Emergency | None = None
    _own_user: Actor | None = None
    #: the screen is locked (idle, or signed out): no entry until someone signs in again
    locked: bool = False
    #: where the admin tab keeps an edited profile (ketamon.storage.profiles)
    config_file: Path | None = None
    site_file: str = ""
    thresholds_file: str = ""
    #: where the spool lives for a PostgreSQL database (a SQLite one keeps it beside its file)
    data_dir: Path | None = None
    _open_refs: list[OpenSessionRef] | None = None

    def open(self) -> None:
        engine = open_database(self.database_url, backup_dir=self.backup_dir)
        spool = None
        data_dir = self.data_dir or (self.backup_dir.parent if self.backup_dir else None)
        if data_dir is not None or sqlite_path(self.database_url):
            spool = Spool(spool_path_for(self.database_url, data_dir or Path(".")))
            if spool.exists():  # what the last stop could not store
                try:
                    log.warning("spool: %s", replay_spool(spool, engine).summary())
                except Exception as exc:  # still failing: kept for the next start
                    log.error("the spool %s could not be replayed: %s", spool.path, exc)
        self.writer = DatabaseWriter(engine, spool=spool).start()
        self.repository = SqlSessionRepository(
            engine, self.writer, profile=self.profile, profile_origin=self.profile_origin
        )
        self.runner = CommandRunner()

    # ---- users -------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> Actor:
        return StationAuth(self).verify(username, password)

    def sign_in(self, username: str, password: str) -> Actor:
        user = self.authenticate(username, password)
        self.emergency = self._own_user = None
        self.user = user
        assert self.writer is not None
        self.writer.user_id = user.id
        return user

    def sign_in_emergency(self, username: str, password: str, why: str) -> Actor:
        """Break-glass: the user's own password and a reason give physician rights for the
        site's ``break_glass_min``; recorded for an admin's review (ketamon.storage.emergency)."""
        writer = self.writer
        assert writer is not None
        u, emergency = start_emergency(
            writer.engine,
            username,
            password,
            why,
            minutes=self.site.break_glass_min,
            now=self.clock.now(),
            lockout_after=self.site.lockout_failures,
        )
        own = Actor(u.id, u.username, u.full_name, Role(u.role.value), u.credentials)
        self._own_user, self.emergency, self.emergency_ended = own, emergency, None
        self.user = replace(own, role=Role.PHYSICIAN)
        writer.user_id = u.id
        return self.user

    def change_password(self, old: str, new: str) -> None:
        """The signed-in user's own password (the current one first; the site's rules)."""
        writer, user = self.writer, self.current_user()
        assert writer is not None
        change_own_password(
            writer.engine,
            user.username,
            old,
            new,
            min_length=self.site.password_min_length,
            lockout_after=self.site.lockout_failures,
        )

    def emergency_active_for(self, user_id: int) -> bool:
        em = self.emergency
        return em is not None and em.user_id == user_id and self.clock.now() < em.expires_at

    def current_user(self) -> Actor:
        if self.locked:  # every entry needs a sign-in again (acknowledging has its own path)
            raise Refused(["The screen is locked: sign in to enter anything"])
        if self.user is None:
            raise AuthError("nobody is signed in")
        em = self.emergency
        if em is not None and not self.emergency_active_for(em.user_id):
            self.user, self.emergency, self.emergency_ended = self._own_user, None, em
            assert self.user is not None
        return self.user

    # ---- the lock, sign-out and switch user (issue 13; ketamon.ui.lock) ----------------------
    def lock(self) -> None:
        """Lock the screen: the chairs run on; entering anything needs a sign-in again."""
        self.locked = True

    def sign_out(self) -> None:
        """Nobody signed in (the screen locked): the chairs run on, alarms sound."""
        self.user = self.emergency = self._own_user = None
        self.locked = True

    def unlock(self, username: str, password: str, why: str | None = None) -> Actor:
        """Sign in at the locked screen (the same user or another; ``why``: break-glass)."""
        if why is None:
            user = self.sign_in(username, password)
        else:
            user = self.sign_in_emergency(username, password, why)
        self.locked = False
        return user

    def user_line(self) -> str:
        """The window's "Signed in: ..." line, as of now (break-glass and its end included)."""
        if self.user is None:
            return "Nobody signed in (screen locked)"
        em = self.emergency
        try:
            user = self.current_user() if not self.locked else self.user
        except (AuthError, Refused):
            user = self.user
        if self.emergency is not None and em is not None:
            until = em.expires_at.astimezone().strftime("%H:%M")
            line = f"EMERGENCY ACCESS until {until}: {user.full_name} (physician rights)"
        else:
            line = f"Signed in: {user.full_name} ({user.role.value})"
            ended = self.emergency_ended
            if ended is not None and ended.user_id == user.id:
                line += " · emergency access ended"
        return ("Locked · " if self.locked else "") + line

    def prepare_demo(self) -> None:
        assert self.writer is not None
        ensure_demo_users(self.writer.engine)
        self.sign_in(*DEMO_NURSE)
        writer = self.writer
        for p in DEMO_PATIENTS:

            def create(s: Session, p: PatientInfo = p) -> None:
                rems = RemsEnrolment.of(p.rems_enrolled)
                records.get_or_create_patient(
                    s,
                    p.mrn,
                    p.first_name,
                    p.last_name,
                    weight_kg=p.weight_kg,
                    rems_enrolment=rems,
                )

            writer.call(create)

    # ---- chairs ------------------------------------------------------------------------------
    def monitor_spec(self, chair: ChairConfig) -> MonitorSpec:
        """How to reach a chair's monitor; built into a transport in the chair's own thread."""
        clock = self.clock

        def make() -> tuple[Transport, DeviceProtocol]:
            m = build_monitor(chair, clock)
            if isinstance(m.protocol, SimulatorProtocol):
                m.protocol.follow_dose = True  # the simulated patient responds to logged doses
                m.protocol.pleth_hz = 125.0
            return m.transport, m.protocol

        if chair.protocol == "simulator":
            desc = f"simulator ({chair.scenario})"
        elif chair.listen is not None:
            desc = f"{chair.protocol} listening on {chair.listen[0]}:{chair.listen[1]}"
        elif chair.tcp is not None:
            desc = f"{chair.protocol} from {chair.tcp[0]}:{chair.tcp[1]}"
        else:
            desc = f"{chair.protocol} on {chair.port}"
        return MonitorSpec(make=make, description=desc)

    def _submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        writer = self.writer
        if writer is not None:
            writer.submit_readings(session_id, readings)

    def _load_readings(self, session_id: int) -> list[Reading]:
        assert self.writer is not None
        return session_readings(self.writer.engine, session_id)

    def _record_durably(
        self, session_id: int, execute: Callable[[], object], cmd: object, at: datetime
    ) -> None:
        """A chair's flag or link event (the command thread): retried in order while the
        database cannot take it, and past the stop's deadline put in the spool, to be stored
        at the next start; never dropped without a count (issue 11)."""
        writer = self.writer
        spool = None if writer is None else writer.spool
        if spool is None:
            execute()
            return
        retrier = self._retriers.get(session_id)
        if retrier is None:
            retrier = self._retriers[session_id] = EntryRetrier(spool, session_id)
            retrier.deadline = self._stop_deadline
        retrier.run(execute, cmd, at)

    def storage_problem(self) -> str | None:
        """Why readings are held instead of saved right now (None: all is well)."""
        writer = self.writer
        return None if writer is None else writer.failing

    def add_chair(self, chair: ChairConfig) -> ChairPresenter:
        assert self.repository is not None and self.runner is not None
        acq = ChairAcquisition(
            chair.name, self.monitor_spec(chair), self.profile, clock=self.clock
        )
        acq.alarms.latch_high = self.site.latch_high
        acq.pipeline.sources = SourceSelector(self.site.primary_sources)
        acq.pipeline.link_low_after_s = self.site.link_lost_low_s
        acq.pipeline.link_medium_after_s = self.site.link_lost_medium_s
        model = ChairPresenter(
            acq,
            self.repository,
            StationAuth(self),
            self.runner,
            self.current_user,
            settings=CoreSettings(
                min_observation_min=self.site.min_observation_min,
                min_observation_by_treatment=self.site.min_observation_by_treatment(),
                site={"name": self.site.name, **self.site.settings()},
            ),
            prompt_config=self.site.prompt_config(),
            nibp_interval_min=self.site.vitals_interval_min,
            monitor_factory=self.monitor_spec,
            submit_readings=self._submit_readings,
            load_readings=self._load_readings,
            storage_problem=self.storage_problem,
            record_durably=self._record_durably,
        )
        model.core.courses = CourseCore(  # the patient's course: its screening gates dosing
            SqlCourseRepository(self.repository.engine, self.repository.writer),
            StationAuth(self),
            self.clock.now,
            rescreen_days=self.site.rescreen_days,
            screening_required=self.site.screening_required,
        )
        self.chairs.append(acq)
        self.models.append(model)
        self._record_pleth(acq, model)
        return model

    def _record_pleth(self, acq: ChairAcquisition, model: ChairPresenter) -> None:
        """Store the chair's pleth with its running session (for review), through the writer."""
        writer = self.writer
        if writer is None:
            return
        recorder = WaveformRecorder(writer.submit, source=acq.name)
        self.wave_recorders.append(recorder)

        def store(waves: list[Waveform]) -> None:  # the chair's thread
            state = model.state
            recorder.add(None if state is None else state.session_id, waves)

        acq.pipeline.on_waveforms = store

    def open_sessions(self) -> list[tuple[int, str]]:
        """Sessions left open at this station's chairs (asked once, at start-up)."""
        assert self.repository is not None
        names = {m.name for m in self.models}
        self._open_refs = self.repository.open_sessions()
        return [
            (
                o.session_id,
                f"{o.chair}: {o.patient}, started "
                f"{o.started.astimezone().strftime('%Y-%m-%d %H:%M')}",
            )
            for o in self._open_refs
            if o.chair in names
        ]

    def resume(self, session_ids: Sequence[int]) -> list[Pending[SessionState]]:
        """Carry on with open sessions at their chairs; each resolves once its chair shows it."""
        assert self.repository is not None and self.writer is not None
        writer = self.writer
        wanted = set(session_ids)
        out: list[Pending[SessionState]] = []
        refs = self._open_refs if self._open_refs is not None else self.repository.open_sessions()
        for o in refs:
            if o.session_id not in wanted:
                continue
            for m in self.models:
                if m.name == o.chair and m.state is None:

                    def note(sid: int = o.session_id) -> None:
                        writer.call(lambda s: records.resume_session(s, sid))

                    out.append(m.resume(o.session_id, first=note))
                    break
        return out

    # ---- the review desk ---------------------------------------------------------------------
    def site_settings(self) -> dict[str, Any]:
        return {"name": self.site.name, **self.site.settings()}

    def review_presenter(self) -> ReviewPresenter:
        """The review desk: finished sessions, signatures, addenda and the REMS form."""
        assert self.repository is not None and self.runner is not None
        assert self.writer is not None
        engine, site = self.writer.engine, self.site_settings()
        desk = SessionDesk(
            self.repository,
            StationAuth(self),
            self.clock.now,
            site=site,
            load_readings=lambda sid: session_series(engine, sid).valid_tuples(BP),
        )

        def rows() -> list[dict[str, Any]]:
            now = self.clock.now()
            return [
                {
                    "session_id": r.id,
                    "chair": r.chair,
                    "patient": r.patient,
                    "treatment": r.treatment,
                    "started": r.started,
                    "status": r.status,
                    "pmf": deadline(r.state, now, site).status if r.state is not None else "",
                }
                for r in list_sessions(engine)
            ]

        def form(
            reviewed: Reviewed, readings: list[tuple[str, float, datetime]]
        ) -> tuple[Any, Any]:
            if not pmf_required(reviewed.state, site):
                return None, None
            found = previous_session(engine, reviewed.state.session_id)
            previous = None if found is None else Reviewed(*found)
            built = build_form(reviewed, site, previous, readings=readings)
            return built, deadline(reviewed.state, self.clock.now(), site)

        def print_form(view: ReviewView, path: str) -> None:
            write_pmf_pdf(view.form, path, deadline=view.deadline)

        return ReviewPresenter(
            desk,
            self.runner,
            self.current_user,
            list_sessions=rows,
            load_series=lambda sid: session_series(engine, sid),
            load_pleth=lambda sid: session_waveform(engine, sid),
            form=form,
            print_form=print_form,
            open_emergencies=lambda: emergencies(engine, open_only=True),
            export=self._export_session,
        )

    def _export_session(
        self, session_id: int, fmt: str, path: str, page_size: str, actor: Actor
    ) -> ExportResult:
        """The review desk's export (the command thread): written, then audited as ``actor``."""
        assert self.repository is not None and self.writer is not None
        engine = self.writer.engine
        entries = self.repository.load(session_id)
        if not entries:
            raise Refused([f"There is no session {session_id}"])
        try:
            result = export_session(
                entries,
                session_readings(engine, session_id),
                fmt,
                path,
                site_name=self.site.name,
                exported_by=actor.full_name,
                page_size=page_size,
            )
        except (ExportError, ExportRefused) as exc:
            raise Refused([str(exc)]) from None
        record_export(
            engine,
            user_id=actor.id,
            session_id=session_id,
            fmt=fmt,
            paths=[str(p) for p in result.paths],
            size=result.bytes,
            sha256=result.sha256,
            who=f"review desk at {socket.gethostname()}",
        )
        return result

    def start(self) -> None:
        for c in self.chairs:
            c.start()
        writer = self.writer
        if writer is not None and writer.engine.dialect.name == "postgresql" and self.models:
            # a clinic database: show this station's chairs on the central view
            name = f"{socket.gethostname()} (app)"
            try:
                self.presence = ClinicPresence(writer.engine, name, self.models).start()
            except registry.ClinicError as exc:
                log.error("clinic: %s", exc)  # a chair run elsewhere: this station still runs

    def unsaved(self) -> int:
        """Readings not yet committed or spooled (what a forced stop would lose)."""
        writer = self.writer
        return 0 if writer is None else writer.unsaved()

    def shutdown(self) -> None:
        # flag and link events still failing 2 s from now go to the spool, not on retrying
        self._stop_deadline = time.monotonic() + 2.0
        for retrier in self._retriers.values():
            retrier.deadline = self._stop_deadline
        if self.central_feed is not None:
            self.central_feed.stop()
            self.central_feed = None
        if self.presence is not None:
            self.presence.stop()
            self.presence = None
        for c in self.chairs:
            c.stop()
        for r in self.wave_recorders:
            r.flush()  # the last seconds of pleth, before the writer stops
        if self.hl7_out is not None:
            self.hl7_out.stop()
            self.hl7_out = None
        if self.runner is not None:
            try:
                self.runner.wait_idle(10.0)
            except TimeoutError:
                log.error("commands still running at shutdown")
            self.runner.stop()
            self.runner = None
        spooled = sum(e.spooled for e in self._retriers.values())
        lost = sum(e.lost for e in self._retriers.values())
        if spooled or lost:
            log.warning("flag and link events: %d put in the spool, %d lost", spooled, lost)
        if self.writer is not None:
            self.writer.stop()
            self.writer.engine.dispose()
            self.writer = None


def build_window(station: Station, title: str) -> MainWindow:
    sounder = AlarmSounder()
    window = MainWindow(title, "")
    sounder.setParent(window)
    window.sounder = sounder
    window.set_user_line(station.user_line(), station.emergency is not None)
    window.setStyleSheet(theme.stylesheet())
    window.set_chairs(
        [
            ChairViewWidget(m, sound=sounder.play, audio_pause_s=station.site.audio_pause_s)
            for m in station.models
        ]
    )
    review = station.review_presenter()
    meanings = [(m.id, m.text) for m in load_meanings().for_use("sign")]
    window.add_review(ReviewWidget(review, station.profile, meanings))
    site = station.site
    access = window.set_access(
        AccessHooks(
            user_line=station.user_line,
            emergency=lambda: station.emergency is not None,
            lock=station.lock,
            sign_out=station.sign_out,
            unlock=station.unlock,
            change_password=station.change_password,
            idle_lock_min=site.idle_lock_min,
            mask_names=site.mask_names_when_locked,
            break_glass_min=site.break_glass_min,
        )
    )

    def user_changed() -> None:  # another user (or the same) signed in at the lock
        add_clinic_tab(station, window)
        add_admin_tab(station, window)
        if window.review is not None:
            window.review.refresh()  # the desk's buttons follow the role

    access.sig_user_changed.connect(user_changed)
    add_clinic_tab(station, window)
    add_admin_tab(station, window)
    return window


def add_admin_tab(station: Station, window: MainWindow) -> AdminWidget | None:
    """An admin's window gets the Admin tab (users, site and threshold profiles); anyone
    else's loses it (issue 13)."""
    user, writer, runner = station.user, station.writer, station.runner
    if user is None or user.role is not Role.ADMIN or writer is None or runner is None:
        window.set_role_tab("admin", None)
        return None
    old = window.role_tabs.get("admin")
    if isinstance(old, AdminWidget):
        old.refresh()
        return old
    config = station.config_file or (station.data_dir or Path(".")) / "config.toml"
    store = AdminStore(
        writer.engine,
        profile_file("site", station.site_file, config),
        profile_file("thresholds", station.thresholds_file, config),
    )
    model = AdminPresenter(
        runner,
        station.current_user,
        store,
        password_min_length=lambda: station.site.password_min_length,
    )

    def site_saved(site: SiteProfile) -> None:  # the idle lock follows at once
        station.site = site
        if window.access is not None:
            window.access.hooks.idle_lock_min = site.idle_lock_min
            window.access.hooks.mask_names = site.mask_names_when_locked

    model.sig_site_saved.connect(site_saved)
    widget = AdminWidget(model)
    window.set_role_tab("admin", widget, "Admin")
    window.tabs.setCurrentWidget(widget)
    widget.refresh()
    return widget


def add_clinic_tab(station: Station, window: MainWindow) -> CentralWidget | None:
    """On a clinic's PostgreSQL, a physician's window also shows every chair of every station
    (the central view, read-only), in a tab after the review desk; it goes with the physician
    (sign-out, switch user)."""
    writer, user = station.writer, station.user
    physician = user is not None and user.role is Role.PHYSICIAN
    if writer is None or writer.engine.dialect.name != "postgresql" or not physician:
        window.set_role_tab("clinic", None)
        if station.central_feed is not None:
            station.central_feed.stop()
            station.central_feed = None
        return None
    old = window.role_tabs.get("clinic")
    if isinstance(old, CentralWidget):
        return old
    if station.central_feed is None:
        station.central_feed = CentralFeed(station.database_url).start()
    central = CentralWidget(station.central_feed, station.profile)
    window.set_role_tab("clinic", central, "Clinic")
    return central  # its timers run only while it is shown; its charts are its children


def prepare_demo_course(database_url: str, profile: ThresholdProfile, today: date) -> bool:
    """``ketamon demo --course``: record the DEMO patient's 12-session esketamine course (8
    induction, 4 maintenance, ending about a week ago) in the demo database, through the real
    cores, once. Start a session for "Jordan Course" and open Course (F12) → Course view to see
    it. Returns False when the course is already there."""
    from ketamon.core.demo_course import DEMO_PATIENT, build_demo_course
    from ketamon.storage.users import list_users

    engine = open_database(database_url)
    try:
        ensure_demo_users(engine)
        with Session(engine) as s:
            if s.scalar(select(Patient.id).where(Patient.mrn == DEMO_PATIENT.mrn)) is not None:
                return False
        people = {u.username: u for u in list_users(engine)}

        class Passwords:
            def verify(self, username: str, password: str) -> Actor:
                try:
                    u = authenticate(engine, username, password)
                except AuthError as exc:
                    raise AuthFailed(str(exc)) from exc
                return Actor(u.id, u.username, u.full_name, Role(u.role.value), u.credentials)

        def actor(name: str) -> Actor:
            u = people[name]
            return Actor(u.id, u.username, u.full_name, Role(u.role.value), u.credentials)

        build_demo_course(
            SqlSessionRepository(engine),
            SqlCourseRepository(engine),
            Passwords(),
            profile,
            nurse=actor(DEMO_NURSE[0]),
            nurse_password=DEMO_NURSE[1],
            physician=actor("doctor"),
            start=today - timedelta(days=63),
        )
        return True
    finally:
        engine.dispose()


def make_station(
    paths: AppPaths,
    config: Config,
    profile: ThresholdProfile,
    database_url: str,
    *,
    demo: bool,
    clock: Clock | None = None,
    site: SiteProfile | None = None,
) -> Station:
    station = Station(
        database_url=database_url,
        profile=profile,
        clock=clock or SystemClock(),
        backup_dir=paths.backups_dir,
        site=site or load_site_profile(config.site_file or None),
        data_dir=paths.data_dir,
        config_file=paths.config_file,
        site_file=config.site_file,
        thresholds_file=config.thresholds_file,
    )
    station.open()
    if config.hl7_out and station.writer is not None:  # results out to the interface engine
        station.hl7_out = start_hl7_out(
            station.writer.engine, config.hl7_out, str(paths.config_file)
        )
    if demo:
        station.prepare_demo()
    for chair in DEMO_CHAIRS if demo else config.chairs:
        station.add_chair(chair)
    return station


def run_gui(
    paths: AppPaths,
    config: Config,
    profile: ThresholdProfile,
    database_url: str,
    *,
    demo: bool,
    clock: Clock | None = None,
    site: SiteProfile | None = None,
) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("ketamon")
    app.setStyleSheet(theme.stylesheet())
    signals = QtSignalStop(app)
    try:
        return _run(app, signals, paths, config, profile, database_url, demo, clock, site)
    finally:
        signals.close()


class QtSignalStop:
    """Ctrl+C and SIGTERM in the Qt app.

    Python runs a signal handler only when the interpreter gets control, which Qt's event loop
    never gives it: a short timer does (every 200 ms). The handler ends every event loop
    (dialogs too) with ``QCoreApplication.exit``; the normal close path then runs, and
    ``Station.shutdown`` flushes the writer (readings and entries) before the process ends.
    Open sessions are left open, to be resumed. A second signal forces the stop at once and says
    how many readings were not saved.
    """

    def __init__(self, app: QApplication) -> None:
        self.app = app
        self.signum: int | None = None
        self.unsaved: Callable[[], int] = lambda: 0
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self._previous:
            signal.signal(sig, self._handle)
        self._timer = QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(lambda: None)  # lets Python run its signal handlers
        self._timer.start()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            log.warning("%s: closing (open sessions stay open)", signal.Signals(signum).name)
            self.app.exit(0)  # every running event loop, dialogs included
            QTimer.singleShot(0, lambda: self.app.exit(0))  # and one about to start
            return
        try:
            n = str(int(self.unsaved()))
        except Exception:
            n = "an unknown number of"
        os.write(2, f"ketamon: forced stop: {n} readings were not saved\n".encode())
        os._exit(128 + signum)

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    def close(self) -> None:
        self._timer.stop()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ask_database_passphrase(db: str, new: bool) -> str | None:
    """The database passphrase typed at station start (key_source = "passphrase" with no
    KETAMON_DB_PASSPHRASE and no passphrase_file); twice for a new database."""
    from PySide6.QtWidgets import QInputDialog, QLineEdit

    from ketamon.storage.crypto import MIN_PASSPHRASE, DatabaseKeyError

    title = "ketamon: database passphrase"
    if new:
        label = (
            f"A new passphrase for the database {db} (at least {MIN_PASSPHRASE} characters). "
            "Record it where the clinic keeps its secrets: without it the data cannot be opened."
        )
    else:
        label = f"The passphrase of the database {db}:"
    text, ok = QInputDialog.getText(None, title, label, QLineEdit.EchoMode.Password)
    if not ok or not text:
        return None
    if new:
        again, ok = QInputDialog.getText(
            None, title, "The same passphrase again:", QLineEdit.EchoMode.Password
        )
        if not ok:
            return None
        if again != text:
            raise DatabaseKeyError("the two passphrases differ; nothing was changed")
    return str(text)


def _run(
    app: QApplication,
    signals: QtSignalStop,
    paths: AppPaths,
    config: Config,
    profile: ThresholdProfile,
    database_url: str,
    demo: bool,
    clock: Clock | None,
    site: SiteProfile | None,
) -> int:
    from ketamon.storage import crypto

    crypto.set_passphrase_prompt(ask_database_passphrase)
    try:
        station = make_station(
            paths, config, profile, database_url, demo=demo, clock=clock, site=site
        )
    except crypto.DatabaseKeyError as exc:  # said in the window too; the caller exits 2
        QMessageBox.critical(None, "ketamon: the database does not open", str(exc))
        raise
    finally:
        crypto.set_passphrase_prompt(None)
    signals.unsaved = station.unsaved
    if station.user is None:
        dialog: LoginDialog[Actor] = LoginDialog(
            station.sign_in,
            hint="Accounts are managed with 'ketamon user add'.",
            emergency=station.sign_in_emergency,
            emergency_minutes=station.site.break_glass_min,
        )
        accepted = dialog.exec() == LoginDialog.DialogCode.Accepted
        if signals.stopping or not accepted:
            station.shutdown()
            return 0 if signals.stopping else 1
    title = "ketamon — DEMO (simulated monitors, demo database)" if demo else "ketamon"
    window = build_window(station, title)
    if not station.models and not signals.stopping:
        QMessageBox.information(
            window,
            "No chairs configured",
            f"No monitors are configured. Add [[chair]] tables to {paths.config_file}, "
            "or run 'ketamon demo' to try the app with simulated monitors.",
        )
    open_sessions = station.open_sessions() if not signals.stopping else []
    if open_sessions:
        resume = ResumeSessionsDialog(open_sessions, window)
        if resume.exec() == ResumeSessionsDialog.DialogCode.Accepted and not signals.stopping:
            station.resume(resume.selected())
    app.aboutToQuit.connect(window.stop)
    app.aboutToQuit.connect(station.shutdown)
    if signals.stopping:
        window.stop()
        station.shutdown()
        return 0
    station.start()
    window.show()
    return int(app.exec())
