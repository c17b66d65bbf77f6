"""The admin tab (issue 13): accounts, the site profile and the clinic's threshold profile.
Widgets only: every request goes through :class:`ketamon.presenters.admin.AdminPresenter`,
which checks the role and the reason and runs the write on the command thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ketamon.presenters.admin import AdminPresenter, Field
from ketamon.presenters.runner import Pending

ROLES = ("nurse", "physician", "admin", "auditor", "therapist")


def _line(name: str, placeholder: str = "", password: bool = False) -> QLineEdit:
    e = QLineEdit()
    e.setObjectName(name)
    e.setPlaceholderText(placeholder)
    if password:
        e.setEchoMode(QLineEdit.EchoMode.Password)
    return e


def _status() -> QLabel:
    s = QLabel("")
    s.setWordWrap(True)
    s.setObjectName("adminStatus")
    return s


def _show(label: QLabel, p: Pending[Any], ok_text: str) -> None:
    if p.ok:
        label.setStyleSheet("color: #7ddc7d; font-weight: bold")
        label.setText(ok_text)
    else:
        label.setStyleSheet("color: #ff6b6b; font-weight: bold")
        label.setText("\n".join(p.reasons) or "Not done.")


class UsersPage(QWidget):
    def __init__(self, model: AdminPresenter) -> None:
        super().__init__()
        self.model = model
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(
            ["User name", "Name", "Role", "Status", "Last sign-in"]
        )
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        add = QGroupBox("Add a user")
        f = QFormLayout(add)
        self.username = _line("adminNewUsername", "e.g. jsmith")
        self.full_name = _line("adminNewFullName", "as printed with a signature")
        self.role = QComboBox()
        self.role.addItems(ROLES)
        self.credentials = _line("adminNewCredentials", "RN, MD …")
        self.password = _line("adminNewPassword", "", password=True)
        self.add_reason = _line("adminAddReason", "why (kept in the audit trail)")
        self.add_button = QPushButton("Add user")
        for label, w in (
            ("User name", self.username),
            ("Full name", self.full_name),
            ("Role", self.role),
            ("Credentials", self.credentials),
            ("Password", self.password),
            ("Reason", self.add_reason),
        ):
            f.addRow(label, w)
        f.addRow(self.add_button)
        row.addWidget(add, 1)
        change = QGroupBox("The selected user")
        g = QFormLayout(change)
        self.selected = QLabel("Select a user in the list.")
        self.new_password = _line("adminResetPassword", "a new password", password=True)
        self.reason = _line("adminUserReason", "why (kept in the audit trail)")
        buttons = QHBoxLayout()
        self.disable_button = QPushButton("Disable")
        self.unlock_button = QPushButton("Unlock")
        self.reset_button = QPushButton("Reset password")
        for b in (self.disable_button, self.unlock_button, self.reset_button):
            buttons.addWidget(b)
        g.addRow(self.selected)
        g.addRow("New password", self.new_password)
        g.addRow("Reason", self.reason)
        g.addRow(buttons)
        row.addWidget(change, 1)
        lay.addLayout(row)
        self.status = _status()
        lay.addWidget(self.status)
        self.add_button.clicked.connect(self._on_add_clicked)
        self.disable_button.clicked.connect(
            lambda: self._do(lambda u: model.disable_user(u, self.reason.text()), "disabled")
        )
        self.unlock_button.clicked.connect(
            lambda: self._do(lambda u: model.unlock_user(u, self.reason.text()), "unlocked")
        )
        self.reset_button.clicked.connect(
            lambda: self._do(
                lambda u: model.reset_password(u, self.new_password.text(), self.reason.text()),
                "given a new password",
            )
        )
        self.table.itemSelectionChanged.connect(self._on_selection_changed)

    def refresh(self) -> Pending[Any]:
        def done(p: Pending[Any]) -> None:
            if not p.ok:
                _show(self.status, p, "")
                return
            rows = list(p.result or [])
            self.table.setRowCount(len(rows))
            for i, u in enumerate(rows):
                status = "active" if u.active else "disabled"
                if u.locked:
                    status += ", LOCKED"
                if u.is_demo:
                    status += ", demo"
                for j, text in enumerate(
                    (u.username, u.full_name, u.role.value, status, u.last_login_at or "")
                ):
                    self.table.setItem(i, j, QTableWidgetItem(str(text)))

        return self.model.users().on_done(done)

    def selected_username(self) -> str:
        row = self.table.currentRow()
        item = self.table.item(row, 0) if row >= 0 else None
        return item.text() if item is not None else ""

    def select(self, username: str) -> None:
        for i in range(self.table.rowCount()):
            item = self.table.item(i, 0)
            if item is not None and item.text() == username:
                self.table.selectRow(i)
                return

    def _on_selection_changed(self) -> None:
        name = self.selected_username()
        self.selected.setText(f"<b>{name}</b>" if name else "Select a user in the list.")

    def _do(self, call: Any, done_text: str) -> Pending[Any] | None:
        name = self.selected_username()
        if not name:
            self.status.setText("Select a user in the list first.")
            return None
        p: Pending[Any] = call(name)

        def done(q: Pending[Any]) -> None:
            _show(self.status, q, f"{name}: {done_text} (audited).")
            if q.ok:
                self.new_password.clear()
                self.reason.clear()
                self.refresh().on_done(lambda _p: self.select(name))

        return p.on_done(done)

    def _on_add_clicked(self) -> Pending[Any]:
        p = self.model.add_user(
            self.username.text(),
            self.full_name.text(),
            self.role.currentText(),
            self.password.text(),
            self.credentials.text(),
            self.add_reason.text(),
        )

        def done(q: Pending[Any]) -> None:
            _show(self.status, q, f"{self.username.text().strip()}: added (audited).")
            if q.ok:
                for e in (self.username, self.full_name, self.credentials, self.password):
                    e.clear()
                self.add_reason.clear()
                self.refresh()

        return p.on_done(done)


class ProfilePage(QWidget):
    """A profile's settings as a table (value editable), a reason and Save."""

    def __init__(self, title: str, note: str, load: Any, save: Any) -> None:
        super().__init__()
        self._load, self._save = load, save
        self._texts: dict[str, str] = {}
        lay = QVBoxLayout(self)
        self.path = QLabel(title)
        self.path.setWordWrap(True)
        lay.addWidget(self.path)
        n = QLabel(note)
        n.setWordWrap(True)
        lay.addWidget(n)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Setting", "Value", "Source"])
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Reason"))
        self.reason = _line("adminProfileReason", "why (kept in the audit trail)")
        row.addWidget(self.reason, 1)
        self.save_button = QPushButton("Save")
        row.addWidget(self.save_button)
        lay.addLayout(row)
        self.status = _status()
        lay.addWidget(self.status)
        self.save_button.clicked.connect(self.save)

    def refresh(self) -> Pending[Any]:
        def done(p: Pending[Any]) -> None:
            if not p.ok:
                _show(self.status, p, "")
                return
            path, fields = p.result or ("", [])
            self.path.setText(f"Stored in <b>{path}</b>")
            self._texts = {f.name: f.text for f in fields}
            self._fill(fields)

        pending: Pending[Any] = self._load()
        return pending.on_done(done)

    def _fill(self, fields: list[Field]) -> None:
        self.table.setRowCount(len(fields))
        for i, f in enumerate(fields):
            name = QTableWidgetItem(f.name)
            name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
            src = QTableWidgetItem(f.source)
            src.setFlags(src.flags() & ~Qt.ItemFlag.ItemIsEditable)
            src.setToolTip(f.source)
            self.table.setItem(i, 0, name)
            self.table.setItem(i, 1, QTableWidgetItem(f.text))
            self.table.setItem(i, 2, src)

    def set_value(self, name: str, text: str) -> None:
        for i in range(self.table.rowCount()):
            item = self.table.item(i, 0)
            if item is not None and item.text() == name:
                value = self.table.item(i, 1)
                if value is not None:
                    value.setText(text)
                return
        raise KeyError(name)

    def changed(self) -> dict[str, str]:
        out = {}
        for i in range(self.table.rowCount()):
            name, value = self.table.item(i, 0), self.table.item(i, 1)
            if name is None or value is None:
                continue
            if value.text() != self._texts.get(name.text()):
                out[name.text()] = value.text()
        return out

    def save(self) -> Pending[Any]:
        changed = self.changed()
        p: Pending[Any] = self._save(changed, self.reason.text())

        def done(q: Pending[Any]) -> None:
            _show(self.status, q, f"Saved {len(changed)} change(s) (audited).")
            if q.ok:
                self.reason.clear()
                self.refresh()

        return p.on_done(done)


