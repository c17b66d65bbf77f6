"""The demo path for real: simulator threads → buffers and writer → chart on a timer."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devices.clock import ScaledClock
from ketamon.app import build_window, make_station
from ketamon.config import Config
from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.session_rules import Treatment
from ketamon.paths import resolve_paths
from ketamon.services import load_profile
from ketamon.storage.database import make_engine
from ketamon.storage.models import SessionEntryRow, VitalReading


def test_demo_window_streams_to_chart_and_database_and_leaves_nothing_running(qtbot) -> None:  # type: ignore[no-untyped-def]
    paths = resolve_paths(demo=True).ensure()  # a fresh folder per test (tests/conftest.py)
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
        assert view.numerics.tiles["hr"].value.text() != "--"
        # Readings are stored once a session runs at the chair.
        started = view.model.start_session(
            PatientInfo(None, "DEMO-0001", "Alex", "Demo"), Plan(Treatment.OTHER), confirmed=True
        ).wait()
        assert started.ok, started.reasons
        sid = view.model.state.session_id
        engine = make_engine(paths.sqlite_url())

        def count() -> int:
            with Session(engine) as s:
                return int(
                    s.scalar(
                        select(func.count())
                        .select_from(VitalReading)
                        .where(VitalReading.session_id == sid)
                    )
                    or 0
                )

        qtbot.waitUntil(lambda: count() > 10, timeout=10000)
        with Session(engine) as s:
            assert s.scalar(
                select(func.count())
                .select_from(SessionEntryRow)
                .where(SessionEntryRow.session_id == sid)
            )
        engine.dispose()
    finally:
        window.close()
        station.shutdown()
    assert all(not c.running for c in station.chairs)
    assert station.writer is None and station.runner is None
    assert paths.data_dir.name == "demo"


def test_flagged_readings_are_marked_on_the_chart(qtbot, db_paths) -> None:  # type: ignore[no-untyped-def]
    """Chair 2 runs the desaturation scenario; at 900x the SpO2 dip arrives in seconds once a
    dose is logged (the simulated patient follows the logged dose)."""
    config = Config()
    station = make_station(
        db_paths,
        config,
        load_profile(config),
        db_paths.sqlite_url(),
        demo=True,
        clock=ScaledClock(900.0),
    )
    window = build_window(station, "demo")
    qtbot.addWidget(window)
    station.start()
    window.show()
    view = window.chair_views[1]
    model = view.model
    window.tabs.setCurrentWidget(view)
    try:
        patient = PatientInfo(None, "DEMO-0002", "Sam", "Sample")
        assert model.start_session(patient, Plan(Treatment.OTHER), confirmed=True).wait().ok
        p = model.record_screening(
            bp=(122, 78),
            hr=70,
            bp_source="manual",
            fasting=True,
            escort=True,
            rems_enrolled=None,
            medicines={},
        ).wait()
        assert p.ok, p.reasons
        p = model.log_other_treatment("Ketamine 35 mg IM").wait()
        assert p.ok, p.reasons
        assert model.state is not None and model.state.first_dose is not None
        qtbot.waitUntil(lambda: view.chart.flagged_point_count("spo2") > 0, timeout=20000)
        qtbot.waitUntil(lambda: any("SpO" in t for t in view.alarm_panel.texts()), timeout=5000)
        # the tile shows the flagged reading's priority (drawn as of the reading's own time:
        # at 900x every reading is past the blanking limit within milliseconds)
        spo2, prio = model.monitor_latest()["spo2"]
        assert prio in (2, 3)  # below 90 (medium), or below 80 (high)
        view.numerics.update_values(
            model.monitor_latest(), {}, spo2.host_time, *model.numeric_ages()
        )
        assert ("MEDIUM" if prio == 2 else "HIGH") in view.numerics.tiles["spo2"].flag.text()
        # the flag is recorded with the session (by the command thread)
        qtbot.waitUntil(
            lambda: "spo2_low" in (model.state.alarms if model.state else {}), timeout=5000
        )
    finally:
        window.close()
        station.shutdown()
