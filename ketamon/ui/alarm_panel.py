"""Active flags with IEC 60601-1-8 presentation: high red flashing ~2 Hz, medium yellow
flashing ~0.6 Hz, low cyan steady, each with its ***/**/* marker and priority word so colour
is never the only signal. ACKNOWLEDGED and AUDIO PAUSED use those names.

AUDIO PAUSED lasts ``audio_pause_s`` (the site profile's setting, 1-5 min) and a newly raised or
escalated high-priority flag ends it at once: high priority is never silenced by a pause that
began before it."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.alarms import ActiveAlarm, AlarmState, AudioPause
from ketamon.domain.thresholds import Priority
from ketamon.ui import theme

FLASH_HZ = {Priority.HIGH: 2.0, Priority.MEDIUM: 0.6}
AUDIO_PAUSE_S = 120.0  # default 2 min (site profile: alarms.audio_pause_min, 1-5 min)
#: an unacknowledged flag sounds again after this many seconds
REPEAT_S = {Priority.HIGH: 15.0, Priority.MEDIUM: 30.0}


class AlarmRow(QLabel):
    def __init__(self, alarm: ActiveAlarm, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.alarm = alarm
        self.setWordWrap(True)
        state = []
        if alarm.state is AlarmState.LATCHED:
            state.append("latched")
        if alarm.acknowledged:
            state.append("acknowledged")
        if alarm.technical:
            state.append("technical")
        word = theme.PRIORITY_TEXT[alarm.priority]
        msg = alarm.message.lstrip("* ")
        self.setText(
            f"{alarm.priority.marker} {word}: {msg}" + (f"  [{', '.join(state)}]" if state else "")
        )
        self.setMinimumHeight(30)
        self._lit = True
        self.paint(True)

    def paint(self, lit: bool) -> None:
        colour = theme.PRIORITY_COLOURS[self.alarm.priority]
        if lit or self.alarm.acknowledged:
            self.setStyleSheet(
                f"background: {colour}; color: #000; font-weight: bold; padding: 4px;"
                "border-radius: 4px; font-size: 11pt"
            )
        else:
            self.setStyleSheet(
                f"background: #12171c; color: {colour}; font-weight: bold; padding: 4px;"
                f"border: 2px solid {colour}; border-radius: 4px; font-size: 11pt"
            )


class AlarmPanel(QWidget):
    sig_acknowledge_requested = Signal()
    sig_reset_requested = Signal()

    def __init__(
        self,
        active: Callable[[], list[ActiveAlarm]],
        sound: Callable[[Priority], None] | None = None,
        parent: QWidget | None = None,
        *,
        audio_pause_s: float = AUDIO_PAUSE_S,
    ) -> None:
        super().__init__(parent)
        self._active = active
        self._sound = sound
        self.pause = AudioPause(audio_pause_s)
        self._last_sounded: dict[str, float] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QLabel("Flags (advisory: the bedside monitor is the primary alarm)")
        head.setWordWrap(True)
        head.setStyleSheet("color: #9aa5b1; font-size: 10pt")
        lay.addWidget(head)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        self.rows_box = QVBoxLayout(holder)
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(4)
        self.rows_box.addStretch(1)
        scroll.setWidget(holder)
        lay.addWidget(scroll, 1)
        self.none_label = QLabel("No active flags")
        self.none_label.setStyleSheet("color: #6c7883")
        self.rows_box.insertWidget(0, self.none_label)
        buttons = QHBoxLayout()
        self.ack_button = QPushButton("✔ ACKNOWLEDGED")
        self.ack_button.setToolTip("Acknowledge all flags at this chair (Ctrl+K)")
        self.ack_button.clicked.connect(self.sig_acknowledge_requested)
        self.pause_button = QPushButton("⊘ AUDIO PAUSED")
        self.pause_button.setToolTip(
            f"Pause alarm sounds for {audio_pause_s / 60:g} min "
            "(a new high-priority flag ends the pause)"
        )
        self.pause_button.setCheckable(True)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.reset_button = QPushButton("↺ ALARM RESET")
        self.reset_button.setToolTip(
            "End the flags whose condition has gone (latched flags); flags still present stay"
        )
        self.reset_button.clicked.connect(self.sig_reset_requested)
        # one row, compact: the IEC 60601-1-8 names must be readable whole at 1366×768
        buttons.setSpacing(4)
        for b in (self.ack_button, self.pause_button, self.reset_button):
            b.setMinimumHeight(44)
            b.setStyleSheet("font-size: 9pt; padding: 2px 4px")
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.rows: list[AlarmRow] = []
        self._keys: list[tuple[str, int, bool, str, str]] = []
        self._t0 = time.monotonic()
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._on_timer_timeout)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def audio_pause_s(self) -> float:
        return self.pause.length_s

    @property
    def audio_paused(self) -> bool:
        return self.pause.paused(time.monotonic())

    @property
    def audio_paused_until(self) -> float:
        return self.pause.until

    def _on_pause_clicked(self) -> None:
        self.pause.toggle(time.monotonic())
        self._update_pause_button()

    def _update_pause_button(self) -> None:
        left = self.pause.remaining_s(time.monotonic())
        self.pause_button.setChecked(left > 0)
        self.pause_button.setText(
            f"⊘ AUDIO PAUSED {int(left // 60)}:{int(left % 60):02d}"
            if left > 0
            else "⊘ AUDIO PAUSED"
        )

    def refresh(self) -> None:
        alarms = self._active()
        keys = [(a.key, int(a.priority), a.acknowledged, a.state.value, a.message) for a in alarms]
        if keys == self._keys:
            return
        self._keys = keys
        for r in self.rows:
            self.rows_box.removeWidget(r)
            r.deleteLater()
        self.rows = [AlarmRow(a) for a in alarms]
        for i, r in enumerate(self.rows):
            self.rows_box.insertWidget(1 + i, r)
        self.none_label.setVisible(not self.rows)

    def texts(self) -> list[str]:
        return [r.text() for r in self.rows]

    def announce(self, key: str, priority: Priority) -> None:
        """Sound a newly raised or escalated flag (unless audio is paused). A new high-priority
        flag ends AUDIO PAUSED first."""
        was_paused = self.audio_paused
        self.pause.new_flag(priority, time.monotonic())
        if was_paused and not self.audio_paused:
            self._update_pause_button()
        self._sound_flag(key, priority)

    def _sound_flag(self, key: str, priority: Priority) -> None:
        self._last_sounded[key] = time.monotonic()
        if self._sound is not None and not self.audio_paused:
            self._sound(priority)

    def _repeat_unacknowledged(self) -> None:
        now = time.monotonic()
        for a in self._active():
            every = REPEAT_S.get(a.priority)
            if every is None or a.acknowledged:
                continue
            if now - self._last_sounded.get(a.key, now) >= every:
                self._sound_flag(a.key, a.priority)  # a repeat: it does not end a pause

    def _on_timer_timeout(self) -> None:
        self.refresh()
        self._repeat_unacknowledged()
        t = time.monotonic() - self._t0
        for r in self.rows:
            hz = FLASH_HZ.get(r.alarm.priority)
            r.paint(True if hz is None else (t * hz) % 1.0 < 0.5)
        if self.pause_button.isChecked() or self.pause.until:
            self._update_pause_button()
