"""The idle lock, sign-out and switch user (clinical.md §8 43; issue 13).

Locked, the window keeps showing the live chairs (the overview, or the chair on screen): the
vitals, the session clocks, the due list and every flag, still flashing and sounding. A lock
bar above them asks for a sign-in (the same user or another; break-glass too) and offers
ACKNOWLEDGED for each chair with an unacknowledged flag, recorded "at lock screen". A pane of
glass over the chairs takes every click; the keyboard stays in the lock bar. Entries are also
refused by the station itself while it is locked (``Station.current_user``), so the lock does
not rest on widgets alone.

Widgets only: what locking, signing in and acknowledging do is injected (:class:`AccessHooks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import shiboken6
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.thresholds import Priority

#: input that counts as someone at the station (the idle clock starts again)
_INPUT = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
    }
)


@dataclass
class AccessHooks:
    """What the lock does, wired by the app (``ketamon.app.build_window``)."""

    #: the window's "Signed in: ..." line as of now (break-glass and its end included)
    user_line: Callable[[], str]
    #: a break-glass sign-in is in force (the line is shown in red)
    emergency: Callable[[], bool]
    lock: Callable[[], None]
    sign_out: Callable[[], None]
    #: (username, password, break-glass reason or None) -> the user; raises with the message
    unlock: Callable[[str, str, str | None], object]
    #: (current password, new password) for the signed-in user; raises with the message
    change_password: Callable[[str, str], None] | None = None
    idle_lock_min: float = 5.0
    mask_names: bool = False
    break_glass_min: float = 60.0
    #: seconds, monotonic (a test gives its own)
    idle_clock: Callable[[], float] = field(default=time.monotonic)


class Glass(QWidget):
    """A tinted pane over the live chairs while locked: they show through, clicks stop here."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("lockGlass")
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setCursor(Qt.CursorShape.ForbiddenCursor)
        parent.installEventFilter(self)  # it covers its parent, whatever its size
        self.setGeometry(parent.rect())
        self.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        parent = self.parentWidget()
        if event.type() == QEvent.Type.Resize and parent is not None and watched is parent:
            self.setGeometry(parent.rect())
        return False

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0, 60))
        p.end()

    # clicks and the wheel stop here: nothing behind the glass is pressed or scrolled
    def mousePressEvent(self, event: QMouseEvent) -> None:
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.accept()


