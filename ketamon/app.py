"""GUI wiring: the station (database, writer, chairs) and the main window. Nothing else."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from PySide6.QtWidgets import QApplication, QMessageBox
from sqlalchemy.orm import Session

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.supervisor import StatusEvent
from devices.transports import Transport
from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.config import ChairConfig, Config
from ketamon.domain.alarms import AlarmEvent
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.paths import AppPaths
from ketamon.services import (
    build_monitor,
    find_open_session,
    get_or_create_patient,
    open_database,
    record_alarm,
    record_link_event,
    start_session,
)
from ketamon.storage.models import TreatmentSession
from ketamon.storage.writer import DatabaseWriter
from ketamon.ui import theme
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.main_window import MainWindow

log = logging.getLogger(__name__)

DEMO_CHAIRS = (
    ChairConfig(name="Chair 1", protocol="simulator", scenario="bp_rise"),
    ChairConfig(name="Chair 2", protocol="simulator", scenario="desaturation"),
)
DEMO_PATIENTS = (("DEMO-0001", "Alex", "Demo"), ("DEMO-0002", "Sam", "Sample"))


@dataclass
class ChairRuntime:
    config: ChairConfig
    acquisition: ChairAcquisition
    session_id: int
    started: datetime
    first_dose: datetime | None = None
    patient_label: str = ""

    def session_clock(self) -> SessionClock:
        return SessionClock(self.started, self.first_dose)


@dataclass
class Station:
    """Everything one station runs: the database writer and one acquisition per chair."""

    database_url: str
    profile: ThresholdProfile
    clock: Clock = field(default_factory=SystemClock)
    chairs: list[ChairRuntime] = field(default_factory=list)
    writer: DatabaseWriter | None = None

    def open(self) -> None:
        engine = open_database(self.database_url)
        self.writer = DatabaseWriter(engine).start()

    def add_chair(
        self, chair: ChairConfig, patient: tuple[str, str, str], *, demo_dose: bool = False
    ) -> ChairRuntime:
        writer = self.writer
        assert writer is not None
        now = self.clock.now()
        mrn, first, last = patient

        def create(s: Session) -> tuple[int, datetime, datetime | None]:
            existing = find_open_session(s, chair.name)
            if existing is not None:
                return existing.id, existing.started_at, existing.first_dose_at
            p = get_or_create_patient(s, mrn, first, last)
            ts = start_session(s, chair=chair.name, patient=p, device=chair.protocol, started=now)
            return ts.id, ts.started_at, ts.first_dose_at

        session_id, started, first_dose = writer.call(create)
        if demo_dose and first_dose is None and chair.protocol == "simulator":
            # Until dosing is logged by the nurse (chair screen), the demo marks the dose at the
            # scenario's own dose time so the chart's axis runs in minutes since the dose.
            from devices.scenarios import get_scenario

            first_dose = started + timedelta(seconds=get_scenario(chair.scenario).dose_at_s)
            sid, fd = session_id, first_dose

            def set_dose(s: Session) -> None:
                ts = s.get(TreatmentSession, sid)
                if ts is not None:
                    ts.first_dose_at = fd

            writer.call(set_dose)
        clock = self.clock

        def make() -> tuple[Transport, DeviceProtocol]:
            m = build_monitor(chair, clock)
            return m.transport, m.protocol

        spec = MonitorSpec(make=make, description=chair.protocol)
        acq = ChairAcquisition(
            chair.name,
            spec,
            self.profile,
            sink=lambda readings: writer.submit_readings(session_id, readings),
            clock=self.clock,
        )
        acq.set_first_dose(first_dose)
        runtime = ChairRuntime(chair, acq, session_id, started, first_dose, f"{first} {last}")
        acq.sig_alarm_changed.connect(lambda e: self._store_alarm(runtime, e))
        acq.sig_link_changed.connect(lambda e: self._store_link(runtime, e))
        self.chairs.append(runtime)
        return runtime

    def _store_alarm(self, chair: ChairRuntime, e: AlarmEvent) -> None:
        if self.writer is not None:
            self.writer.submit(
                lambda s: record_alarm(
                    s,
                    chair.session_id,
                    key=e.key,
                    action=e.action.value,
                    priority=e.priority.label,
                    message=e.message,
                    when=e.time,
                    technical=e.technical,
                )
            )

    def _store_link(self, chair: ChairRuntime, e: StatusEvent) -> None:
        if self.writer is not None:
            self.writer.submit(
                lambda s: record_link_event(s, chair.session_id, e.state.value, e.reason, e.time)
            )

    def start(self) -> None:
        for c in self.chairs:
            c.acquisition.start()

    def shutdown(self) -> None:
        for c in self.chairs:
            c.acquisition.stop()
        if self.writer is not None:
            self.writer.stop()
            self.writer = None


def build_window(station: Station, title: str) -> MainWindow:
    window = MainWindow(title)
    for c in station.chairs:
        window.add_chair(ChairViewWidget(c.acquisition, c.session_clock, c.patient_label))
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
    station = Station(database_url=database_url, profile=profile, clock=clock or SystemClock())
    station.open()
    chairs = DEMO_CHAIRS if demo else config.chairs
    for i, chair in enumerate(chairs):
        patient = (
            DEMO_PATIENTS[i % len(DEMO_PATIENTS)]
            if demo
            else (f"UNASSIGNED-{chair.name}", "Unassigned", chair.name)
        )
        station.add_chair(chair, patient, demo_dose=demo)
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
    title = "ketamon — DEMO (simulated monitors)" if demo else "ketamon"
    window = build_window(station, title)
    if not station.chairs:
        QMessageBox.information(
            window,
            "No chairs configured",
            f"No monitors are configured. Add [[chair]] tables to {paths.config_file}, "
            "or run 'ketamon demo' to try the app with simulated monitors.",
        )
    app.aboutToQuit.connect(station.shutdown)
    station.start()
    window.show()
    return int(app.exec())
