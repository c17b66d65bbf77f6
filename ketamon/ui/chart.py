"""Live trend chart: stacked lanes on one time axis in minutes since the first dose.

Redraws on a timer from the chair's ring buffers (never one signal per sample), creates every
item once and updates it with ``setData`` (pyqtgraph #2665), 1-pixel pens, antialiasing off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QWidget

from ketamon.domain.session_clock import MIN_OBSERVATION_MIN, SessionClock
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.presenters.views import Series, TrendBuffers
from ketamon.ui import theme

REDRAW_HZ = 10


#: what an emptied series draws (setData with an empty array clears a curve)
_EMPTY = np.empty(0)


@dataclass(frozen=True)
class Lane:
    key: str
    title: str
    unit: str
    parameters: tuple[str, ...]
    y_range: tuple[float, float]
    stretch: int = 1


LANES = (
    Lane("bp", "NIBP", "mmHg", ("nibp_sys", "nibp_dia", "nibp_mean"), (40, 200), 2),
    Lane("hr", "HR", "/min", ("hr",), (30, 160)),
    Lane("spo2", "SpO₂", "%", ("spo2",), (75, 101)),
    Lane("rr", "RR", "/min", ("rr",), (0, 40)),
)


#: manual (typed) readings: a hollow square in their own colour, beside the monitor's marks
MANUAL_COLOUR = "#b39ddb"
#: before a session: the monitor's last this many minutes, on a clock-time axis
PRESESSION_MIN = 30.0
_LANE_OF = {"nibp_sys": "bp", "nibp_dia": "bp", "nibp_mean": "bp", "hr": "hr", "spo2": "spo2"}
_LANE_OF["rr"] = "rr"


class _ClockAxis(pg.AxisItem):  # type: ignore[misc]
    """A bottom axis that labels its ticks as clock time (HH:MM) when ``zero`` is set (x in
    minutes after that epoch second), else as plain minutes."""

    def __init__(self) -> None:
        super().__init__(orientation="bottom")
        self.zero: float | None = None

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        zero = self.zero
        if zero is None:
            return list(super().tickStrings(values, scale, spacing))
        return [
            datetime.fromtimestamp(zero + v * 60.0).astimezone().strftime("%H:%M") for v in values
        ]


def _pen(colour: str, width: int = 1, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> pg.QtGui.QPen:
    pen = pg.mkPen(colour, width=width)
    pen.setStyle(style)
    return pen


class TrendChartWidget(pg.GraphicsLayoutWidget):  # type: ignore[misc]
    """Four lanes (NIBP, HR, SpO₂, RR), x in minutes since the first dose (negative before)."""

    def __init__(
        self,
        buffers: TrendBuffers,
        profile: ThresholdProfile,
        session_clock: Callable[[], SessionClock],
        now: Callable[[], datetime],
        parent: QWidget | None = None,
        *,
        in_session: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(parent=parent)
        #: None (review) or False: minutes since the first dose; False before a session:
        #: the monitor's last 30 minutes on a clock-time axis, without session marks
        self._in_session = in_session
        self._clock_zero: float | None = None
        self._markers: list[pg.InfiniteLine] = []
        self._manual: list[tuple[datetime, str, float]] = []
        self.manual_items: dict[str, pg.ScatterPlotItem] = {}
        self.setBackground(theme.BACKGROUND)
        self.buffers = buffers
        self.profile = profile
        self._session_clock = session_clock
        self._now = now
        self._drawn_version = -1
        self._drawn_zero: float | None = None
        self._x_label = ""
        self._events: list[tuple[datetime, str]] = []
        self._event_items: list[pg.GraphicsObject] = []
        self.plots: dict[str, pg.PlotItem] = {}
        self._threshold_items: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        self.curves: dict[str, pg.PlotDataItem] = {}
        #: one scatter item per lane and priority, each with its one brush: flagged points are
        #: redrawn 10 times a second, and a brush per point made that the screen's main cost
        self.flag_items: dict[str, dict[Priority, pg.ScatterPlotItem]] = {}
        self._grids: list[pg.PlotCurveItem] = []
        self._flag_drawn: dict[tuple[str, Priority], tuple[np.ndarray, np.ndarray]] = {}
        self._x_range: tuple[float, float] | None = None
        self._first_t: float | None = None  # the oldest reading drawn (epoch s)
        self._bp_drawn: tuple[tuple[int, ...], float] | None = None
        self._bp_first: float | None = None
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REDRAW_HZ))
        self._timer.timeout.connect(self._on_timer_timeout)
        self.redraws = 0

    # ---- construction -----------------------------------------------------------------------
    def _build(self) -> None:
        first: pg.PlotItem | None = None
        for row, lane in enumerate(LANES):
            plot = self.addPlot(row=row, col=0, axisItems={"bottom": _ClockAxis()})
            self.ci.layout.setRowStretchFactor(row, lane.stretch)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            # A grid of plain lines in the view: pyqtgraph's axis grid makes every data update
            # repaint the axes (text included), about 60 ms a frame on the raster engine.
            self._add_grid(plot, lane)
            plot.setLabel("left", lane.title, units=None, **{"color": "#c9d3dc"})
            plot.getAxis("left").setWidth(62)
            plot.disableAutoRange()
            plot.setYRange(*lane.y_range, padding=0)
            plot.setMouseEnabled(x=False, y=False)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if row < len(LANES) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            else:
                plot.setLabel("bottom", "minutes since first dose")
            self.plots[lane.key] = plot
            self._add_thresholds(plot, lane)
            self._add_markers(plot)
            self.flag_items[lane.key] = {}
            for prio in Priority:
                flags = pg.ScatterPlotItem(
                    size=16,
                    symbol="x",
                    pen=None,
                    brush=pg.mkBrush(theme.PRIORITY_COLOURS[prio]),
                )
                flags.setZValue(10 + int(prio))
                plot.addItem(flags)
                self.flag_items[lane.key][prio] = flags
            manual = pg.ScatterPlotItem(
                size=13, symbol="s", pen=pg.mkPen(MANUAL_COLOUR, width=2), brush=None
            )
            manual.setZValue(20)
            plot.addItem(manual)
            self.manual_items[lane.key] = manual
        bp = self.plots["bp"]
        c = theme.PARAMETER_COLOURS
        # NIBP: systolic ▼ and diastolic ▲ joined per cuff cycle by a vertical bar, mean as a line.
        self.curves["nibp_bar"] = bp.plot(pen=_pen("#9e9e9e"), connect="pairs")
        self.curves["nibp_sys"] = bp.plot(
            pen=None, symbol="t", symbolSize=11, symbolBrush=c["nibp_sys"], symbolPen=None
        )
        self.curves["nibp_dia"] = bp.plot(
            pen=None, symbol="t1", symbolSize=11, symbolBrush=c["nibp_dia"], symbolPen=None
        )
        self.curves["nibp_mean"] = bp.plot(
            pen=_pen(c["nibp_mean"]), symbol="o", symbolSize=5, symbolBrush=c["nibp_mean"]
        )
        for key in ("hr", "spo2", "rr"):
            curve = self.plots[key].plot(pen=_pen(c[key]))
            # Hours of 1 Hz data on ~900 px: draw the min/max envelope (peaks stay visible).
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.curves[key] = curve

    def set_source(
        self,
        buffers: TrendBuffers,
        session_clock: Callable[[], SessionClock],
        now: Callable[[], datetime],
    ) -> None:
        """Draw another session's buffers (the review desk reuses one chart)."""
        self.buffers, self._session_clock, self._now = buffers, session_clock, now
        self._drawn_version = -1
        self.redraw(force=True)

    def set_profile(self, profile: ThresholdProfile) -> None:
        """Redraw the threshold lines for another profile (a per-session override)."""
        if profile is self.profile:
            return
        self.profile = profile
        for plot, line in self._threshold_items:
            plot.removeItem(line)
        self._threshold_items = []
        for lane in LANES:
            self._add_thresholds(self.plots[lane.key], lane)
        self.redraw(force=True)

    def _add_thresholds(self, plot: pg.PlotItem, lane: Lane) -> None:
        for param in lane.parameters:
            if param == "nibp_mean":
                continue
            low, high = self.profile.band(param)
            short = {"nibp_sys": "SYS ", "nibp_dia": "DIA "}.get(param, "")
            # Systolic labels at the right end, the rest at the left, so 90/90 never overlap.
            pos = 0.97 if param == "nibp_sys" else 0.03
            for value in (low, high):
                if value is None:
                    continue
                line = pg.InfiniteLine(
                    pos=value,
                    angle=0,
                    pen=_pen(theme.THRESHOLD_COLOUR, style=Qt.PenStyle.DashLine),
                    label=f"{short}{value:g}",
                    labelOpts={"position": pos, "color": theme.THRESHOLD_COLOUR},
                )
                line.setObjectName(f"threshold-{param}-{value:g}")
                plot.addItem(line, ignoreBounds=True)
                self._threshold_items.append((plot, line))

    def _add_grid(self, plot: pg.PlotItem, lane: Lane) -> None:
        """The grid as one item of line segments per lane: a hundred InfiniteLines each
        recomputed their bounds at every paint (a third of a frame)."""
        lo, hi = lane.y_range
        step = {"bp": 25, "hr": 25, "spo2": 5, "rr": 10}[lane.key]
        xs: list[float] = []
        ys: list[float] = []
        y = (int(lo) // step + 1) * step
        while y < hi:
            xs += [-24 * 60.0, 24 * 60.0]
            ys += [float(y), float(y)]
            y += step
        for x in range(-60, 8 * 60 + 1, 20):
            xs += [float(x), float(x)]
            ys += [float(lo) - 1000.0, float(hi) + 1000.0]
        grid = pg.PlotCurveItem(
            np.array(xs), np.array(ys), pen=pg.mkPen(theme.GRID_COLOUR), connect="pairs"
        )
        grid.setZValue(-20)  # beneath thresholds and data
        plot.addItem(grid, ignoreBounds=True)
        self._grids.append(grid)

    def _add_markers(self, plot: pg.PlotItem) -> None:
        dose = pg.InfiniteLine(pos=0, angle=90, pen=_pen("#7e57c2", width=1))
        two_h = pg.InfiniteLine(
            pos=MIN_OBSERVATION_MIN, angle=90, pen=_pen("#546e7a", style=Qt.PenStyle.DotLine)
        )
        plot.addItem(dose, ignoreBounds=True)
        plot.addItem(two_h, ignoreBounds=True)
        self._markers += [dose, two_h]

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    # ---- drawing ----------------------------------------------------------------------------
    def _on_timer_timeout(self) -> None:
        # A chair in a background tab is not drawn; it catches up when shown.
        if self.isVisible():
            self.redraw()

    def clock_mode(self) -> bool:
        """No session at this chair: the monitor's recent readings on clock time."""
        return self._in_session is not None and not self._in_session()

    def _zero(self) -> float:
        if not self.clock_mode():
            if self._clock_zero is not None:
                self._set_clock_axis(None)
            return self._session_clock().zero.timestamp()
        now = self._now().timestamp()
        zero = self._clock_zero
        if zero is None or not 0 <= now - zero < 6 * 3600:
            zero = now - now % 3600  # the hour: the grid's 20-min lines fall on :00 :20 :40
            self._set_clock_axis(zero)
        return zero

    def _set_clock_axis(self, zero: float | None) -> None:
        self._clock_zero = zero
        for plot in self.plots.values():
            axis = plot.getAxis("bottom")
            assert isinstance(axis, _ClockAxis)
            axis.zero = zero
            axis.picture = None  # its tick texts change
            axis.update()
        for m in self._markers:
            m.setVisible(zero is None)
        for item in self._event_items:
            item.setVisible(zero is None)

    def redraw(self, force: bool = False) -> None:
        zero = self._zero()
        now_min = (self._now().timestamp() - zero) / 60.0
        clock = self._clock_zero is not None
        if clock:
            label = "clock time · the monitor's last 30 min (no session)"
        elif self._session_clock().first_dose is None:
            label = "minutes since session start (no dose logged yet)"
        else:
            label = "minutes since first dose"
        if label != self._x_label:
            self._x_label = label
            self.plots["rr"].setLabel("bottom", label)
        version = self.buffers.version
        if not force and version == self._drawn_version and zero == self._drawn_zero:
            self._update_x_range(now_min, zero, clock)
            return
        zero_moved = zero != self._drawn_zero
        self._drawn_version, self._drawn_zero = version, zero
        firsts: list[float] = []
        for key in ("hr", "spo2", "rr"):
            s = self.buffers.series(key)
            if s is None:  # nothing (any more): a new session must not show the last one's
                self.curves[key].setData(_EMPTY, _EMPTY)
                self._set_flag_points(key, _EMPTY, _EMPTY, _EMPTY, zero)
                continue
            if key == "hr" and len(s.t):
                firsts.append(float(s.t[0]))
            self.curves[key].setData(self._minutes(s.t, zero), s.v)
            self._set_flags(key, s, zero)
        # cuff readings come every few minutes: the NIBP lane is redrawn only when they do
        bp_key = (
            tuple(self.buffers.count(p) for p in ("nibp_sys", "nibp_dia", "nibp_mean")),
            zero,
        )
        if force or zero_moved or bp_key != self._bp_drawn:
            self._bp_drawn = bp_key
            self._bp_first = self._draw_bp(zero)
        if self._bp_first is not None:
            firsts.append(self._bp_first)
        self._first_t = min(firsts) if firsts else None
        self._update_x_range(now_min, zero, clock)
        if zero_moved or force:
            self._draw_manual(zero)
        self.redraws += 1

    def _update_x_range(self, now_min: float, zero: float, clock: bool) -> None:
        if clock:
            # the window moves by whole minutes: the axis is re-laid out once a minute
            right = math.floor(now_min) + 1.0
            rng = (right - PRESESSION_MIN - 1.0, right)
        else:
            left = -10.0
            if self._first_t is not None:
                left = min(left, (self._first_t - zero) / 60.0 - 1)
            left = math.floor(left / 10.0) * 10.0
            # the right edge moves in 10-min steps, not every frame: a moving range re-lays
            # out and repaints every axis (their tick texts) at each frame
            right = max(MIN_OBSERVATION_MIN + 10.0, math.ceil((now_min + 5.0) / 10.0) * 10.0)
            rng = (left, right)
        if rng != self._x_range:
            self._x_range = rng
            self.plots["rr"].setXRange(*rng, padding=0)

    def set_manual(self, points: list[tuple[datetime, str, float]]) -> None:
        """Values typed by hand (time, parameter, value): a hollow square each."""
        if points == self._manual:
            return
        self._manual = list(points)
        self._draw_manual(self._zero())

    def _draw_manual(self, zero: float) -> None:
        by_lane: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in self.plots}
        for when, parameter, value in self._manual:
            lane = _LANE_OF.get(parameter)
            if lane is not None:
                by_lane[lane][0].append((when.timestamp() - zero) / 60.0)
                by_lane[lane][1].append(value)
        for lane, (x, y) in by_lane.items():
            self.manual_items[lane].setData(x=x, y=y)
            self.manual_items[lane].setVisible(bool(x))

    def manual_point_count(self, lane: str) -> int:
        return len(self.manual_items[lane].data)

    @staticmethod
    def _minutes(t: np.ndarray, zero: float) -> np.ndarray:
        return (t - zero) / 60.0

    def _draw_bp(self, zero: float) -> float | None:
        """Draw the cuff readings; the time of the first (epoch s), if any."""
        sys_s, dia_s, mean_s = (
            self.buffers.series(p) for p in ("nibp_sys", "nibp_dia", "nibp_mean")
        )
        for key, series in (("nibp_sys", sys_s), ("nibp_dia", dia_s), ("nibp_mean", mean_s)):
            if series is None:
                self.curves[key].setData(_EMPTY, _EMPTY)
            else:
                self.curves[key].setData(self._minutes(series.t, zero), series.v)
        self.curves["nibp_bar"].setData(_EMPTY, _EMPTY)
        if sys_s is not None and dia_s is not None and len(sys_s.t) and len(dia_s.t):
            # Pair each systolic with the diastolic of the same cuff cycle (same time ±5 s).
            j = np.searchsorted(dia_s.t, sys_s.t)
            j = np.clip(j, 0, len(dia_s.t) - 1)
            close = np.abs(dia_s.t[j] - sys_s.t) <= 5.0
            xs = self._minutes(sys_s.t[close], zero)
            x = np.repeat(xs, 2)
            y = np.empty(len(x))
            y[0::2] = sys_s.v[close]
            y[1::2] = dia_s.v[j[close]]
            self.curves["nibp_bar"].setData(x, y)
        flagged_t: list[np.ndarray] = []
        flagged_v: list[np.ndarray] = []
        flagged_p: list[np.ndarray] = []
        for s in (sys_s, dia_s, mean_s):
            if s is not None:
                m = s.flagged > 0
                flagged_t.append(s.t[m])
                flagged_v.append(s.v[m])
                flagged_p.append(s.flagged[m])
        if flagged_t:
            self._set_flag_points(
                "bp",
                np.concatenate(flagged_t),
                np.concatenate(flagged_v),
                np.concatenate(flagged_p),
                zero,
            )
        else:
            self._set_flag_points("bp", _EMPTY, _EMPTY, _EMPTY, zero)
        return float(sys_s.t[0]) if sys_s is not None and len(sys_s.t) else None

    def _set_flags(self, key: str, s: Series, zero: float) -> None:
        m = s.flagged > 0
        self._set_flag_points(key, s.t[m], s.v[m], s.flagged[m], zero)

    def _set_flag_points(
        self, key: str, t: np.ndarray, v: np.ndarray, prio: np.ndarray, zero: float
    ) -> None:
        x = self._minutes(t, zero)
        for p, item in self.flag_items[key].items():
            m = prio == int(p)
            xs, ys = x[m], v[m]
            old = self._flag_drawn.get((key, p))
            if old is not None and np.array_equal(old[0], xs) and np.array_equal(old[1], ys):
                continue  # unchanged (most frames): no new scatter points built
            self._flag_drawn[(key, p)] = (xs, ys)
            item.setData(x=xs, y=ys)
            item.setVisible(len(xs) > 0)  # an empty scatter item still costs a paint

    def set_events(self, events: list[tuple[datetime, str]]) -> None:
        """Dose and observation markers along the top of the NIBP lane (rebuilt on change)."""
        if events == self._events:
            return
        self._events = list(events)
        bp = self.plots["bp"]
        for item in self._event_items:
            bp.removeItem(item)
        self._event_items = []
        zero = self._session_clock().zero
        shown = self._clock_zero is None
        last_x, row = -1e9, 0
        for when, label in sorted(events):
            x = (when - zero).total_seconds() / 60.0
            # Events within 3 min of each other get their labels on successive rows.
            row = row + 1 if x - last_x < 3.0 else 0
            last_x = x
            line = pg.InfiniteLine(
                pos=x, angle=90, pen=_pen("#7e57c2", style=Qt.PenStyle.DashLine)
            )
            text = pg.TextItem(label, color="#b39ddb", anchor=(0.5, 0))
            text.setPos(x, LANES[0].y_range[1] - 12 * row)
            bp.addItem(line, ignoreBounds=True)
            bp.addItem(text, ignoreBounds=True)
            line.setVisible(shown)
            text.setVisible(shown)
            self._event_items += [line, text]

    def flagged_point_count(self, lane: str) -> int:
        return sum(len(item.data) for item in self.flag_items[lane].values())
