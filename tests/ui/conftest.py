"""The chair screen for real: a Station on its own SQLite file, its simulator monitors, the
command thread and the main window, driven by a manual clock (minutes pass in milliseconds).

Helpers click as a nurse would and wait for the command thread (``Pending.wait`` or
``qtbot.waitUntil``), never for a fixed time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QPushButton, QWidget
from sqlalchemy import Engine

from devices.clock import ManualClock
from ketamon.app import Station, build_window, make_station
from ketamon.config import Config
from ketamon.paths import AppPaths
from ketamon.presenters.chair import ChairPresenter
from ketamon.services import load_profile
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.main_window import MainWindow
from ketamon.ui.panels import Panel

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screens"
SCREEN = (1366, 768)


def make_demo_station(paths: AppPaths, clock: ManualClock) -> Station:
    """The demo station (Chair 1: bp_rise, Chair 2: desaturation; the demo nurse signed in)
    on ``paths``' own SQLite file."""
    config = Config()
    return make_station(
        paths, config, load_profile(config), paths.sqlite_url(), demo=True, clock=clock
    )


@dataclass
class Rig:
    """One running station and its window, with what a nurse does at the chair."""

    qtbot: Any
    station: Station
    window: MainWindow
    clock: ManualClock

    # ---- looking -------------------------------------------------------------------------
    def view(self, i: int) -> ChairViewWidget:
        return self.window.chair_views[i]

    def presenter(self, i: int) -> ChairPresenter:
        return self.station.models[i]

    @property
    def engine(self) -> Engine:
        assert self.station.writer is not None
        return self.station.writer.engine

    def show(self, view: ChairViewWidget) -> None:
        self.window.tabs.setCurrentWidget(view)  # charts in background tabs are not drawn

    # ---- doing ---------------------------------------------------------------------------
    def click(self, button: QPushButton | QWidget) -> None:
        self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    def open(self, view: ChairViewWidget, key: str) -> Any:
        """Press an action button; the panel shown is the one of the session now running
        (typed Any: each panel has its own fields)."""
        self.click(view.action_buttons[key])
        assert view.current_panel() == key
        return view.panels[key]

    def save(self, panel: Panel, button: QPushButton | None = None) -> str:
        """Press Save (or ``button``), wait until the entry is recorded or refused and the
        follow-up commands (flags it raised) are done; return the panel's error line."""
        before = panel.saving
        self.click(button if button is not None else panel.save_button)
        pending = panel.saving
        if pending is not None and pending is not before:
            pending.wait()
        self.settle()
        if not shiboken6.isValid(panel):
            return ""  # recorded, and the session changed: the view built new, empty panels
        return panel.error.text()

    def settle(self) -> None:
        """Let the command thread finish what it was given and the UI apply the results."""
        runner = self.station.runner
        if runner is not None:
            runner.wait_idle()
        QApplication.processEvents()

    def advance(self, minutes: float, step_s: float = 60.0) -> None:
        """Move the clock on in steps, letting the simulator thread and the UI catch up."""
        left = minutes * 60.0
        while left > 0:
            self.clock.advance(min(step_s, left))
            left -= step_s
            self.qtbot.wait(30)
        self.settle()

    def shot(self, name: str) -> Path:
        """Save what the nurse sees (out/screens/, not committed) for a person to look at."""
        QApplication.processEvents()  # let new rows lay out before the grab
        for view in self.window.chair_views:
            if view.chart.isVisible():
                view.chart.redraw()  # what its timer would draw next (it may have been hidden)
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        assert self.window.grab().save(str(path)), path
        return path


@pytest.fixture
def db_paths(tmp_path: Path) -> AppPaths:
    """A fresh folder (and so a fresh SQLite file) for this test's station."""
    return AppPaths(tmp_path / "station", tmp_path / "station").ensure()


@pytest.fixture
def open_rig(qtbot, db_paths: AppPaths) -> Iterator[Callable[..., Rig]]:  # type: ignore[no-untyped-def]
    """Build (and on teardown close and shut down) stations with their windows; more than one
    per test for a restart on the same database."""
    made: list[Rig] = []

    def build(clock: ManualClock | None = None, *, start: bool = True) -> Rig:
        clock = clock or ManualClock()
        station = make_demo_station(db_paths, clock)
        window = build_window(station, "ketamon — test")
        qtbot.addWidget(window)
        rig = Rig(qtbot, station, window, clock)
        made.append(rig)
        window.resize(*SCREEN)
        if start:
            station.start()
        window.show()
        qtbot.waitExposed(window)
        # the keyboard goes to the active window: make it so offscreen, as at the chair
        handle = window.windowHandle()
        assert handle is not None
        handle.requestActivate()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)
        return rig

    try:
        yield build
    finally:
        for rig in reversed(made):
            rig.window.close()
            rig.station.shutdown()


@pytest.fixture
def rig(open_rig: Callable[..., Rig]) -> Rig:
    return open_rig()
