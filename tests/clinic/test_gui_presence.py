"""A GUI station on the clinic's PostgreSQL shows its chairs on the central view, as a headless
station does: registered, beating, its chair's session and next item due published."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from ketamon.app import make_station
from ketamon.clinic.feed import CentralFeed
from ketamon.config import ChairConfig, Config
from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.session_rules import Treatment
from ketamon.paths import AppPaths
from ketamon.services import load_profile
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role
from ketamon.storage.users import create_user, system_user_id


def test_an_app_station_appears_on_the_central_view(qtbot, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = Config(chairs=(ChairConfig(name="Chair G1", protocol="simulator"),))
    paths = AppPaths(tmp_path / "d", tmp_path / "d").ensure()
    station = make_station(paths, config, load_profile(config), pg_url, demo=False)
    feed = CentralFeed(pg_url, poll_s=0.5)
    try:
        assert station.writer is not None
        with Session(station.writer.engine) as s, s.begin():
            nobody = system_user_id(s)
            with acting_as(s, nobody):
                create_user(
                    s, username="nina", full_name="Nina N", role=Role.NURSE, password="pw 4 nina!"
                )
        station.sign_in("nina", "pw 4 nina!")
        station.start()
        model = station.models[0]
        patient = PatientInfo(None, "G-1", "Gui", "Station", weight_kg=70, rems_enrolled=True)
        assert (
            model.start_session(patient, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True)
            .wait(30)
            .ok
        )
        feed.start()
        name = f"{socket.gethostname()} (app)"
        deadline = time.monotonic() + 15
        chair = None
        while time.monotonic() < deadline and chair is None:
            qtbot.wait(200)
            snap = feed.snapshot
            chair = next((c for c in snap.chairs if c.chair == "Chair G1"), None)
        assert chair is not None, feed.snapshot
        assert chair.station == name and chair.patient.startswith("Gui Station")
        qtbot.waitUntil(lambda: bool(feed.snapshot.chairs[0].next_due), timeout=10_000)
        assert not any(s.offline for s in feed.snapshot.stations)
    finally:
        feed.stop()
        station.shutdown()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            state = conn.execute(text("SELECT kind, state FROM station")).one()
    finally:
        engine.dispose()
    assert tuple(state) == ("gui", "stopped")


def test_a_physicians_window_has_the_clinic_tab(qtbot, pg_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ketamon.app import build_window

    config = Config(chairs=(ChairConfig(name="Chair G2", protocol="simulator"),))
    paths = AppPaths(tmp_path / "d", tmp_path / "d").ensure()
    station = make_station(paths, config, load_profile(config), pg_url, demo=False)
    try:
        assert station.writer is not None
        with Session(station.writer.engine) as s, s.begin():
            nobody = system_user_id(s)
            with acting_as(s, nobody):
                for name, role in (("nina", Role.NURSE), ("paul", Role.PHYSICIAN)):
                    create_user(s, username=name, full_name=name, role=role, password="pw 4 all!!")
        station.sign_in("nina", "pw 4 all!!")
        nurse_window = build_window(station, "t")
        qtbot.addWidget(nurse_window)
        tabs = [nurse_window.tabs.tabText(i) for i in range(nurse_window.tabs.count())]
        assert "Clinic" not in tabs
        station.sign_in("paul", "pw 4 all!!")
        window = build_window(station, "t")
        qtbot.addWidget(window)
        tabs = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        assert tabs[-1] == "Clinic" and station.central_feed is not None
        window.tabs.setCurrentIndex(len(tabs) - 1)
        window.show()
        qtbot.waitUntil(lambda: station.central_feed.snapshot.connected, timeout=10_000)  # type: ignore[union-attr]
        window.close()
        nurse_window.close()
    finally:
        station.shutdown()
