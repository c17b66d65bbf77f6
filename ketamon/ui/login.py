"""Sign-in at start, and the offer to resume open sessions. Widgets only: the checks are
injected as callables by the app wiring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ketamon import SAFETY_STATEMENT

U = TypeVar("U")


class LoginDialog(QDialog, Generic[U]):
    """Asks for user name and password; ``authenticate`` returns the user or raises with a
    message to show (wrong password, disabled account, …)."""

    def __init__(
        self,
        authenticate: Callable[[str, str], U],
        *,
        title: str = "ketamon — sign in",
        hint: str = "",
        emergency: Callable[[str, str, str], U] | None = None,
        emergency_minutes: float = 60.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(420)
        self._authenticate = authenticate
        self._emergency = emergency
        self.user: U | None = None
        lay = QVBoxLayout(self)
        banner = QLabel(SAFETY_STATEMENT)
        banner.setWordWrap(True)
        banner.setObjectName("safetyBanner")
        lay.addWidget(banner)
        form = QFormLayout()
        self.username = QLineEdit()
        self.username.setObjectName("username")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("User name", self.username)
        form.addRow("Password", self.password)
        self.break_glass = QCheckBox(
            f"Emergency access (break-glass): physician rights for {emergency_minutes:g} min, "
            "flagged for an admin's review"
        )
        self.break_glass.setObjectName("breakGlass")
        self.reason = QLineEdit()
        self.reason.setObjectName("breakGlassReason")
        self.reason.setPlaceholderText("What is happening, and why no physician can sign in")
        form.addRow(self.break_glass)
        form.addRow("Reason", self.reason)
        self._form = form
        self.break_glass.toggled.connect(self._on_break_glass_toggled)
        self.break_glass.setVisible(emergency is not None)
        form.setRowVisible(self.break_glass, emergency is not None)
        form.setRowVisible(self.reason, False)
        lay.addLayout(form)
        if hint:
            h = QLabel(hint)
            h.setWordWrap(True)
            lay.addWidget(h)
        self.error = QLabel("")
        self.error.setObjectName("loginError")
        self.error.setStyleSheet("color: #ff6b6b; font-weight: bold")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Sign in")
        buttons.accepted.connect(self._on_buttons_accepted)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.username.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_break_glass_toggled(self, on: bool) -> None:
        self._form.setRowVisible(self.reason, on)
        self.ok.setText("Sign in for an emergency" if on else "Sign in")
        if on:
            self.reason.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_buttons_accepted(self) -> None:
        name, pw = self.username.text().strip(), self.password.text()
        if not name or not pw:
            self.error.setText("Enter your user name and password.")
            return
        emergency = self._emergency if self.break_glass.isChecked() else None
        try:
            if emergency is not None:
                self.user = emergency(name, pw, self.reason.text())
            else:
                self.user = self._authenticate(name, pw)
        except Exception as exc:  # the service's message is meant for the user
            self.password.clear()
            self.error.setText(str(exc) or "Sign-in failed.")
            return
        self.accept()


class ResumeSessionsDialog(QDialog):
    """Lists sessions left open (after a crash or restart) and asks which to resume."""

    def __init__(self, sessions: Sequence[tuple[int, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open sessions found")
        lay = QVBoxLayout(self)
        text = QLabel(
            "These sessions were not ended (the app was closed or the computer restarted). "
            "Resume them to keep recording into the same record:"
        )
        text.setWordWrap(True)
        lay.addWidget(text)
        self.boxes: dict[int, QCheckBox] = {}
        for sid, label in sessions:
            box = QCheckBox(label)
            box.setChecked(True)
            self.boxes[sid] = box
            lay.addWidget(box)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Resume selected")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Not now")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def selected(self) -> list[int]:
        return [sid for sid, box in self.boxes.items() if box.isChecked()]


class ChangePasswordDialog(QDialog):
    """The signed-in user changes their own password: the current one, the new one twice.
    ``change`` checks and saves (raising with a message to show)."""

    def __init__(self, change: Callable[[str, str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Change my password")
        self.setMinimumWidth(380)
        self._change = change
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.current = QLineEdit()
        self.new = QLineEdit()
        self.repeat = QLineEdit()
        for f in (self.current, self.new, self.repeat):
            f.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("Current password", self.current)
        form.addRow("New password", self.new)
        form.addRow("New password again", self.repeat)
        lay.addLayout(form)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #ff6b6b; font-weight: bold")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Change")
        buttons.accepted.connect(self._on_buttons_accepted)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.current.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_buttons_accepted(self) -> None:
        if self.new.text() != self.repeat.text():
            self.error.setText("The new passwords differ.")
            return
        try:
            self._change(self.current.text(), self.new.text())
        except Exception as exc:  # the service's message is meant for the user
            self.error.setText(str(exc) or "Not changed.")
            for f in (self.current, self.new, self.repeat):
                f.clear()
            return
        self.accept()
