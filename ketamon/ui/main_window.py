"""The station window: the overview of every chair, then one tab per chair. The safety statement
and the signed-in user are always visible, with Lock / switch user (Ctrl+L) and Sign out
(Ctrl+Shift+L); the idle lock and the lock bar are in :mod:`ketamon.ui.lock`."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ketamon import SAFETY_STATEMENT
from ketamon.domain.thresholds import Priority
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.lock import AccessHooks, Glass, LockBar, LockController
from ketamon.ui.login import ChangePasswordDialog
from ketamon.ui.overview import OverviewWidget
from ketamon.ui.review import ReviewWidget
from ketamon.ui.sound import AlarmSounder


class MainWindow(QMainWindow):
    def __init__(self, title: str = "ketamon", user_label: str = "") -> None:
        super().__init__()
        self.setWindowTitle(title)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        top = QHBoxLayout()
        self.banner = QLabel(f"⚠ {SAFETY_STATEMENT}")
        self.banner.setObjectName("safetyBanner")
        self.banner.setWordWrap(True)
        top.addWidget(self.banner, 3)
        self.user_label = QLabel(user_label)
        self.user_label.setObjectName("safetyBanner")
        self.user_label.setWordWrap(True)
        top.addWidget(self.user_label, 2)
        self.lock_button = QPushButton("Lock / switch user")
        self.lock_button.setObjectName("lockButton")
        self.lock_button.setToolTip(
            "Lock the screen (Ctrl+L): the chairs keep running and alarming; anyone signs in "
            "again to enter anything (the same user or another)"
        )
        self.sign_out_button = QPushButton("Sign out")
        self.sign_out_button.setObjectName("signOutButton")
        self.sign_out_button.setToolTip(
            "Sign out (Ctrl+Shift+L): nobody is signed in; the chairs keep running and alarming"
        )
        self.password_button = QPushButton("My password")
        self.password_button.setObjectName("passwordButton")
        self.password_button.setToolTip("Change your own password")
        for b in (self.password_button, self.lock_button, self.sign_out_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setStyleSheet("padding: 2px 8px; min-height: 0px;")
            b.hide()  # until the app wires the access (set_access)
            top.addWidget(b)
        lay.addLayout(top)
        self._layout = lay
        #: another chair's unacknowledged high-priority flag, on every screen; a click (or
        #: Ctrl+G) goes to that chair. It sits beside the tabs: showing it moves nothing
        #: (a row above the tabs re-laid out all 16 overview cards at every flag)
        self.alert_banner = QPushButton("")
        self.alert_banner.setObjectName("otherChairAlert")
        self.alert_banner.setStyleSheet(
            "QPushButton#otherChairAlert { background: #ff3b30; color: #000; font-weight: bold;"
            " font-size: 11pt; border-radius: 0px; padding: 2px 10px; min-height: 0px;"
            " text-align: left; }"
        )
        self.alert_banner.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.alert_banner.clicked.connect(self._on_alert_banner_clicked)
        self.alert_banner.hide()
        self._alert_target: int | None = None
        self._alert_text = ""
        self.tabs = QTabWidget()
        self.tabs.setCornerWidget(self.alert_banner, Qt.Corner.TopRightCorner)
        self.lock_bar: LockBar | None = None
        self.glass: Glass | None = None
        self.access: LockController | None = None
        #: tabs that depend on the signed-in user's role (the clinic view, the admin tab)
        self.role_tabs: dict[str, QWidget] = {}
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.chair_views: list[ChairViewWidget] = []
        self.sounder: AlarmSounder | None = None
        self.overview: OverviewWidget | None = None
        self.review: ReviewWidget | None = None
        #: the window's own shortcuts: off while the screen is locked
        self.shortcuts: list[QShortcut] = []
        for i in range(10):
            sc = QShortcut(QKeySequence(f"Ctrl+{i}"), self)
            sc.activated.connect(lambda i=i: self.tabs.setCurrentIndex(i))
            self.shortcuts.append(sc)
        go = QShortcut(QKeySequence("Ctrl+G"), self)
        go.activated.connect(self._on_alert_banner_clicked)
        self.shortcuts.append(go)
        self.tabs.currentChanged.connect(self._on_tab_shown)
        self._overview_timer = QTimer(self)
        self._overview_timer.setInterval(1000)
        self._overview_timer.timeout.connect(self._on_overview_timer_timeout)
        self.resize(1366, 768)

    def set_chairs(self, views: list[ChairViewWidget]) -> None:
        self.overview = OverviewWidget([v.model for v in views])
        self.overview.sig_chair_selected.connect(lambda i: self.tabs.setCurrentIndex(i + 1))
        self.tabs.addTab(self.overview, "Overview (Ctrl+0)")
        for i, view in enumerate(views, 1):
            self.chair_views.append(view)
            self.tabs.addTab(view, f"{view.model.name} (Ctrl+{i})")
            view.start()
            view.model.sig_alarms_changed.connect(self.refresh_alert_banner)
        self._overview_timer.start()

    def add_review(self, review: ReviewWidget) -> None:
        """The review desk, after the chairs (Ctrl+R)."""
        self.review = review
        self.tabs.addTab(review, "Review (Ctrl+R)")
        self._pmf_timer = QTimer(self)
        self._pmf_timer.setInterval(60_000)
        self._pmf_timer.timeout.connect(self._on_pmf_timer_timeout)
        self._pmf_timer.start()
        self._on_pmf_timer_timeout()
        sc = QShortcut(QKeySequence("Ctrl+R"), self)
        sc.activated.connect(lambda: self.tabs.setCurrentWidget(review))
        self.shortcuts.append(sc)
        self.tabs.currentChanged.connect(self._on_tabs_current_changed)

    def _on_tabs_current_changed(self, index: int) -> None:
        review = self.review
        if review is not None and self.tabs.widget(index) is review:
            review.refresh()  # the list as of now, each time the desk is opened

    def _on_pmf_timer_timeout(self) -> None:
        """The REMS forms' counts on the overview, once a minute (read off the UI thread)."""
        review, overview = self.review, self.overview
        if review is None or overview is None:
            return

        def done(_p: object) -> None:
            c = review.pmf_counts
            overdue, warned, due = c.get("overdue", 0), c.get("warned", 0), c.get("due", 0)
            if overdue or warned or due:
                text = (
                    f"REMS forms: {overdue} overdue, {warned} near the deadline, {due} due "
                    "(Review, Ctrl+R)"
                )
            else:
                text = "REMS forms: none due"
            overview.set_pmf_counts(text, urgent=bool(overdue or warned))

        review.refresh().on_done(done)

    def _on_overview_timer_timeout(self) -> None:
        if self.overview is not None:
            # the cards refresh themselves a few at a time while the overview is shown
            for i, v in enumerate(self.chair_views, 1):
                worst = v.model.worst_alarm()
                marker = f" {worst.marker}" if worst is not None else ""
                self.tabs.setTabText(i, f"{v.model.name}{marker} (Ctrl+{i})")
        self.refresh_alert_banner()

    def _on_tab_shown(self, index: int) -> None:
        view = self.tabs.widget(index)
        if isinstance(view, ChairViewWidget):
            view.take_focus()  # the F-keys work at once, without a click on the chart
        self.refresh_alert_banner()

    def refresh_alert_banner(self) -> None:
        """Show the most urgent unacknowledged high-priority flag of any chair not on screen."""
        current = self.tabs.currentWidget()
        alerts: list[tuple[int, str, str]] = []
        for i, v in enumerate(self.chair_views, 1):
            if v is current:
                continue
            for a in v.model.active_alarms():
                if a.priority is Priority.HIGH and not a.acknowledged:
                    alerts.append((i, v.model.name, a.message.lstrip("* ")))
                    break
        if not alerts:
            self._alert_target = None
            if self.alert_banner.isVisible():
                self.alert_banner.hide()
            return
        i, name, message = alerts[0]
        more = f" (+{len(alerts) - 1})" if len(alerts) > 1 else ""
        self._alert_target = i
        text = f"*** HIGH · {name}: {message}{more}  ▶ Ctrl+G"
        if text != self._alert_text:
            self._alert_text = text
            fm = self.alert_banner.fontMetrics()
            width = max(200, self.width() // 2)
            self.alert_banner.setText(fm.elidedText(text, Qt.TextElideMode.ElideMiddle, width))
            self.alert_banner.setToolTip(text)
            bar = self.tabs.tabBar().height() or self.tabs.tabBar().sizeHint().height()
            self.alert_banner.setFixedHeight(max(24, bar - 10))  # within the tabs' row
        if not self.alert_banner.isVisible():
            self.alert_banner.show()

    def _on_alert_banner_clicked(self) -> None:
        if self._alert_target is not None:
            self.tabs.setCurrentIndex(self._alert_target)

    # ---- sign-out, switch user and the idle lock (issue 13) ------------------------------------
    def set_access(self, hooks: AccessHooks) -> LockController:
        """Wire Lock / switch user, Sign out and the idle lock; the lock's timer starts here."""
        bar = LockBar(hooks.break_glass_min)
        self._layout.insertWidget(self._layout.indexOf(self.tabs), bar)
        self.lock_bar, self.glass = bar, Glass(self.tabs)
        access = LockController(
            hooks,
            bar,
            self.glass,
            alarms=self._unacknowledged,
            acknowledge=lambda i: self.chair_views[i].model.acknowledge_at_lock_screen(),
            set_masked=self._set_masked,
            on_user_line=self.set_user_line,
            parent=self,
        )
        self.access = access
        access.sig_locked.connect(self._on_locked)
        access.sig_user_changed.connect(self._on_unlocked)
        self.lock_button.clicked.connect(lambda: access.lock())
        self.sign_out_button.clicked.connect(lambda: access.lock(sign_out=True))
        for keys, out in (("Ctrl+L", False), ("Ctrl+Shift+L", True)):
            sc = QShortcut(QKeySequence(keys), self)
            sc.activated.connect(
                lambda out=out: None if access.locked else access.lock(sign_out=out)
            )
            self.shortcuts.append(sc)
        for b in (self.lock_button, self.sign_out_button):
            b.show()
        change = hooks.change_password
        if change is not None:
            self.password_button.clicked.connect(lambda: self.change_password_dialog().exec())
            self.password_button.show()
        access.start()
        return access

    def change_password_dialog(self) -> ChangePasswordDialog:
        """The signed-in user's own password change (refused while locked)."""
        access = self.access
        assert access is not None and access.hooks.change_password is not None
        return ChangePasswordDialog(access.hooks.change_password, self)

    def set_user_line(self, text: str, emergency: bool = False) -> None:
        sounder = self.sounder
        line = text + (f" · {sounder.status}" if sounder is not None else "")
        if line != self.user_label.text():
            self.user_label.setText(line)
            self.user_label.setStyleSheet(
                "background: #ff3b30; color: #000; font-weight: bold;" if emergency else ""
            )

    def _unacknowledged(self) -> list[tuple[int, str, Priority, str]]:
        out = []
        for i, v in enumerate(self.chair_views):
            flags = [a for a in v.model.active_alarms() if not a.acknowledged]
            if flags:
                worst = max(flags, key=lambda a: a.priority)
                out.append((i, v.model.name, worst.priority, worst.message.lstrip("* ")))
        return out

    def _set_masked(self, masked: bool) -> None:
        for v in self.chair_views:
            v.model.mask_names = masked
        if self.overview is not None:
            self.overview.refresh()

    def _on_locked(self) -> None:
        for sc in self.shortcuts:
            sc.setEnabled(False)
        current = self.tabs.currentWidget()
        chair = isinstance(current, ChairViewWidget)
        masked = self.access is not None and self.access.hooks.mask_names
        if self.overview is not None and (masked or not (chair or current is self.overview)):
            # a record (review, admin, clinic) never shows behind the lock: the live chairs do
            self.tabs.setCurrentWidget(self.overview)
        for b in (self.lock_button, self.sign_out_button, self.password_button):
            b.setEnabled(False)

    def _on_unlocked(self) -> None:
        for sc in self.shortcuts:
            sc.setEnabled(True)
        for b in (self.lock_button, self.sign_out_button, self.password_button):
            b.setEnabled(True)

    def set_role_tab(self, key: str, widget: QWidget | None, title: str = "") -> None:
        """Show ``widget`` as the role-dependent tab ``key`` (None: remove it)."""
        old = self.role_tabs.pop(key, None)
        if old is not None and old is not widget:
            i = self.tabs.indexOf(old)
            if i >= 0:
                self.tabs.removeTab(i)
            stop = getattr(old, "stop", None)
            if callable(stop):
                stop()
            old.deleteLater()
        if widget is not None:
            self.role_tabs[key] = widget
            if self.tabs.indexOf(widget) < 0:
                self.tabs.addTab(widget, title)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        handle = self.windowHandle()
        if self.access is not None and handle is not None:
            self.access.watch(handle)  # the idle clock counts this window's input

    def stop(self) -> None:
        if self.access is not None:
            self.access.stop()
        for w in self.role_tabs.values():
            stop = getattr(w, "stop", None)
            if callable(stop):
                stop()
        self._overview_timer.stop()
        if self.overview is not None:
            self.overview.stop()
        timer = getattr(self, "_pmf_timer", None)
        if timer is not None:
            timer.stop()
        if self.sounder is not None:
            self.sounder.close()
        for v in self.chair_views:
            v.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop()
        super().closeEvent(event)