class EmergencyPage(QWidget):
    """Break-glass sign-ins: an admin reviews each one (what they found), which takes it off
    the review board's flag."""

    COLUMNS = ("Started", "User", "Role", "Station", "Reason", "Until", "Reviewed")

    def __init__(self, model: AdminPresenter) -> None:
        super().__init__()
        self.model = model
        lay = QVBoxLayout(self)
        note = QLabel(
            "Emergency (break-glass) sign-ins gave physician rights for a limited time. Review "
            "each one: what happened, and whether it was justified."
        )
        note.setWordWrap(True)
        lay.addWidget(note)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.note = QLineEdit()
        self.note.setPlaceholderText("What the review found (kept in the audit trail)")
        self.review_button = QPushButton("Mark reviewed")
        self.review_button.clicked.connect(self.review_selected)
        row.addWidget(self.note, 1)
        row.addWidget(self.review_button)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self._ids: list[int] = []

    def refresh(self) -> Pending[Any]:
        def done(p: Pending[Any]) -> None:
            if not p.ok:
                _show(self.status, p, "")
                return
            rows = list(p.result or [])
            self._ids = [int(e.id) for e in rows]
            self.table.setRowCount(len(rows))
            for i, e in enumerate(rows):
                reviewed = (
                    f"{e.reviewed_by}: {e.review_note}" if e.reviewed else "⚠ awaiting review"
                )
                cells = (
                    e.started_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                    e.full_name,
                    e.role,
                    e.station,
                    e.reason,
                    e.expires_at.astimezone().strftime("%H:%M"),
                    reviewed,
                )
                for j, text in enumerate(cells):
                    self.table.setItem(i, j, QTableWidgetItem(str(text)))

        return self.model.emergencies().on_done(done)

    def review_selected(self) -> Pending[Any] | None:
        row = self.table.currentRow()
        if not 0 <= row < len(self._ids):
            self.status.setText("Select an emergency sign-in first.")
            return None
        p = self.model.review_emergency(self._ids[row], self.note.text())

        def done(q: Pending[Any]) -> None:
            _show(self.status, q, "Reviewed (audited).")
            if q.ok:
                self.note.clear()
                self.refresh()

        return p.on_done(done)


