"""Active flags with IEC 60601-1-8 presentation: high red flashing ~2 Hz, medium yellow
flashing ~0.6 Hz, low cyan steady, each with its ***/**/* marker and priority word so colour
is never the only signal. ACKNOWLEDGED and AUDIO PAUSED use those names.

AUDIO PAUSED lasts ``audio_pause_s`` (the site profile's setting, 1-5 min) and a newly raised or
escalated high-priority flag ends it at once: high priority is never silenced by a pause that
began before it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
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


def _clock(when: datetime | None) -> str:
    return "" if when is None else when.astimezone().strftime("%H:%M")


def flag_text(alarm: ActiveAlarm, raised: datetime | None) -> str:
    """E.g. ``*** HIGH: SpO₂ 78 < 80 · 09:42  [latched]``: marker, word, condition, time."""
    state = []
    if alarm.state is AlarmState.LATCHED:
        state.append("latched")
    if alarm.acknowledged:
        state.append("acknowledged")
    if alarm.technical:
        state.append("technical")
    word = theme.PRIORITY_TEXT[alarm.priority]
    msg = alarm.message.lstrip("* ")
    since = f" · {_clock(raised)}" if raised is not None else ""
    return f"{alarm.priority.marker} {word}: {msg}{since}" + (
        f"  [{', '.join(state)}]" if state else ""
    )


class AlarmRow(QFrame):
    """One flag on one or two lines: marker, priority word and the condition ("SYS 165 > 160"),
    the time it was raised, its state, and a button that acknowledges this flag alone."""

    sig_acknowledge_requested = Signal(object)

    def __init__(
        self, alarm: ActiveAlarm, raised: datetime | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("alarmRow")
        self.alarm = alarm
        self.raised = raised
        self._text = flag_text(alarm, raised)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 2, 2)
        lay.setSpacing(4)
        self.label = QLabel(self._text)
        self.label.setWordWrap(True)
        lay.addWidget(self.label, 1)
        self.ack = QPushButton("ACK")
        self.ack.setObjectName("flagAck")
        self.ack.setToolTip("Acknowledge this flag (Ctrl+K: the most urgent one)")
        self.ack.setFixedWidth(46)
        self.ack.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ack.clicked.connect(lambda _=False: self.sig_acknowledge_requested.emit(alarm.key))
        lay.addWidget(self.ack)  # before setVisible: a parentless button would be a window
        self.ack.setVisible(not alarm.acknowledged)
        self.setMinimumHeight(30)
        self._lit: bool | None = None
        self.paint(True)

    def text(self) -> str:
        return self._text

    def paint(self, lit: bool) -> None:
        lit = lit or self.alarm.acknowledged
        if lit == self._lit:
            return  # restyling re-polishes the row: only when it changes
        self._lit = lit
        colour = theme.PRIORITY_COLOURS[self.alarm.priority]
        if lit:
            self.setStyleSheet(
                f"QFrame#alarmRow {{ background: {colour}; border: 2px solid {colour};"
                " border-radius: 4px; }"
                "QLabel { color: #000; background: transparent; font-weight: bold;"
                " font-size: 10pt; }"
                "QPushButton#flagAck { background: #12171c; color: #fff; padding: 0px;"
                " min-height: 24px; font-size: 9pt; }"
            )
        else:
            self.setStyleSheet(
                f"QFrame#alarmRow {{ background: #12171c; border: 2px solid {colour};"
                " border-radius: 4px; }"
                f"QLabel {{ color: {colour}; background: transparent; font-weight: bold;"
                " font-size: 10pt; }"
                "QPushButton#flagAck { background: #24303b; color: #fff; padding: 0px;"
                " min-height: 24px; font-size: 9pt; }"
            )


class AlarmPanel(QWidget):
    """The chair's flags, most urgent first, each with its own ACK; ACK ALL, ALARM RESET and
    AUDIO PAUSED (with its countdown, in full) below."""

    #: a flag's key, or None for all of them
    sig_acknowledge_requested = Signal(object)
    sig_reset_requested = Signal()

    def __init__(
        self,
        active: Callable[[], list[ActiveAlarm]],
        sound: Callable[[Priority], None] | None = None,
        parent: QWidget | None = None,
        *,
        audio_pause_s: float = AUDIO_PAUSE_S,
        raised_at: Callable[[str], datetime | None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._active = active
        self._sound = sound
        self._raised_at = raised_at
        self.pause = AudioPause(audio_pause_s)
        self._last_sounded: dict[str, float] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        head = QLabel("Flags · advisory: the bedside monitor is the primary alarm")
        head.setToolTip(
            "ketamon's flags support documentation; the bedside monitor's alarms are primary"
        )
        head.setStyleSheet("color: #9aa5b1; font-size: 9pt")
        lay.addWidget(head)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        holder = QWidget()
        self.rows_box = QVBoxLayout(holder)
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(3)
        self.rows_box.addStretch(1)
        scroll.setWidget(holder)
        self.scroll_area = scroll
        lay.addWidget(scroll, 1)
        self.none_label = QLabel("No active flags")
        self.none_label.setStyleSheet("color: #6c7883")
        self.rows_box.insertWidget(0, self.none_label)
        buttons = QGridLayout()
        buttons.setSpacing(4)
        self.ack_button = QPushButton("✔ ACK ALL")
        self.ack_button.setToolTip(
            "ACKNOWLEDGED: acknowledge every flag at this chair (Ctrl+Shift+K); "
            "Ctrl+K acknowledges the most urgent one"
        )
        self.ack_button.clicked.connect(lambda _=False: self.sig_acknowledge_requested.emit(None))
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
        # One row, the pause widest: the IEC 60601-1-8 names and the pause countdown readable
        # whole at 1366×768 ("⊘ AUDIO PAUSED 1:59")
        buttons.addWidget(self.ack_button, 0, 0)
        buttons.addWidget(self.reset_button, 0, 1)
        buttons.addWidget(self.pause_button, 0, 2)
        buttons.setColumnStretch(2, 1)
        for b in (self.ack_button, self.pause_button, self.reset_button):
            b.setMinimumHeight(34)
            b.setStyleSheet("font-size: 9pt; padding: 2px 3px; min-height: 30px")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys are Ctrl+K / Ctrl+Shift+K
        lay.addLayout(buttons)
        self.rows: list[AlarmRow] = []
        self._keys: list[tuple[str, int, bool, str, str, datetime | None]] = []
        self._texts: list[str] = []
        self._pending_rows: tuple[list[ActiveAlarm], list[datetime | None]] | None = None
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
        when = self._raised_at
        keys = [
            (
                a.key,
                int(a.priority),
                a.acknowledged,
                a.state.value,
                a.message,
                when(a.key) if when is not None else None,
            )
            for a in alarms
        ]
        if keys == self._keys:
            return
        self._keys = keys
        self._texts = [flag_text(a, k[5]) for a, k in zip(alarms, keys, strict=True)]
        self.ack_button.setEnabled(any(not a.acknowledged for a in alarms))
        self.reset_button.setEnabled(any(a.state is AlarmState.LATCHED for a in alarms))
        self._pending_rows = (alarms, [k[5] for k in keys])
        if self.isVisible():
            self._build_rows()
        # hidden (another chair's tab): the rows are built when it is shown; building them at
        # every flag of a flag storm held the UI thread ~4 ms each time

    def _build_rows(self) -> None:
        pending = self._pending_rows
        if pending is None:
            return
        self._pending_rows = None
        alarms, raised = pending
        for r in self.rows:
            self.rows_box.removeWidget(r)
            r.deleteLater()
        self.rows = [AlarmRow(a, t) for a, t in zip(alarms, raised, strict=True)]
        for i, r in enumerate(self.rows):
            r.sig_acknowledge_requested.connect(self.sig_acknowledge_requested)
            self.rows_box.insertWidget(1 + i, r)
        self.none_label.setVisible(not self.rows)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._build_rows()

    def most_urgent_unacknowledged(self) -> str | None:
        """The key Ctrl+K acknowledges: the first unacknowledged flag (most urgent first)."""
        return next((a.key for a in self._active() if not a.acknowledged), None)

    def texts(self) -> list[str]:
        """The flags as the list says them (also while the chair is not on screen)."""
        return list(self._texts)

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
        self._repeat_unacknowledged()  # sounds repeat for every chair, shown or not
        if not self.isVisible():
            return  # the list is brought up to date by sig_alarms_changed and when shown
        self.refresh()
        t = time.monotonic() - self._t0
        for r in self.rows:
            hz = FLASH_HZ.get(r.alarm.priority)
            r.paint(True if hz is None else (t * hz) % 1.0 < 0.5)
        if self.pause_button.isChecked() or self.pause.until:
            self._update_pause_button()
