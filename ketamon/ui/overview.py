"""Every chair at a glance, as a central station: per card the patient, phase, T+ and the
discharge countdown, a device or infusion countdown, the latest BP/HR/SpO₂/RR with their age,
a 30-minute trend, the next item due, and the worst flag with its text, flashing at its IEC
60601-1-8 rate. The cards fill the window for 2 to 16 chairs. One click opens the chair."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QHideEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPolygonF,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ketamon.domain.thresholds import Priority
from ketamon.presenters.chair import ChairPresenter
from ketamon.ui import theme
from ketamon.ui.alarm_panel import FLASH_HZ
from ketamon.ui.numerics import STALE_COLOUR, age_text

TREND_MIN = 30.0
#: (parameter, lower, upper) of the mini trend's own scale per line
TREND_LINES = (("hr", 30.0, 160.0), ("spo2", 75.0, 101.0), ("nibp_sys", 60.0, 200.0))
#: columns of the card grid by chair count: the cards fill a 16:9 window
COLUMNS = {1: 1, 2: 2, 3: 3, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4, 9: 3}


def columns_for(n: int) -> int:
    return COLUMNS.get(n, 4 if n <= 16 else math.ceil(math.sqrt(n * 16 / 9)))


def chair_summary(model: ChairPresenter) -> dict[str, str]:
    """The overview's texts for one chair (the core's read model; also used by tests)."""
    x = model.summary()
    return {
        "patient": x.patient,
        "phase": x.phase,
        "time": x.time,
        "next": x.next,
        "alarm": x.alarm,
        "link": x.link,
    }


class MiniTrend(QWidget):
    """The last 30 minutes of HR, SpO₂ and systolic BP, each on its own scale (no axes: a
    shape to glance at; the numbers are beside it)."""

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setMinimumHeight(36)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._lines: list[tuple[str, list[QPointF]]] = []
        self._version = -1
        self._size = (0, 0)
        self._now: float | None = None

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._now is not None:
            self.refresh(self._now)  # redrawn for the new width at once

    def refresh(self, now: float) -> None:
        self._now = now
        version = self.model.buffers.version
        size = (self.width(), self.height())
        if version == self._version and size == self._size:
            return
        self._version, self._size = version, size
        w, h = max(1, size[0] - 4), max(1, size[1] - 4)
        lines: list[tuple[str, list[QPointF]]] = []
        for parameter, lo, hi in TREND_LINES:
            s = self.model.buffers.series(parameter)
            if s is None or not len(s.t):
                continue
            m = (s.t >= now - TREND_MIN * 60.0) & ~s.invalid
            t, v = s.t[m], s.v[m]
            if not len(t):
                continue
            step = max(1, len(t) // w)  # about a point per pixel
            t, v = t[::step], v[::step]
            x = 2 + (t - (now - TREND_MIN * 60.0)) / (TREND_MIN * 60.0) * w
            y = 2 + (1.0 - np.clip((v - lo) / (hi - lo), 0.0, 1.0)) * h
            lines.append((parameter, [QPointF(a, b) for a, b in zip(x, y, strict=True)]))
        self._lines = lines
        self.update()

    def line_count(self) -> int:
        return len(self._lines)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0f1317"))
        p.setPen(QPen(QColor(theme.GRID_COLOUR), 1))
        p.drawRect(QRectF(0.5, 0.5, self.width() - 1.0, self.height() - 1.0))
        for parameter, points in self._lines:
            pen = QPen(QColor(theme.PARAMETER_COLOURS[parameter]), 1)
            p.setPen(pen)
            if parameter == "nibp_sys":
                for pt in points:  # cuff readings are points, not a line
                    p.drawRect(QRectF(pt.x() - 1.5, pt.y() - 1.5, 3.0, 3.0))
            else:
                p.drawPolyline(QPolygonF(points))
        p.end()


class FlagStrip(QWidget):
    """The worst flag's text on its priority colour, flashing at the IEC rate (high ~2 Hz,
    medium ~0.6 Hz, low steady), painted directly: no restyling at each flash."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(40)  # two lines: "SYS 165: rise +41 over baseline 124 …"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.text = ""
        self.priority: Priority | None = None
        self.lit = True

    def set_flag(self, text: str, priority: Priority | None) -> None:
        if (text, priority) != (self.text, self.priority):
            self.text, self.priority = text, priority
            self.update()

    def flash(self, t: float) -> None:
        hz = FLASH_HZ.get(self.priority) if self.priority is not None else None
        lit = True if hz is None else (t * hz) % 1.0 < 0.5
        if lit != self.lit:
            self.lit = lit
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        r = self.rect()
        font = p.font()
        font.setBold(True)
        p.setFont(font)
        if self.priority is None:
            p.setPen(QColor("#9aa5b1"))
            p.drawText(r.adjusted(4, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, self.text)
        else:
            colour = QColor(theme.PRIORITY_COLOURS[self.priority])
            if self.lit:
                p.fillRect(r, colour)
                p.setPen(QColor("#000"))
            else:
                p.fillRect(r, QColor("#12171c"))
                p.setPen(QPen(colour, 2))
                p.drawRect(r.adjusted(1, 1, -1, -1))
                p.setPen(colour)
            flags = int(Qt.AlignmentFlag.AlignVCenter) | int(Qt.TextFlag.TextWordWrap)
            p.drawText(r.adjusted(4, 0, -4, 0), flags, self.text)
        p.end()


class CardFrame(QFrame):
    """A chair's card, clickable (a frame, so the theme's button height rules do not squeeze
    it): its name, a status line, the vitals, a mini trend, the next item due and the worst
    flag. The overview's cards and the central view's are both made of it."""

    clicked = Signal()

    def __init__(self, trend: MiniTrend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chairCard")
        self.setMinimumSize(220, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.card_layout = QVBoxLayout(self)
        self.card_layout.setContentsMargins(6, 4, 6, 4)
        self.card_layout.setSpacing(2)
        self.name = QLabel("")
        self.name.setStyleSheet("font-size: 13pt; background: transparent")
        self.lines = QLabel("")
        self.lines.setStyleSheet("font-size: 10pt; background: transparent")
        self.vitals = QLabel("")
        self.vitals.setTextFormat(Qt.TextFormat.RichText)
        self.vitals.setStyleSheet("font-size: 11pt; background: transparent")
        self.trend = trend
        self.next = QLabel("")
        self.next.setStyleSheet("font-size: 10pt; background: transparent")
        self.flag = FlagStrip()
        self._colour = ""

    def stack(self, *above_trend: QWidget) -> None:
        """Lay the card out: ``above_trend`` (top down), the trend, the next item, the flag."""
        for w in above_trend:
            self.card_layout.addWidget(w)
        self.card_layout.addWidget(self.trend, 1)
        self.card_layout.addWidget(self.next)
        self.card_layout.addWidget(self.flag)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class ChairCard(CardFrame):
    """This station's chair on the overview."""

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(MiniTrend(model), parent)
        self.model = model
        self.dose = QLabel("")
        self.dose.setStyleSheet(
            "font-size: 10pt; font-weight: bold; color: #ffcc00; background: transparent"
        )
        self.stack(self.name, self.lines, self.dose, self.vitals)
        self.alarm = self.flag  # the worst flag (text and priority)
        self.refresh()

    def refresh(self) -> None:
        model = self.model
        d = model.summary()
        s = model.state
        now = model.now()
        self._set(self.name, f"<b>{model.name}</b> · {d.patient}")
        parts = [d.phase]
        if d.time:
            parts.append(d.time)
        if s is not None and s.first_dose is not None:
            left = model.session_clock().observation_remaining_min(now) or 0.0
            parts.append(f"2 h in {left:.0f} min" if left > 0 else "2 h complete")
        self._set(self.lines, " · ".join(parts))
        dosing = model.dosing_status()
        self._set(self.dose, "" if dosing is None else dosing.text)
        self.dose.setVisible(dosing is not None)
        self._set(self.vitals, self._vitals_text(now))
        self.trend.refresh(now.timestamp())
        link = "" if model.link.streaming else f" · {model.link.text}"
        self._set(self.next, f"Next: {d.next}{link}")
        alarms = model.active_alarms()
        worst = alarms[0] if alarms else None
        if worst is None:
            self.flag.set_flag("no active flags", None)
        else:
            more = f"  (+{len(alarms) - 1})" if len(alarms) > 1 else ""
            word = theme.PRIORITY_TEXT[worst.priority]
            ack = " ✔" if worst.acknowledged else ""
            self.flag.set_flag(
                f"{worst.priority.marker} {word}: {worst.message.lstrip('* ')}{ack}{more}",
                worst.priority,
            )
        colour = "#2a3138" if worst is None else theme.PRIORITY_COLOURS[worst.priority]
        if colour == self._colour:  # restyling re-polishes the card: only on a change
            return
        self._colour = colour
        self.setStyleSheet(
            f"QFrame#chairCard {{ border: 3px solid {colour}; border-radius: 8px;"
            " background: #161c21; }"
        )

    @staticmethod
    def _set(label: QLabel, text: str) -> None:
        if label.text() != text:
            label.setText(text)

    def _vitals_text(self, now: datetime) -> str:
        """BP, HR, SpO₂, RR with their age: grey when stale, "--" past the limit, "M" typed."""
        monitor, manual = self.model.monitor_latest(), self.model.manual_latest()
        grey, blank = self.model.numeric_ages()
        out = []
        for key, name in (("nibp_sys", "BP"), ("hr", "HR"), ("spo2", "SpO₂"), ("rr", "RR")):
            mon = monitor.get(key)
            typed = manual.get(key)
            value: str | None = None
            at: datetime | None = None
            mark = ""
            prio = 0
            if typed is not None and (mon is None or typed[0] > mon[0].host_time):
                at, mark = typed[0], "M"
                value = f"{typed[1]:.0f}"
                if key == "nibp_sys" and "nibp_dia" in manual:
                    value += f"/{manual['nibp_dia'][1]:.0f}"
            elif mon is not None:
                at, prio = mon[0].host_time, mon[1]
                value = f"{mon[0].value:.0f}"
                dia = monitor.get("nibp_dia")
                if key == "nibp_sys" and dia is not None:
                    value += f"/{dia[0].value:.0f}"
                    prio = max(prio, dia[1])
            colour = theme.PARAMETER_COLOURS.get(key, "#e0e0e0")
            if value is None or at is None:
                out.append(f"<span style='color:#9aa5b1'>{name}</span> --")
                continue
            age = (now - at).total_seconds()
            if age > blank.get(key, 30.0) and not mark:
                out.append(
                    f"<span style='color:#9aa5b1'>{name}</span> "
                    f"<span style='color:{STALE_COLOUR}'>-- ({age_text(age)})</span>"
                )
                continue
            p = theme.priority_from_int(prio)
            if p is not None:
                colour = theme.PRIORITY_COLOURS[p]
            if age > grey.get(key, 10.0):
                colour = STALE_COLOUR
            age_s = f" <small>{age_text(age)}</small>" if key == "nibp_sys" or age > 10 else ""
            m = f"<sup>{mark}</sup>" if mark else ""
            out.append(
                f"<span style='color:#9aa5b1'>{name}</span> "
                f"<b style='color:{colour}'>{value}</b>{m}{age_s}"
            )
        return out[0] + "<br>" + "&nbsp;&nbsp; ".join(out[1:])  # BP with its age, then the rest


class OverviewWidget(QWidget):
    sig_chair_selected = Signal(int)

    def __init__(self, models: Sequence[ChairPresenter], parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        #: REMS forms due / overdue (from the review desk's list), so nobody misses day 7
        self.pmf_label = QLabel("")
        self.pmf_label.setObjectName("pmfCounts")
        self.pmf_label.setStyleSheet("font-size: 12pt")
        outer.addWidget(self.pmf_label)
        grid = QGridLayout()
        grid.setSpacing(6)
        outer.addLayout(grid, 1)
        self.cards: list[ChairCard] = []
        cols = columns_for(len(models))
        for i, m in enumerate(models):
            card = ChairCard(m)
            card.clicked.connect(lambda i=i: self.sig_chair_selected.emit(i))
            grid.addWidget(card, i // cols, i % cols)
            self.cards.append(card)
        for r in range(math.ceil(len(models) / cols)):
            grid.setRowStretch(r, 1)  # the cards share the whole window
        for c in range(cols):
            grid.setColumnStretch(c, 1)
        self._t0 = time.monotonic()
        self._next_card = 0
        #: 10 Hz: flashes the flag strips and refreshes the next card, so that each card is
        #: refreshed every 0.2-1.6 s (2-16 chairs) without one long pass over all of them
        #: (16 cards in one pass held the event loop ~30 ms once a second)
        self._flash = QTimer(self)
        self._flash.setInterval(100)
        self._flash.timeout.connect(self._on_flash_timeout)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._flash.start()
        self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:
        self._flash.stop()
        super().hideEvent(event)

    def stop(self) -> None:
        self._flash.stop()

    def set_pmf_counts(self, text: str, urgent: bool) -> None:
        self.pmf_label.setText(text)
        self.pmf_label.setStyleSheet(
            "font-size: 12pt; font-weight: bold; color: #ffcc00" if urgent else "font-size: 12pt"
        )

    def refresh(self) -> None:
        for c in self.cards:
            c.refresh()

    def _on_flash_timeout(self) -> None:
        t = time.monotonic() - self._t0
        for c in self.cards:
            c.flag.flash(t)
        n = len(self.cards)
        if n:
            self.cards[self._next_card % n].refresh()
            self._next_card = (self._next_card + 1) % n
