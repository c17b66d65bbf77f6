"""The clinic's central view (``ketamon central``, and the app's "Clinic" tab): every active chair
of every station, in the overview's card look (its flag strip and mini trend), from a
:class:`~ketamon.clinic.feed.CentralFeed` that reads the database in its own thread.

The widget polls the feed's snapshot version (a plain attribute read: the UI thread never waits on
the database) four times a second, and flashes the worst flag of each card at its IEC 60601-1-8
rate. A station offline and the central view's own lost connection are technical alarms at the
top. A click on a card opens that chair's read-only live chart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, cast

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from ketamon.clinic.feed import ChairView, ClinicSnapshot, Flag
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.presenters.views import TrendBuffers
from ketamon.ui import theme
from ketamon.ui.chart import TrendChartWidget
from ketamon.ui.numerics import STALE_COLOUR, age_text
from ketamon.ui.overview import CardFrame, FlagStrip, MiniTrend, columns_for

if TYPE_CHECKING:
    from ketamon.domain.record import SessionState
    from ketamon.presenters.chair import ChairPresenter

POLL_MS = 250
#: a value older than this is grey; older than BLANK_S it shows as "--" with its age
GREY_S = {"BP": 20 * 60.0, "HR": 10.0, "SpO₂": 10.0, "RR": 10.0}
BLANK_S = {"BP": 40 * 60.0, "HR": 60.0, "SpO₂": 60.0, "RR": 60.0}


class FeedSource(Protocol):
    """What the view needs of the feed (a :class:`~ketamon.clinic.feed.CentralFeed`)."""

    @property
    def version(self) -> int: ...

    @property
    def snapshot(self) -> ClinicSnapshot: ...

    def session_trend(self, session_id: int) -> TrendBuffers | None: ...

    def session_state(self, session_id: int) -> SessionState | None: ...


class _TrendModel:
    """The mini trend reads ``model.buffers`` only: a session's buffers from the feed."""

    def __init__(self, buffers: TrendBuffers) -> None:
        self.buffers = buffers


def _flag_text(f: Flag, more: int) -> str:
    word = theme.PRIORITY_TEXT[f.priority]
    ack = " ✔" if f.acknowledged else ""
    extra = f"  (+{more})" if more else ""
    return f"{word}: {f.text}{ack}{extra}"


class CentralCard(CardFrame):
    """One chair of the clinic: the overview card's look, filled from a :class:`ChairView`."""

    def __init__(self, view: ChairView, parent: QWidget | None = None) -> None:
        # MiniTrend only reads ``model.buffers``; the feed's buffers stand in for a presenter's.
        super().__init__(MiniTrend(cast("ChairPresenter", _TrendModel(view.trend))), parent)
        self.view = view
        self.stack(self.name, self.lines, self.vitals)
        self.set_view(view, None)

    def set_view(self, view: ChairView, server_time: datetime | None) -> None:
        self.view = view
        station = f" · {view.station}" if view.station else " · (no station)"
        _set(self.name, f"<b>{view.chair}</b>{station} · {view.patient}")
        parts = [p for p in (view.phase, view.time, view.countdown) if p]
        _set(self.lines, " · ".join(parts))
        _set(self.vitals, self._vitals_text(view))
        now = server_time.timestamp() if server_time is not None else time.time()
        self.trend.refresh(now)
        link = "" if not view.link or view.link.startswith("streaming") else f" · {view.link}"
        _set(self.next, f"Next: {view.next_due}{link}")
        worst = view.worst
        if worst is None:
            self.flag.set_flag("no active flags", None)
        else:
            self.flag.set_flag(_flag_text(worst, len(view.flags) - 1), worst.priority)
        colour = "#2a3138" if worst is None else theme.PRIORITY_COLOURS[worst.priority]
        if colour != self._colour:
            self._colour = colour
            self.setStyleSheet(
                f"QFrame#chairCard {{ border: 3px solid {colour}; border-radius: 8px;"
                " background: #161c21; }"
            )

    @staticmethod
    def _vitals_text(view: ChairView) -> str:
        out = []
        keys = {"BP": "nibp_sys", "HR": "hr", "SpO₂": "spo2", "RR": "rr"}
        for v in view.vitals:
            name = f"<span style='color:#9aa5b1'>{v.label}</span>"
            if v.age_s is None:
                out.append(f"{name} --")
                continue
            if v.age_s > BLANK_S.get(v.label, 60.0):
                out.append(
                    f"{name} <span style='color:{STALE_COLOUR}'>-- ({age_text(v.age_s)})</span>"
                )
                continue
            colour = theme.PARAMETER_COLOURS.get(keys[v.label], "#e0e0e0")
            if v.age_s > GREY_S.get(v.label, 10.0) or view.station_offline:
                colour = STALE_COLOUR
            age = f" <small>{age_text(v.age_s)}</small>" if v.label == "BP" or v.age_s > 10 else ""
            out.append(f"{name} <b style='color:{colour}'>{v.text}</b>{age}")
        return "&nbsp; ".join(out)


def _set(label: QLabel, text: str) -> None:
    if label.text() != text:
        label.setText(text)


