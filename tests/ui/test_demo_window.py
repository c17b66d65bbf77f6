"""The demo path for real: simulator threads → buffers and writer → chart on a timer."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devices.clock import ScaledClock
from ketamon.app import build_window, make_station
from ketamon.config import Config
from ketamon.paths import resolve_paths
from ketamon.services import load_profile
from ketamon.storage.database import make_engine
from ketamon.storage.models import DeviceLinkEvent, VitalReading


def test_demo_window_streams_to_chart_and_database_and_leaves_nothing_running(qtbot) -> None:  # type: ignore[no-untyped-def]
    paths = resolve_paths(demo=True).ensure()
    config = Config()
    station = make_station(
        paths,
        config,
        load_profile(config),
        paths.sqlite_url(),
        demo=True,
        clock=ScaledClock(60.0),
    )
    window = build_window(station, "ketamon — DEMO")
    qtbot.addWidget(window)
    station.start()
    window.show()
    qtbot.waitExposed(window)
    view = window.chair_views[0]
    window.tabs.setCurrentWidget(view)  # charts in background tabs are not drawn
    try:

        def points(key: str) -> int:
            x = view.chart.curves[key].getData()[0]
            return 0 if x is None else len(x)

        qtbot.waitUntil(lambda: points("hr") > 5, timeout=15000)
        qtbot.waitUntil(lambda: points("nibp_sys") >= 1, timeout=15000)
        assert view.chart.redraws > 0
        qtbot.waitUntil(lambda: view.pleth.redraws > 0, timeout=5000)  # pleth strip at 125 Hz
        assert "streaming" in view.link_label.text()
        # Readings are stored once a session runs at the chair.
        from ketamon.domain.session_rules import Treatment
        from ketamon.model.types import PatientDetails, SessionPlan

        view.model.start_session(
            PatientDetails("DEMO-0001", "Alex", "Demo"), SessionPlan(Treatment.OTHER)
        )
        assert view.numerics.tiles["hr"].value.text() != "--"
        # Readings are in the database too.
        engine = make_engine(paths.sqlite_url())

        def count() -> int:
            with Session(engine) as s:
                return int(s.scalar(select(func.count()).select_from(VitalReading)) or 0)

        qtbot.waitUntil(lambda: count() > 10, timeout=10000)
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(DeviceLinkEvent))
        engine.dispose()
    finally:
        window.close()
        station.shutdown()
    assert all(not c.running for c in station.chairs)
    assert station.writer is None
    assert paths.data_dir.name == "demo"


def test_flagged_readings_are_marked_on_the_chart(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Chair 2 runs the desaturation scenario; at 600x the SpO2 dip arrives in seconds."""
    paths = resolve_paths(demo=True).ensure()
    config = Config()
    station = make_station(
        paths,
        config,
        load_profile(config),
        paths.sqlite_url(),
        demo=True,
        clock=ScaledClock(900.0),
    )
    window = build_window(station, "demo")
    qtbot.addWidget(window)
    station.start()
    window.show()
    view = window.chair_views[1]
    window.tabs.setCurrentWidget(view)
    # The simulated patient follows the logged dose; mark it given now.
    view.chair.set_first_dose(station.clock.now())
    try:
        qtbot.waitUntil(lambda: view.chart.flagged_point_count("spo2") > 0, timeout=20000)
        qtbot.waitUntil(lambda: len(view.alarm_panel.texts()) > 0, timeout=5000)
        assert any("SpO" in t for t in view.alarm_panel.texts())
        qtbot.waitUntil(lambda: "MEDIUM" in view.numerics.tiles["spo2"].flag.text(), timeout=5000)
    finally:
        window.close()
        station.shutdown()