class AdminWidget(QWidget):
    """The admin tab: Users, Site profile, Thresholds."""

    def __init__(self, model: AdminPresenter) -> None:
        super().__init__()
        self.model = model
        lay = QVBoxLayout(self)
        head = QLabel(
            "Admin: accounts and the clinic's profiles. Every change is kept in the audit trail "
            "with the old and new value and your reason."
        )
        head.setWordWrap(True)
        lay.addWidget(head)
        self.pages = QTabWidget()
        self.users = UsersPage(model)
        self.site = ProfilePage(
            "Site profile",
            "Timings, REMS and HCP details, the idle lock, lockout and retention. The idle lock "
            "changes at once on this station; the rest applies from each station's next start.",
            model.site_fields,
            model.save_site,
        )
        self.thresholds = ProfilePage(
            "Threshold profile",
            "The clinic's limits (an empty low or high removes that bound). Checked as "
            "'ketamon thresholds check' does; sessions started after each station's next start "
            "use them (a running session keeps its limits).",
            model.threshold_fields,
            model.save_thresholds,
        )
        self.pages.addTab(self.users, "Users")
        self.pages.addTab(self.site, "Site profile")
        self.pages.addTab(self.thresholds, "Thresholds")
        self.emergency = EmergencyPage(model)
        self.pages.addTab(self.emergency, "Emergency access")
        lay.addWidget(self.pages, 1)

    def refresh(self) -> None:
        for page in (self.users, self.site, self.thresholds, self.emergency):
            page.refresh()