class ChairChartDialog(QDialog):
    """A chair's live chart, read-only: drawn from the feed's buffers of its session."""

    def __init__(
        self,
        view: ChairView,
        buffers: TrendBuffers,
        profile: ThresholdProfile,
        state: Callable[[], SessionState | None],
        now: Callable[[], datetime],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{view.chair} · {view.station} · {view.patient} (read-only)")
        self.resize(1000, 640)
        self._state = state
        lay = QVBoxLayout(self)
        note = QLabel("Read-only: this chair is charted and acknowledged at its own station.")
        note.setStyleSheet("color: #9aa5b1")
        lay.addWidget(note)
        self.chart = TrendChartWidget(buffers, profile, self._clock, now, in_session=lambda: True)
        lay.addWidget(self.chart, 1)
        self.chart.start()

    def _clock(self) -> SessionClock:
        s = self._state()
        if s is None:
            return SessionClock(datetime.now().astimezone(), None)
        return SessionClock(s.started, s.first_dose)

    def done(self, result: int) -> None:
        self.chart.stop()
        super().done(result)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.chart.stop()
        super().closeEvent(event)


class CentralWidget(QWidget):
    """Every active chair in the clinic (see the module docstring)."""

    sig_chair_opened = Signal(int)  # session id

    def __init__(
        self, feed: FeedSource, profile: ThresholdProfile, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.feed = feed
        self.profile = profile
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.status = QLabel("connecting to the clinic database…")
        self.status.setObjectName("centralStatus")
        self.status.setStyleSheet("font-size: 11pt")
        outer.addWidget(self.status)
        #: technical alarms of the clinic itself: the connection, stations offline
        self.system_flag = FlagStrip()
        self.system_flag.hide()
        outer.addWidget(self.system_flag)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(6)
        self.grid.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.grid_host, 1)
        self.cards: dict[int, CentralCard] = {}
        self._order: list[int] = []
        self._version = -1
        self.charts: list[ChairChartDialog] = []
        #: wall time each flag text was first drawn on a card, by (session id, flag text)
        self.flag_drawn: dict[tuple[int, str], float] = {}
        self._t0 = time.monotonic()
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._on_poll_timeout)
        self._flash = QTimer(self)
        self._flash.setInterval(100)
        self._flash.timeout.connect(self._on_flash_timeout)

    # ---- lifecycle -------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._poll.start()
        self._flash.start()
        self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:
        self._poll.stop()
        self._flash.stop()
        super().hideEvent(event)

    def stop(self) -> None:
        self._poll.stop()
        self._flash.stop()
        for d in self.charts:
            d.chart.stop()
            d.close()
        self.charts.clear()

    # ---- updates ---------------------------------------------------------------------------
    def _on_poll_timeout(self) -> None:
        if self.feed.version != self._version:
            self.refresh()

    def refresh(self) -> None:
        self._version = self.feed.version
        snap = self.feed.snapshot
        self._status(snap)
        order = [c.session_id for c in snap.chairs]
        if order != self._order:
            self._rebuild(snap)
        now = time.time()
        for view in snap.chairs:
            card = self.cards[view.session_id]
            card.set_view(view, snap.server_time)
            worst = view.worst
            if worst is not None:
                self.flag_drawn.setdefault((view.session_id, worst.text), now)

    def _status(self, snap: ClinicSnapshot) -> None:
        online = [s for s in snap.stations if s.state == "running" and not s.offline]
        when = (
            "" if snap.server_time is None else snap.server_time.astimezone().strftime("%H:%M:%S")
        )
        if snap.connected:
            self.status.setText(
                f"Clinic: {len(snap.chairs)} active chairs · {len(online)} of "
                f"{len(snap.stations)} stations online · server time {when}"
            )
        else:
            self.status.setText(f"Clinic: reconnecting… (last picture at {when or 'never'})")
        flags: list[Flag] = []
        if not snap.connected:
            flags.append(
                Flag(
                    Priority.MEDIUM,
                    f"central view: clinic database unreachable, reconnecting ({snap.error})",
                    technical=True,
                )
            )
        for st in snap.stations:
            flags += st.flags()
        flags.sort(key=lambda f: -int(f.priority))
        if flags:
            self.system_flag.set_flag(_flag_text(flags[0], len(flags) - 1), flags[0].priority)
            self.system_flag.show()
        else:
            self.system_flag.hide()

    def _rebuild(self, snap: ClinicSnapshot) -> None:
        for card in self.cards.values():
            self.grid.removeWidget(card)
            card.deleteLater()
        self.cards.clear()
        self._order = [c.session_id for c in snap.chairs]
        cols = columns_for(max(1, len(snap.chairs)))
        for i, view in enumerate(snap.chairs):
            card = CentralCard(view)
            card.clicked.connect(lambda sid=view.session_id: self.open_chart(sid))
            self.grid.addWidget(card, i // cols, i % cols)
            self.cards[view.session_id] = card
        for r in range(self.grid.rowCount()):
            self.grid.setRowStretch(r, 1 if r < math.ceil(len(snap.chairs) / cols) else 0)
        for c in range(self.grid.columnCount()):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)

    def _on_flash_timeout(self) -> None:
        t = time.monotonic() - self._t0
        self.system_flag.flash(t)
        for c in self.cards.values():
            c.flag.flash(t)

    # ---- the read-only chart ---------------------------------------------------------------
    def open_chart(self, session_id: int) -> ChairChartDialog | None:
        card = self.cards.get(session_id)
        buffers = self.feed.session_trend(session_id)
        if card is None or buffers is None:
            return None

        def now() -> datetime:
            t = self.feed.snapshot.server_time
            return t if t is not None else datetime.now().astimezone()

        dialog = ChairChartDialog(
            card.view,
            buffers,
            self.profile,
            lambda: self.feed.session_state(session_id),
            now,
            self,
        )
        dialog.finished.connect(lambda _r, d=dialog: self._chart_closed(d))
        self.charts.append(dialog)
        dialog.show()
        self.sig_chair_opened.emit(session_id)
        return dialog

    def _chart_closed(self, dialog: ChairChartDialog) -> None:
        if dialog in self.charts:
            self.charts.remove(dialog)