class LockBar(QFrame):
    """Above the chairs while locked: who was signed in, ACKNOWLEDGED per chair, sign-in."""

    sig_sign_in = Signal(str, str, object)  # username, password, break-glass reason or None
    sig_acknowledge = Signal(int)  # chair index

    def __init__(self, break_glass_min: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lockBar")
        self.setStyleSheet(
            "QFrame#lockBar { background: #1d2733; border-bottom: 2px solid #ffcc00; }"
            " QLabel#lockTitle { color: #ffcc00; font-weight: bold; font-size: 12pt; }"
            " QLabel#lockError { color: #ff6b6b; font-weight: bold; }"
            " QPushButton#lockAck { background: #3a3a00; color: #ffffff; padding: 2px 8px; }"
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 4, 10, 4)
        lay.setSpacing(3)
        self.title = QLabel("")
        self.title.setObjectName("lockTitle")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.acks_row = QHBoxLayout()
        self.acks_row.setSpacing(6)
        self.acks_row.setAlignment(Qt.AlignmentFlag.AlignLeft)
        lay.addLayout(self.acks_row)
        self.ack_buttons: list[QPushButton] = []
        self._ack_key: tuple[Any, ...] = ()
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(QLabel("User name"))
        self.username = QLineEdit()
        self.username.setObjectName("lockUsername")
        self.username.setMaximumWidth(160)
        row.addWidget(self.username)
        row.addWidget(QLabel("Password"))
        self.password = QLineEdit()
        self.password.setObjectName("lockPassword")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setMaximumWidth(160)
        row.addWidget(self.password)
        self.break_glass = QCheckBox(f"Emergency access ({break_glass_min:g} min)")
        self.break_glass.setObjectName("lockBreakGlass")
        row.addWidget(self.break_glass)
        self.reason = QLineEdit()
        self.reason.setObjectName("lockBreakGlassReason")
        self.reason.setPlaceholderText("What is happening, and why no physician can sign in")
        self.reason.hide()
        row.addWidget(self.reason, 1)
        self.sign_in = QPushButton("Sign in")
        self.sign_in.setObjectName("lockSignIn")
        self.sign_in.setDefault(True)
        row.addWidget(self.sign_in)
        self.error = QLabel("")
        self.error.setObjectName("lockError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("background: transparent;")
        row.addWidget(self.error, 1)
        lay.addLayout(row)
        self.break_glass.toggled.connect(self._on_break_glass_toggled)
        self.sign_in.clicked.connect(self._on_sign_in_clicked)
        self.username.returnPressed.connect(self._on_sign_in_clicked)
        self.password.returnPressed.connect(self._on_sign_in_clicked)
        self.reason.returnPressed.connect(self._on_sign_in_clicked)
        self.hide()

    def _on_break_glass_toggled(self, on: bool) -> None:
        self.reason.setVisible(on)
        self.sign_in.setText("Sign in for an emergency" if on else "Sign in")

    def _on_sign_in_clicked(self) -> None:
        name, pw = self.username.text().strip(), self.password.text()
        if not name or not pw:
            self.error.setText("Enter your user name and password.")
            return
        why = self.reason.text() if self.break_glass.isChecked() else None
        self.sig_sign_in.emit(name, pw, why)

    def clear(self) -> None:
        for w in (self.username, self.password, self.reason):
            w.clear()
        self.break_glass.setChecked(False)
        self.error.setText("")

    def set_alarms(self, rows: Sequence[tuple[int, str, Priority, str]]) -> None:
        """One ACKNOWLEDGED button per chair with an unacknowledged flag: (index, chair, worst
        priority, its message)."""
        key = tuple(rows)
        if key == self._ack_key:
            return
        self._ack_key = key
        for b in self.ack_buttons:
            self.acks_row.removeWidget(b)
            b.deleteLater()
        self.ack_buttons = []
        for i, chair, priority, message in rows:
            b = QPushButton(f"✔ ACKNOWLEDGED · {chair}: {priority.marker} {message}")
            b.setObjectName("lockAck")
            b.setToolTip(
                f"Acknowledge every flag at {chair} from the lock screen (recorded as "
                "'acknowledged at lock screen')"
            )
            b.clicked.connect(lambda _=False, i=i: self.sig_acknowledge.emit(i))
            self.acks_row.addWidget(b)
            self.ack_buttons.append(b)


class LockController(QObject):
    """Engages the lock after ``idle_lock_min`` without input, on Lock or Sign out; lifts it on
    a sign-in. Its timer (1 s) also keeps the window's user line current."""

    sig_locked = Signal()
    sig_user_changed = Signal()  # someone signed in at the lock (the same user or another)

    def __init__(
        self,
        hooks: AccessHooks,
        bar: LockBar,
        glass: Glass,
        *,
        alarms: Callable[[], list[tuple[int, str, Priority, str]]],
        acknowledge: Callable[[int], Any],
        set_masked: Callable[[bool], None],
        on_user_line: Callable[[str, bool], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.hooks, self.bar, self.glass = hooks, bar, glass
        self._alarms, self._acknowledge = alarms, acknowledge
        self._set_masked, self._on_user_line = set_masked, on_user_line
        self.locked = False
        self.last_input = hooks.idle_clock()
        self._watched: QObject | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.tick)
        bar.sig_sign_in.connect(self._on_sign_in)
        bar.sig_acknowledge.connect(self._on_acknowledge)

    # ---- input -------------------------------------------------------------------------------
    def watch(self, window: QObject) -> None:
        """Count input to ``window`` (its QWindow: input only, not every event of the app)."""
        self._unwatch()
        self._watched = window
        window.installEventFilter(self)

    def _unwatch(self) -> None:
        w, self._watched = self._watched, None
        if w is not None and shiboken6.isValid(w):  # a hidden window may have dropped its handle
            w.removeEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        t = event.type()
        if t in _INPUT:
            self.last_input = self.hooks.idle_clock()
        if self.locked and t in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            # the keyboard stays in the lock bar (Tab never walks into a chair's form)
            from PySide6.QtWidgets import QApplication

            focus = QApplication.focusWidget()
            if focus is None or not self.bar.isAncestorOf(focus):
                self.bar.username.setFocus(Qt.FocusReason.OtherFocusReason)
                return isinstance(event, QKeyEvent)
        return False

    def note_input(self) -> None:
        self.last_input = self.hooks.idle_clock()

    def idle_s(self) -> float:
        return self.hooks.idle_clock() - self.last_input

    # ---- lock and sign-in -----------------------------------------------------------------------
    def start(self) -> None:
        self.last_input = self.hooks.idle_clock()
        self._timer.start()
        self.tick()

    def stop(self) -> None:
        self._timer.stop()
        self._unwatch()

    def tick(self) -> None:
        if not self.locked and self.idle_s() >= self.hooks.idle_lock_min * 60.0:
            self.lock()
        if self.locked:
            self.bar.set_alarms(self._alarms())
        self._on_user_line(self.hooks.user_line(), self.hooks.emergency())

    def lock(self, *, sign_out: bool = False) -> None:
        (self.hooks.sign_out if sign_out else self.hooks.lock)()
        line = self.hooks.user_line()
        self.bar.title.setText(
            "SCREEN LOCKED: the chairs keep running and alarming. Sign in to enter anything "
            "(the same user or another)."
            + ("" if sign_out else f" {line.replace('Locked · ', '')}.")
        )
        self.bar.clear()
        self.locked = True
        self._set_masked(self.hooks.mask_names)
        self.bar.set_alarms(self._alarms())
        self.bar.show()
        self.glass.raise_()
        self.glass.show()
        self.bar.username.setFocus(Qt.FocusReason.OtherFocusReason)
        self._on_user_line(line, self.hooks.emergency())
        self.sig_locked.emit()

    def _on_sign_in(self, username: str, password: str, why: object) -> None:
        try:
            self.hooks.unlock(username, password, why if isinstance(why, str) else None)
        except Exception as exc:  # the service's message is meant for the user
            self.bar.password.clear()
            self.bar.error.setText(str(exc) or "Sign-in failed.")
            return
        self.locked = False
        self.bar.clear()
        self.bar.hide()
        self.glass.hide()
        self._set_masked(False)
        self.last_input = self.hooks.idle_clock()
        self._on_user_line(self.hooks.user_line(), self.hooks.emergency())
        self.sig_user_changed.emit()

    def _on_acknowledge(self, index: int) -> None:
        pending = self._acknowledge(index)
        on_done = getattr(pending, "on_done", None)
        if callable(on_done):

            def done(p: Any) -> None:
                reasons = list(getattr(p, "reasons", []) or [])
                self.bar.error.setText("\n".join(reasons))
                self.bar.set_alarms(self._alarms())

            on_done(done)
