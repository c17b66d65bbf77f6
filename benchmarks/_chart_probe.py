"""Frame cost of the trend chart with a long session in its buffers (offscreen): a frame when
a second of new data arrives (what the live chart does), then a forced full repaint."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(hours: float) -> None:
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    from devices.readings import make_reading
    from devices.scenarios import get_scenario
    from ketamon.acquisition.buffers import TrendBuffers
    from ketamon.domain.session_clock import SessionClock
    from ketamon.domain.thresholds import parse_profile
    from ketamon.resources import read_text
    from ketamon.ui.chart import TrendChartWidget

    app = QApplication([])
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    sc = get_scenario("bp_rise")
    buffers = TrendBuffers()
    n = int(hours * 3600)
    for s in range(n):
        v = sc.vitals(s)
        when = t0 + timedelta(seconds=s)
        buffers.extend(
            [
                make_reading("hr", v.hr, when),
                make_reading("spo2", v.spo2, when),
                make_reading("rr", v.rr, when),
            ],
            [0, 0, 0],
        )
    for i in range(sc.cuff_index_at(n) + 1):
        c = sc.cuff(i)
        when = t0 + timedelta(seconds=c.t_s)
        buffers.extend(
            [
                make_reading(p, val, when)
                for p, val in (("nibp_sys", c.sys), ("nibp_dia", c.dia), ("nibp_mean", c.mean))
            ],
            [2 if c.sys > 160 else 0] * 3,
        )
    now = [t0 + timedelta(seconds=n)]
    clock = SessionClock(t0, t0 + timedelta(seconds=sc.dose_at_s))
    chart = TrendChartWidget(
        buffers, parse_profile(read_text("thresholds.toml")), lambda: clock, lambda: now[0]
    )
    chart.resize(1000, 650)
    chart.show()
    app.processEvents()
    chart.redraw(force=True)
    app.processEvents()
    paints = [0]

    class _CountPaints(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                paints[0] += 1
            return False

    counter = _CountPaints()
    chart.viewport().installEventFilter(counter)
    # What the live chart does: a second of new readings arrives, the 10 Hz timer redraws
    # (only because the buffers changed) and Qt paints the regions that changed (the
    # GraphicsView's minimal viewport update), not the whole viewport.
    frames = 60
    spent = 0.0
    for f in range(frames):
        s = n + f
        v = sc.vitals(s)
        when = t0 + timedelta(seconds=s)
        buffers.extend(
            [
                make_reading("hr", v.hr, when),
                make_reading("spo2", v.spo2, when),
                make_reading("rr", v.rr, when),
            ],
            [0, 0, 0],
        )
        now[0] = when
        start = time.perf_counter()
        chart.redraw()  # what the 10 Hz timer does; Qt then paints what changed
        app.processEvents()
        spent += time.perf_counter() - start
    if paints[0] < frames:  # the figure must include the painting of the new data
        raise SystemExit(f"chart probe: only {paints[0]} paints for {frames} frames")
    print(f"chart_frame_new_data_{hours:g}h: {spent / frames * 1000:.2f} ms/frame")
    frames = 20
    start = time.perf_counter()
    for _ in range(frames):
        chart.redraw(force=True)
        chart.viewport().repaint()
        app.processEvents()
    ms = (time.perf_counter() - start) / frames * 1000
    print(f"chart_redraw_forced_{hours:g}h: {ms:.2f} ms/frame")
    chart.close()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 8.0)
