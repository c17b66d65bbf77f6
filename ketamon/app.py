"""GUI wiring: the station (database, writer, chairs, session models) and the main window."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMessageBox
from sqlalchemy.orm import Session

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import SimulatorProtocol
from devices.transports import Transport
from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.config import ChairConfig, Config
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.model.chair_session import ChairSessionModel
from ketamon.model.types import CurrentUser, PatientDetails
from ketamon.paths import AppPaths
from ketamon.services import build_monitor, open_database
from ketamon.session_store import WriterSessionStore
from ketamon.storage import records
from ketamon.storage.models import RemsEnrolment
from ketamon.storage.users import AuthError, authenticate, ensure_demo_users
from ketamon.storage.writer import DatabaseWriter
from ketamon.ui import theme
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.login import LoginDialog, ResumeSessionsDialog
from ketamon.ui.main_window import MainWindow
from ketamon.ui.sound import AlarmSounder

log = logging.getLogger(__name__)

DEMO_CHAIRS = (
    ChairConfig(name="Chair 1", protocol="simulator", scenario="bp_rise"),
    ChairConfig(name="Chair 2", protocol="simulator", scenario="desaturation"),
)
DEMO_PATIENTS = (
    PatientDetails("DEMO-0001", "Alex", "Demo", weight_kg=78.0, rems_enrolled=True, sex="female"),
    PatientDetails("DEMO-0002", "Sam", "Sample", weight_kg=91.0, rems_enrolled=True, sex="male"),
    PatientDetails("DEMO-0003", "Robin", "Example", weight_kg=64.0, rems_enrolled=False),
)
DEMO_NURSE = ("nurse", "demo")


@dataclass
class Station:
    """Everything one station runs: the database writer and one acquisition + model per chair."""

    database_url: str
    profile: ThresholdProfile
    clock: Clock = field(default_factory=SystemClock)
    backup_dir: Path | None = None
    profile_origin: str = ""
    chairs: list[ChairAcquisition] = field(default_factory=list)
    models: list[ChairSessionModel] = field(default_factory=list)
    writer: DatabaseWriter | None = None
    store: WriterSessionStore | None = None
    user: CurrentUser | None = None

    def open(self) -> None:
        engine = open_database(self.database_url, backup_dir=self.backup_dir)
        self.writer = DatabaseWriter(engine).start()
        self.store = WriterSessionStore(self.writer, engine, self.profile, self.profile_origin)

    # ---- users -------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> CurrentUser:
        assert self.writer is not None
        u = authenticate(self.writer.engine, username, password)
        return CurrentUser(u.id, u.username, u.full_name, u.role.value)

    def sign_in(self, username: str, password: str) -> CurrentUser:
        self.user = self.authenticate(username, password)
        assert self.writer is not None
        self.writer.user_id = self.user.id
        return self.user

    def current_user(self) -> CurrentUser:
        if self.user is None:
            raise AuthError("nobody is signed in")
        return self.user

    def prepare_demo(self) -> None:
        assert self.writer is not None
        ensure_demo_users(self.writer.engine)
        self.sign_in(*DEMO_NURSE)
        writer = self.writer
        for p in DEMO_PATIENTS:

            def create(s: Session, p: PatientDetails = p) -> None:
                rems = RemsEnrolment.ENROLLED if p.rems_enrolled else RemsEnrolment.NOT_ENROLLED
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

    def add_chair(self, chair: ChairConfig) -> ChairSessionModel:
        assert self.store is not None
        acq = ChairAcquisition(
            chair.name, self.monitor_spec(chair), self.profile, clock=self.clock
        )
        model = ChairSessionModel(
            acq, self.store, self.current_user, monitor_factory=self.monitor_spec
        )
        self.chairs.append(acq)
        self.models.append(model)
        return model

    def open_sessions(self) -> list[tuple[int, str]]:
        assert self.store is not None
        names = {m.chair.name for m in self.models}
        return [
            (
                i.session_id,
                f"{i.chair}: {i.patient.label}, started "
                f"{i.started.astimezone().strftime('%Y-%m-%d %H:%M')}",
            )
            for i in self.store.open_sessions()
            if i.chair in names
        ]

    def resume(self, session_ids: Sequence[int]) -> None:
        assert self.store is not None
        wanted = set(session_ids)
        for info in self.store.open_sessions():
            if info.session_id not in wanted:
                continue
            for m in self.models:
                if m.chair.name == info.chair and m.session is None:
                    assert self.writer is not None

                    def resume(s: Session, sid: int = info.session_id) -> None:
                        records.resume_session(s, sid)

                    self.writer.call(resume)
                    m.resume(info)

    def start(self) -> None:
        for c in self.chairs:
            c.start()

    def shutdown(self) -> None:
        for c in self.chairs:
            c.stop()
        if self.writer is not None:
            self.writer.stop()
            self.writer.engine.dispose()
            self.writer = None


def build_window(station: Station, title: str) -> MainWindow:
    user = station.user
    sounder = AlarmSounder()
    signed = f"Signed in: {user.full_name} ({user.role})" if user else ""
    window = MainWindow(title, f"{signed} · {sounder.status}")
    sounder.setParent(window)
    window.sounder = sounder
    window.setStyleSheet(theme.stylesheet())
    store = station.store
    assert store is not None
    window.set_chairs(
        [
            ChairViewWidget(
                m,
                find_patients=store.find_patients,
                authenticate=station.authenticate,
                sound=sounder.play,
            )
            for m in station.models
        ]
    )
    return window


def make_station(
    paths: AppPaths,
    config: Config,
    profile: ThresholdProfile,
    database_url: str,
    *,
    demo: bool,
    clock: Clock | None = None,
) -> Station:
    station = Station(
        database_url=database_url,
        profile=profile,
        clock=clock or SystemClock(),
        backup_dir=paths.backups_dir,
    )
    station.open()
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
) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("ketamon")
    app.setStyleSheet(theme.stylesheet())
    station = make_station(paths, config, profile, database_url, demo=demo, clock=clock)
    if station.user is None:
        dialog: LoginDialog[CurrentUser] = LoginDialog(
            station.sign_in,
            hint="Accounts are managed with 'ketamon user add'.",
        )
        if dialog.exec() != LoginDialog.DialogCode.Accepted:
            station.shutdown()
            return 1
    title = "ketamon — DEMO (simulated monitors, demo database)" if demo else "ketamon"
    window = build_window(station, title)
    if not station.models:
        QMessageBox.information(
            window,
            "No chairs configured",
            f"No monitors are configured. Add [[chair]] tables to {paths.config_file}, "
            "or run 'ketamon demo' to try the app with simulated monitors.",
        )
    open_sessions = station.open_sessions()
    if open_sessions:
        resume = ResumeSessionsDialog(open_sessions, window)
        if resume.exec() == ResumeSessionsDialog.DialogCode.Accepted:
            station.resume(resume.selected())
    app.aboutToQuit.connect(window.stop)
    app.aboutToQuit.connect(station.shutdown)
    station.start()
    window.show()
    return int(app.exec())
