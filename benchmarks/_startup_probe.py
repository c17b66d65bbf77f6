"""Start-up probe: prints "ready" once the first chart has been drawn with data."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bare() -> None:
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    w = pg.PlotWidget()
    w.plot(np.arange(100.0), np.sin(np.arange(100.0)))
    w.show()

    def ready() -> None:
        w.grab()
        print("ready", flush=True)
        app.quit()

    QTimer.singleShot(0, ready)
    app.exec()


def ketamon() -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from devices.clock import ScaledClock
    from ketamon.app import build_window, make_station
    from ketamon.config import Config
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile
    from ketamon.ui import theme

    app = QApplication([])
    app.setStyleSheet(theme.stylesheet())
    paths = resolve_paths(demo=True).ensure()
    station = make_station(
        paths,
        Config(),
        load_profile(Config()),
        paths.sqlite_url(),
        demo=True,
        clock=ScaledClock(1.0),
    )
    window = build_window(station, "bench")
    station.start()
    window.show()
    view = window.chair_views[0]
    window.tabs.setCurrentWidget(view)  # the chart of a background tab is not drawn

    def check() -> None:
        x = view.chart.curves["hr"].getData()[0]
        if view.chart.redraws and x is not None and len(x):
            window.grab()
            print("ready", flush=True)
            window.close()
            station.shutdown()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(5)
    app.exec()


if __name__ == "__main__":
    {"bare": bare, "ketamon": ketamon}[sys.argv[1]]()
