"""One chair: status line, live chart, big numerics, and the list of active flags."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from devices.supervisor import LinkState, StatusEvent
from ketamon.acquisition.chair import ChairAcquisition
from ketamon.domain.alarms import AlarmAction, AlarmEvent
from ketamon.domain.session_clock import SessionClock
from ketamon.domain.thresholds import Priority
from ketamon.ui import theme
from ketamon.ui.chart import TrendChartWidget
from ketamon.ui.numerics import NumericsPanel

LINK_TEXT = {
    LinkState.CONNECTING: "CONNECTING — monitor not connected",
    LinkState.NEGOTIATING: "NEGOTIATING — waiting for data",
    LinkState.STREAMING: "STREAMING",
    LinkState.STOPPED: "STOPPED",
}


class ChairViewWidget(QWidget):
    def __init__(
        self,
        chair: ChairAcquisition,
        session_clock: Callable[[], SessionClock],
        patient_label: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.chair = chair
        self._session_clock = session_clock
        self._now: Callable[[], datetime] = chair.clock.now
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        header = QHBoxLayout()
        self.title = QLabel(f"<b>{chair.name}</b> · {patient_label}")
        self.title.setStyleSheet("font-size: 14pt")
        self.clock_label = QLabel("")
        self.clock_label.setStyleSheet("font-size: 14pt")
        self.link_label = QLabel(LINK_TEXT[LinkState.STOPPED])
        self.link_label.setObjectName("chairStatus")
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.clock_label)
        header.addSpacing(20)
        header.addWidget(self.link_label)
        root.addLayout(header)
        body = QHBoxLayout()
        self.chart = TrendChartWidget(
            chair.buffers, chair.alarms.profile, session_clock, self._now
        )
        body.addWidget(self.chart, 4)
        side = QVBoxLayout()
        self.numerics = NumericsPanel()
        side.addWidget(self.numerics, 3)
        self.alarm_list = QListWidget()
        self.alarm_list.setObjectName("alarmList")
        side.addWidget(QLabel("Active flags (advisory)"))
        side.addWidget(self.alarm_list, 2)
        self.ack_button = QPushButton("ACKNOWLEDGED")
        self.ack_button.setToolTip("Acknowledge the selected flag (Ctrl+K)")
        self.ack_button.clicked.connect(self._on_ack_button_clicked)
        side.addWidget(self.ack_button)
        body.addLayout(side, 1)
        root.addLayout(body, 1)
        chair.sig_alarm_changed.connect(self._on_chair_alarm_changed)
        chair.sig_link_changed.connect(self._on_chair_link_changed)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._on_tick_timeout)
        self.alarm_log: list[AlarmEvent] = []

    def start(self) -> None:
        self.chart.start()
        self._tick.start()

    def stop(self) -> None:
        self.chart.stop()
        self._tick.stop()

    # ---- slots ------------------------------------------------------------------------------
    def _on_tick_timeout(self) -> None:
        now = self._now()
        clock = self._session_clock()
        self.numerics.update_values(self.chair.buffers.latest(), now)
        m = clock.minutes(now)
        if clock.first_dose is None:
            self.clock_label.setText(f"pre-dose · {m:.0f} min since session start")
        else:
            left = clock.observation_remaining_min(now) or 0.0
            self.clock_label.setText(f"T+{m:.0f} min · 2-h observation: {left:.0f} min left")

    def _on_chair_link_changed(self, event: StatusEvent) -> None:
        text = LINK_TEXT[event.state]
        if event.state is not LinkState.STREAMING:
            text += f" ({event.reason})"
        self.link_label.setText(text)

    def _on_chair_alarm_changed(self, event: AlarmEvent) -> None:
        self.alarm_log.append(event)
        self._refresh_alarms()

    def _refresh_alarms(self) -> None:
        self.alarm_list.clear()
        for a in self.chair.alarms.active():
            item = QListWidgetItem(f"{a.message}  [{a.state.value}]")
            item.setData(256, a.key)
            item.setForeground(theme_colour(a.priority))
            self.alarm_list.addItem(item)

    def _on_ack_button_clicked(self) -> None:
        item = self.alarm_list.currentItem() or self.alarm_list.item(0)
        if item is not None:
            self.chair.acknowledge(str(item.data(256)))
            self._refresh_alarms()

    def active_alarm_texts(self) -> list[str]:
        return [self.alarm_list.item(i).text() for i in range(self.alarm_list.count())]

    def last_action(self) -> AlarmAction | None:
        return self.alarm_log[-1].action if self.alarm_log else None


def theme_colour(prio: Priority) -> QColor:
    return QColor(theme.PRIORITY_COLOURS[prio])
