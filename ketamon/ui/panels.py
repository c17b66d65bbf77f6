"""Entry panels shown in place of the chart while the nurse records something.

Each panel gives its entry to the chair's presenter, which runs it off the UI thread; while it is
being saved the Save button waits, a refusal shows its reasons in red and keeps what was typed,
and ``sig_done`` is emitted once the entry is recorded (or the panel cancelled). Panels belong to
one session: the chair view builds new, empty ones for the next patient.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.discharge import CHECKLIST_LABELS
from ketamon.domain.dosing import ORAL_FORMS
from ketamon.domain.record import EntryKind, PatientInfo, Plan
from ketamon.domain.scales import CADSS_ITEMS, MOAAS_LEVELS, MOAAS_SOURCE, cadss_item_label
from ketamon.domain.session_rules import PrescriberDecision, Treatment
from ketamon.domain.side_effects import BP_SYMPTOMS, SIDE_EFFECTS, Severity
from ketamon.presenters.chair import ChairPresenter, RecordLine, Refused, SideEffectInput
from ketamon.presenters.course import CourseActions
from ketamon.presenters.runner import Pending, chain
from ketamon.presenters.views import SCENARIO_NAMES

BIG = "min-height: 44px; font-size: 13pt;"


class Panel(QWidget):
    """Base: a title, a body, an error line, and Save/Cancel buttons."""

    sig_done = Signal()
    title = ""

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.saving: Pending[Any] | None = None
        outer = QVBoxLayout(self)
        head = QLabel(f"<b>{self.title}</b>")
        head.setStyleSheet("font-size: 15pt")
        outer.addWidget(head)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        self.body = QVBoxLayout(body)
        scroll.setWidget(body)
        self.scroll_area = scroll
        outer.addWidget(scroll, 1)
        self.error = QLabel("")
        self.error.setObjectName("panelError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff6b6b; font-weight: bold; font-size: 12pt")
        outer.addWidget(self.error)
        row = QHBoxLayout()
        row.addStretch(1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setStyleSheet(BIG)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.save_button = QPushButton(self.save_text())
        self.save_button.setObjectName("saveButton")
        self.save_button.setStyleSheet(BIG + "font-weight: bold;")
        self.save_button.clicked.connect(self._on_save_clicked)
        row.addWidget(self.cancel_button)
        row.addWidget(self.save_button)
        outer.addLayout(row)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        save = QShortcut(QKeySequence("Ctrl+Return"), self)
        save.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        save.activated.connect(self._on_save_clicked)

    def save_text(self) -> str:
        return "Save"

    def refresh(self) -> None:
        """Called when the panel is shown again: from the top, no old error."""
        self.error.setText("")
        self.scroll_area.verticalScrollBar().setValue(0)

    def first_field(self) -> QWidget | None:
        """Where typing goes when the panel opens (default: the first field that takes the
        keyboard focus, in the form's tab order)."""
        body = self.scroll_area.widget()
        if body is None:
            return None
        w = self.nextInFocusChain()
        for _ in range(2000):  # the chain is in creation order: the form's fields come first
            if w is None or w is self:
                break
            if (
                body.isAncestorOf(w)
                and w.isVisibleTo(self)
                and w.isEnabled()
                and w.focusPolicy() & Qt.FocusPolicy.TabFocus
                and isinstance(w, QLineEdit | QPlainTextEdit | QAbstractSpinBox | QComboBox)
            ):
                return w
            w = w.nextInFocusChain()
        return None

    def focus_first(self) -> None:
        w = self.first_field()
        (w if w is not None else self).setFocus(Qt.FocusReason.TabFocusReason)
        if isinstance(w, QAbstractSpinBox):
            w.selectAll()  # typing replaces the "—" of a field not entered yet

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Enter saves (Ctrl+Enter in a multi-line note, where Enter starts a new line)."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.save_button.isVisible():
            self._on_save_clicked()
            return
        super().keyPressEvent(event)

    def save(self) -> Pending[Any] | None:
        """Give the entry to the presenter; raise :class:`Refused` for what is wrong at once."""
        raise NotImplementedError

    def show_reasons(self, reasons: list[str]) -> None:
        self.error.setText("\n".join(f"• {r}" for r in reasons))

    def _on_save_clicked(self) -> None:
        if self.saving is not None and not self.saving.done:
            return  # still saving the last one: a second click must not record it twice
        try:
            pending = self.save()
        except Refused as exc:
            self.show_reasons(exc.reasons)
            return
        except ValueError as exc:
            self.show_reasons([str(exc)])
            return
        if pending is None:
            self.error.setText("")
            self.sig_done.emit()
            return
        self.saving = pending
        self.save_button.setEnabled(False)
        self.error.setText("")
        pending.on_done(self._on_saved)

    def _on_saved(self, p: Pending[Any]) -> None:
        self.save_button.setEnabled(True)
        if not p.ok:
            self.show_reasons(p.reasons)
            return
        self.error.setText("")
        self.saved(p)
        self.sig_done.emit()

    def saved(self, p: Pending[Any]) -> None:
        """After the entry was recorded (clear the form, say what happened)."""

    def _on_cancel_clicked(self) -> None:
        self.error.setText("")
        self.sig_done.emit()


def bind_key(panel: QWidget, keys: str, slot: Callable[[], object]) -> QShortcut:
    """A key for a form's control, wherever the focus is in that form (e.g. Alt+I ticks
    the identity check)."""
    sc = QShortcut(QKeySequence(keys), panel)
    sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    sc.activated.connect(slot)
    return sc


def _spin(lo: float, hi: float, decimals: int = 0, special: str = "—") -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo - 1, hi)  # the value below the range means "not entered"
    s.setDecimals(decimals)
    s.setSpecialValueText(special)
    s.setValue(lo - 1)
    s.setMinimumHeight(36)
    return s


def _value(s: QDoubleSpinBox) -> float | None:
    return None if s.value() < s.minimum() + 0.5 else s.value()


def _password_field(placeholder: str = "Password") -> QLineEdit:
    f = QLineEdit()
    f.setPlaceholderText(placeholder)
    f.setEchoMode(QLineEdit.EchoMode.Password)
    return f


class StartSessionPanel(Panel):
    """A new session: the patient is searched for (or entered), then confirmed explicitly."""

    title = "Start a session"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self._found: list[PatientInfo] = []
        self._search: Pending[list[PatientInfo]] | None = None
        pick = QGroupBox("Patient: search by name or MRN, or enter a new one")
        pl = QVBoxLayout(pick)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Name or MRN")
        self.search.textChanged.connect(self._on_search_text_changed)
        self.search.installEventFilter(self)
        self.results = QListWidget()
        self.results.setMaximumHeight(120)
        self.results.currentRowChanged.connect(self._on_results_row_changed)
        pl.addWidget(self.search)
        pl.addWidget(self.results)
        form = QFormLayout()
        self.mrn, self.first, self.last = QLineEdit(), QLineEdit(), QLineEdit()
        self.dob = QLineEdit()
        self.dob.setPlaceholderText("YYYY-MM-DD")
        self.sex = QComboBox()
        self.sex.addItems(["", "female", "male", "other"])
        self.weight = _spin(1, 300, 1)
        self.rems = QCheckBox("REMS-enrolled (esketamine)")
        for label, w in (
            ("MRN", self.mrn),
            ("First name", self.first),
            ("Last name", self.last),
            ("Date of birth", self.dob),
            ("Sex", self.sex),
            ("Weight (kg)", self.weight),
            ("", self.rems),
        ):
            form.addRow(label, w)
        pl.addLayout(form)
        self.confirm = QCheckBox(
            "I have checked the patient's identity (name, date of birth)  [Alt+I]"
        )
        self.confirm.setStyleSheet("font-weight: bold")
        bind_key(self, "Alt+I", self.confirm.click)
        pl.addWidget(self.confirm)
        self.body.addWidget(pick)
        treat = QGroupBox("Treatment")
        tl = QGridLayout(treat)
        self.esk56 = QRadioButton("Esketamine nasal 56 mg (2 devices)")
        self.esk84 = QRadioButton("Esketamine nasal 84 mg (3 devices)")
        self.iv = QRadioButton("IV ketamine")
        self.other = QRadioButton("Other")
        self.esk56.setChecked(True)
        self.mgkg = _spin(0, 5, 2)
        self.minutes = _spin(1, 240, 0)
        self.first_treatment = QCheckBox("First treatment")
        tl.addWidget(self.esk56, 0, 0)
        tl.addWidget(self.esk84, 0, 1)
        tl.addWidget(self.iv, 1, 0)
        ivrow = QHBoxLayout()
        ivrow.addWidget(QLabel("mg/kg"))
        ivrow.addWidget(self.mgkg)
        ivrow.addWidget(QLabel("over min"))
        ivrow.addWidget(self.minutes)
        tl.addLayout(ivrow, 1, 1)
        # IM (mg/kg) and oral / sublingual (mg, form): issue 15
        self.im = QRadioButton("IM ketamine")
        self.im_mgkg = _spin(0, 2, 2)
        self.oral = QRadioButton("Oral / sublingual ketamine")
        self.oral_mg = _spin(0, 1000, 0)
        self.oral_form = QComboBox()
        for key, (_route, label) in ORAL_FORMS.items():
            self.oral_form.addItem(label, key)
        imrow, orow = QHBoxLayout(), QHBoxLayout()
        imrow.addWidget(QLabel("mg/kg"))
        imrow.addWidget(self.im_mgkg)
        orow.addWidget(QLabel("mg"))
        orow.addWidget(self.oral_mg)
        orow.addWidget(self.oral_form)
        tl.addWidget(self.im, 2, 0)
        tl.addLayout(imrow, 2, 1)
        tl.addWidget(self.oral, 3, 0)
        tl.addLayout(orow, 3, 1)
        tl.addWidget(self.other, 4, 0)
        tl.addWidget(self.first_treatment, 4, 1)
        self.body.addWidget(treat)
        mon = QGroupBox("The chair's monitor")
        ml = QGridLayout(mon)
        self.monitor_label = QLabel(f"Now: {model.monitor_description}")
        ml.addWidget(self.monitor_label, 0, 0, 1, 4)
        self.protocol = QComboBox()
        self.protocol.addItems(["simulator", "intellivue", "datex", "masimo", "hl7"])
        self.address = QLineEdit()
        self.address.setPlaceholderText(
            "serial port, e.g. /dev/ttyUSB0 (HL7: HOST:PORT, or listen:0.0.0.0:6661)"
        )
        self.scenario = QComboBox()
        self.scenario.addItems(list(SCENARIO_NAMES))
        self.connect_button = QPushButton("Connect")
        self.connect_button.setStyleSheet(BIG)
        self.connect_button.clicked.connect(self._on_connect_clicked)
        ml.addWidget(self.protocol, 1, 0)
        ml.addWidget(self.address, 1, 1)
        ml.addWidget(self.scenario, 1, 2)
        ml.addWidget(self.connect_button, 1, 3)
        self.protocol.currentTextChanged.connect(self._on_protocol_changed)
        self._on_protocol_changed(self.protocol.currentText())
        self.body.addWidget(mon)
        self.body.addStretch(1)

    def save_text(self) -> str:
        return "Start session"

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """↓ from the search field picks the first patient found (the form's scroll area
        would take the key otherwise)."""
        if (
            watched is self.search
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Down
            and self.results.count()
        ):
            self.results.setFocus(Qt.FocusReason.OtherFocusReason)
            self.results.setCurrentRow(0)
            return True
        return super().eventFilter(watched, event)

    def _on_protocol_changed(self, protocol: str) -> None:
        self.scenario.setVisible(protocol == "simulator")
        self.address.setVisible(protocol != "simulator")

    def _on_connect_clicked(self) -> None:
        try:
            desc = self.model.connect_monitor(
                self.protocol.currentText(), self.address.text(), self.scenario.currentText()
            )
        except Refused as exc:
            self.show_reasons(exc.reasons)
            return
        self.error.setText("")
        self.monitor_label.setText(f"Now: {desc}")

    def refresh(self) -> None:
        super().refresh()
        self.monitor_label.setText(f"Now: {self.model.monitor_description}")

    def _on_search_text_changed(self, text: str) -> None:
        query = text.strip()
        self.confirm.setChecked(False)
        if not query:
            self._show_found([])
            return
        search = self.model.find_patients(query)
        self._search = search

        def found(p: Pending[list[PatientInfo]]) -> None:
            if p is self._search:  # only the answer to the latest search
                self._show_found(p.result or [])

        search.on_done(found)

    def _show_found(self, found: list[PatientInfo]) -> None:
        self._found = found
        self.results.clear()
        for p in found:
            self.results.addItem(
                p.label + (f", born {p.date_of_birth}" if p.date_of_birth else "")
            )

    def _on_results_row_changed(self, row: int) -> None:
        self.confirm.setChecked(False)
        if 0 <= row < len(self._found):
            p = self._found[row]
            self.mrn.setText(p.mrn)
            self.first.setText(p.first_name)
            self.last.setText(p.last_name)
            self.dob.setText(p.date_of_birth or "")
            self.sex.setCurrentText(p.sex or "")
            self.weight.setValue(p.weight_kg or self.weight.minimum())
            self.rems.setChecked(bool(p.rems_enrolled))

    def save(self) -> Pending[Any]:
        dob = self.dob.text().strip() or None
        if dob is not None:
            try:
                date.fromisoformat(dob)
            except ValueError:
                raise Refused(["Date of birth must be YYYY-MM-DD"]) from None
        mrn = self.mrn.text().strip()
        known = next((p for p in self._found if p.mrn == mrn), None)
        patient = PatientInfo(
            id=known.id if known else None,
            mrn=mrn,
            first_name=self.first.text().strip(),
            last_name=self.last.text().strip(),
            date_of_birth=dob,
            sex=self.sex.currentText() or None,
            weight_kg=_value(self.weight),
            rems_enrolled=self.rems.isChecked(),
        )
        first = self.first_treatment.isChecked()
        if self.iv.isChecked():
            plan = Plan(
                Treatment.IV_KETAMINE,
                iv_mg_per_kg=_value(self.mgkg),
                iv_minutes=_value(self.minutes),
                first_treatment=first,
            )
        elif self.im.isChecked():
            plan = Plan(
                Treatment.IM_KETAMINE, im_mg_per_kg=_value(self.im_mgkg), first_treatment=first
            )
        elif self.oral.isChecked():
            form = str(self.oral_form.currentData())
            plan = Plan(
                Treatment.ORAL_KETAMINE,
                oral_mg=_value(self.oral_mg),
                oral_form=form,
                first_treatment=first,
            )
        elif self.other.isChecked():
            plan = Plan(Treatment.OTHER, first_treatment=first)
        else:
            plan = Plan(
                Treatment.ESKETAMINE,
                dose_mg=84.0 if self.esk84.isChecked() else 56.0,
                first_treatment=first,
            )
        return self.model.start_session(patient, plan, confirmed=self.confirm.isChecked())


class ScreeningPanel(Panel):
    title = "Pre-dose screening"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        vit = QGroupBox("Blood pressure and heart rate before dosing")
        vl = QHBoxLayout(vit)
        self.sys, self.dia, self.hr = _spin(40, 300), _spin(20, 200), _spin(20, 250)
        for label, w in (("SYS", self.sys), ("DIA", self.dia), ("HR", self.hr)):
            vl.addWidget(QLabel(label))
            vl.addWidget(w)
        self.use_monitor = QPushButton("Use monitor reading")
        self.use_monitor.setStyleSheet(BIG)
        self.use_monitor.clicked.connect(self._on_use_monitor_clicked)
        vl.addWidget(self.use_monitor)
        self.body.addWidget(vit)
        self._source = "manual"
        self.advisory = QLabel("")
        self.advisory.setWordWrap(True)
        self.advisory.setStyleSheet("color: #ffcc00; font-weight: bold")
        self.body.addWidget(self.advisory)
        dec = QGroupBox("Prescriber decision (needed when pre-dose BP is above the advisory)")
        dl = QHBoxLayout(dec)
        self.proceed = QRadioButton("Proceed")
        self.delay = QRadioButton("Delay")
        self.prescriber = QLineEdit()
        self.prescriber.setPlaceholderText("Prescriber user name")
        self.prescriber_password = _password_field()
        dl.addWidget(self.proceed)
        dl.addWidget(self.delay)
        dl.addWidget(self.prescriber)
        dl.addWidget(self.prescriber_password)
        self.decision_box = dec
        self.body.addWidget(dec)
        checks = QGroupBox("Checks")
        cl = QGridLayout(checks)
        self.fasting = QCheckBox("Fasting as instructed (no food 2 h, no liquids 30 min)  [Alt+F]")
        self.escort = QCheckBox("Escort / ride home confirmed  [Alt+E]")
        self.rems = QCheckBox("REMS enrolment confirmed (esketamine)  [Alt+R]")
        for keys, box in (("Alt+F", self.fasting), ("Alt+E", self.escort), ("Alt+R", self.rems)):
            bind_key(self, keys, box.click)
        cl.addWidget(self.fasting, 0, 0, 1, 2)
        cl.addWidget(self.escort, 1, 0, 1, 2)
        cl.addWidget(self.rems, 2, 0, 1, 2)
        self.meds = {
            k: QCheckBox(label)
            for k, label in (
                ("benzodiazepine", "Benzodiazepines"),
                ("hypnotic", "Non-benzodiazepine hypnotics"),
                ("opioid", "Opioids"),
                ("psychostimulant", "Psychostimulants"),
                ("maoi", "MAOIs"),
            )
        }
        cl.addWidget(QLabel("Concomitant sedating / BP-raising medicines:"), 3, 0, 1, 2)
        for i, box in enumerate(self.meds.values()):
            cl.addWidget(box, 4 + i // 2, i % 2)
        self.body.addWidget(checks)
        ov = QGroupBox("No pre-dose BP possible: physician override")
        ol = QHBoxLayout(ov)
        self.override = QLineEdit()
        self.override.setPlaceholderText("Reason; the prescriber above signs in")
        ol.addWidget(self.override)
        self.body.addWidget(ov)
        self.body.addStretch(1)
        for s in (self.sys, self.dia):
            s.valueChanged.connect(self._on_bp_value_changed)

    def refresh(self) -> None:
        super().refresh()
        s = self.model.state
        if s is not None:
            if s.screening is None:
                self.rems.setChecked(bool(s.patient.rems_enrolled))
            self.rems.setVisible(s.plan.treatment is Treatment.ESKETAMINE)
        self._on_bp_value_changed()

    def _on_use_monitor_clicked(self) -> None:
        bp = self.model.latest_nibp()
        if bp is None:
            self.show_reasons(
                ["No NIBP from the monitor yet: start a cuff measurement or type it"]
            )
            return
        self.sys.setValue(bp[0])
        self.dia.setValue(bp[1])
        hr = self.model.latest_value("hr") or self.model.latest_value("pr")
        if hr is not None:
            self.hr.setValue(hr)
        self._source = "monitor"

    def _bp(self) -> tuple[float, float] | None:
        sys, dia = _value(self.sys), _value(self.dia)
        return None if sys is None or dia is None else (sys, dia)

    def _on_bp_value_changed(self) -> None:
        bp = self._bp()
        need = self.model.needs_prescriber_decision(bp)
        adv = self.model.profile.predose_advisory
        self.advisory.setText(
            f"⚠ Pre-dose BP above {adv.sys_above:.0f}/{adv.dia_above:.0f} "
            f"(advisory, {adv.source}):"
            " a prescriber decision is needed before the first dose."
            if need
            else ""
        )
        self.decision_box.setEnabled(need or not self._bp())

    def save(self) -> Pending[Any]:
        decision = (
            PrescriberDecision.PROCEED
            if self.proceed.isChecked()
            else PrescriberDecision.DELAY
            if self.delay.isChecked()
            else None
        )
        bp = self._bp()
        if not self.model.needs_prescriber_decision(bp):
            decision = None
        override = self.override.text().strip() if bp is None else ""
        user, password = self.prescriber.text(), self.prescriber_password.text()
        self.prescriber_password.clear()  # asked again every time
        s = self.model.state
        esk = s is not None and s.plan.treatment is Treatment.ESKETAMINE
        first = self.model.record_screening(
            bp=bp,
            hr=_value(self.hr),
            bp_source=self._source,
            fasting=self.fasting.isChecked(),
            escort=self.escort.isChecked(),
            rems_enrolled=self.rems.isChecked() if esk else None,
            medicines={k: b.isChecked() for k, b in self.meds.items()},
        )
        steps: list[Callable[[], Pending[Any]]] = []
        if decision is not None:
            steps.append(
                lambda: self.model.prescriber_decision(decision, username=user, password=password)
            )
        if override:
            steps.append(
                lambda: self.model.override_missing_bp(override, username=user, password=password)
            )
        return chain(first, *steps)


class DosePanel(Panel):
    title = "Dosing"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("font-size: 13pt")
        self.body.addWidget(self.info)
        row = QHBoxLayout()
        self.lot = QLineEdit()
        self.lot.setPlaceholderText("Device lot number")
        self.lot.setMinimumHeight(40)
        row.addWidget(QLabel("Lot"))
        row.addWidget(self.lot)
        self.lot_row = QWidget()
        self.lot_row.setLayout(row)
        self.body.addWidget(self.lot_row)
        self.description = QLineEdit()
        self.description.setPlaceholderText("Drug, route and dose given")
        self.body.addWidget(self.description)
        from ketamon.ui.course_panels import AdministerForm, planned_text

        self.administer = AdministerForm()  # IM and oral / sublingual doses (issue 15)
        self._planned_text = planned_text
        self.body.addWidget(self.administer)
        self.countdown = QLabel("")
        self.countdown.setStyleSheet("font-size: 22pt; font-weight: bold; color: #ffcc00")
        self.body.addWidget(self.countdown)
        self.blockers = QLabel("")
        self.blockers.setWordWrap(True)
        self.body.addWidget(self.blockers)
        stop = QHBoxLayout()
        self.stop_reason = QLineEdit()
        self.stop_reason.setPlaceholderText("Reason, if stopped before the planned time")
        self.stop_button = QPushButton("Stop infusion")
        self.stop_button.setStyleSheet(BIG)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.keep_button = QPushButton("Keep it running")
        self.keep_button.setStyleSheet(BIG)
        self.keep_button.clicked.connect(self._on_keep_clicked)
        self.keep_button.hide()
        stop.addWidget(self.stop_reason, 1)
        stop.addWidget(self.keep_button)
        stop.addWidget(self.stop_button)
        self.stop_row = QWidget()
        self.stop_row.setLayout(stop)
        self.body.addWidget(self.stop_row)
        self.stop_warning = QLabel("")
        self.stop_warning.setObjectName("stopWarning")
        self.stop_warning.setWordWrap(True)
        self.stop_warning.setStyleSheet("color: #ffcc00; font-weight: bold; font-size: 13pt")
        self.body.addWidget(self.stop_warning)
        self._confirming_stop = False
        self.body.addStretch(1)

    def save_text(self) -> str:
        return "Log dose"

    def refresh(self) -> None:
        super().refresh()
        self._reset_stop()
        s = self.model.state
        if s is None:
            return
        self.description.setVisible(s.plan.treatment is Treatment.OTHER)
        routed = s.plan.treatment in (Treatment.IM_KETAMINE, Treatment.ORAL_KETAMINE)
        self.administer.setVisible(routed)
        if routed:
            self.administer.show_for(s.plan.treatment, self._planned_text(self.model))
            a = s.administration
            self.info.setText(
                "Not given yet"
                if a is None
                else f"Given at {a.at.astimezone():%H:%M}: "
                f"{a.given_mg:g} mg, lot {a.lot} (drawn {a.drawn_mg:g} mg)"
            )
            self.save_button.setText("Log dose given")
            self.save_button.setEnabled(a is None)
            self.lot_row.setVisible(False)
            self.stop_row.setVisible(False)
        elif s.plan.treatment is Treatment.ESKETAMINE:
            n = self.model.planned_devices()
            given = len(s.devices)
            lines = [f"Esketamine {s.plan.dose_mg:g} mg: {given} of {n} devices given"]
            for d in s.devices:
                rel = (d.at - s.devices[0].at).total_seconds() / 60
                lines.append(
                    f"  Device {d.number}: {d.at.astimezone().strftime('%H:%M:%S')} "
                    f"(T+{rel:.0f} min), lot {d.lot}"
                )
            self.info.setText("\n".join(lines))
            self.save_button.setText(f"Log device {min(given + 1, n)}")
            self.save_button.setEnabled(given < n)
            self.lot_row.setVisible(True)
            self.stop_row.setVisible(False)
        elif s.plan.treatment is Treatment.IV_KETAMINE:
            inf = s.infusion
            plan = s.plan
            text = (
                f"IV ketamine {plan.iv_mg_per_kg:g} mg/kg × {s.patient.weight_kg:g} kg"
                f" over {plan.iv_minutes:g} min"
            )
            if inf is None:
                state = "not started"
            elif inf.stop is None:
                state = (
                    f"running since {inf.start.astimezone().strftime('%H:%M')}: "
                    f"{inf.planned_mg:g} mg at {inf.rate_mg_per_min:g} mg/min"
                )
            else:
                state = f"stopped: {inf.given_mg:g} mg given"
            self.info.setText(f"{text}\nInfusion {state}")
            self.save_button.setText("Start infusion")
            self.save_button.setEnabled(inf is None)
            self.lot_row.setVisible(False)
            self.stop_row.setVisible(inf is not None and inf.stop is None)
        else:
            self.info.setText("Other treatment: describe it and log when it was given.")
            self.description.setFocus()
            self.save_button.setText("Log treatment given")
            self.save_button.setEnabled(s.other_dose is None)
            self.lot_row.setVisible(False)
            self.stop_row.setVisible(False)
        self.tick()

    def tick(self) -> None:
        status = self.model.dosing_status()
        self.countdown.setText("" if status is None else status.text)
        blockers = self.model.dose_blockers()
        lines = [f"• {b}" for b in blockers]
        # the course's precautions, on every session of the course (issue 15)
        lines += [f"⚠ Precaution: {p}" for p in self.model.core.gate.precautions]
        self.blockers.setText("\n".join(lines))

    def save(self) -> Pending[Any]:
        s = self.model.state
        if s is None:
            raise Refused(["Start a session first"])
        if s.plan.treatment is Treatment.ESKETAMINE:
            return self.model.log_esketamine_device(self.lot.text())
        if s.plan.treatment is Treatment.IV_KETAMINE:
            return self.model.start_infusion()
        if s.plan.treatment in (Treatment.IM_KETAMINE, Treatment.ORAL_KETAMINE):
            f = self.administer
            site = str(f.site.currentData() or "")
            return CourseActions(self.model).administer(f.supply(), float(f.drawn.value()), site)
        return self.model.log_other_treatment(self.description.text())

    def saved(self, p: Pending[Any]) -> None:
        self.description.clear()

    def _early_min(self) -> float:
        """How many minutes before its planned stop the running infusion is (0: not early)."""
        s = self.model.state
        inf = s.infusion if s is not None else None
        if inf is None or inf.stop is not None:
            return 0.0
        planned = inf.start + timedelta(minutes=inf.planned_minutes)
        return max(0.0, (planned - self.model.now()).total_seconds() / 60.0)

    def _on_stop_clicked(self) -> None:
        early = self._early_min()
        if early >= 0.5 and not self._confirming_stop:
            # stopping early is asked twice: the infusion's planned dose would not be given
            self._confirming_stop = True
            self.stop_warning.setText(
                f"Stop the infusion {early:.0f} min before its planned stop? Give the reason, "
                "then press 'Stop now' again."
            )
            self.stop_button.setText("Stop now")
            self.keep_button.show()
            self.stop_reason.setFocus()
            return
        self._reset_stop()
        pending = self.model.stop_infusion(self.stop_reason.text())
        self.saving = pending
        pending.on_done(self._on_saved)

    def _on_keep_clicked(self) -> None:
        self._reset_stop()

    def _reset_stop(self) -> None:
        self._confirming_stop = False
        self.stop_warning.setText("")
        self.stop_button.setText("Stop infusion")
        self.keep_button.hide()


class MoaasPanel(Panel):
    title = "Sedation: MOAA/S (one tap, or its digit 0–5, records)"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self.buttons: dict[int, QPushButton] = {}
        for score, text in MOAAS_LEVELS.items():
            b = QPushButton(f"{score} — {text}")
            b.setStyleSheet("min-height: 52px; font-size: 13pt; text-align: left; padding: 8px")
            b.clicked.connect(lambda _=False, sc=score: self._record(sc))
            self.buttons[score] = b
            self.body.addWidget(b)
        src = QLabel(MOAAS_SOURCE)
        src.setStyleSheet("color: #8a96a3; font-size: 9pt")
        self.body.addWidget(src)
        self.body.addStretch(1)
        self.save_button.hide()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Digits 0–5 record that MOAA/S score (the buttons' numbers)."""
        text = event.text()
        if len(text) == 1 and text.isdigit() and int(text) in self.buttons:
            self._record(int(text))
            return
        super().keyPressEvent(event)

    def _record(self, score: int) -> None:
        if self.saving is not None and not self.saving.done:
            return
        self.saving = self.model.record_moaas(score)
        self.saving.on_done(self._on_saved)


class CadssPanel(Panel):
    """23 items scored 0–4. "All 0" scores every unscored item 0, so a calm patient takes three
    actions; from the keyboard, ↑/↓ pick the item and a digit 0–4 scores it and moves on."""

    title = "Dissociation: CADSS (23 items, 0–4)"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        note = QLabel(
            "Item numbers and neutral labels only; the item wording is licensed separately and "
            "is not shipped with ketamon. Keys: ↑/↓ item, 0–4 score it, Enter saves."
        )
        note.setWordWrap(True)
        note.setStyleSheet("color: #8a96a3")
        self.body.addWidget(note)
        tools = QHBoxLayout()
        self.all_zero_button = QPushButton("All unscored items 0  [Alt+A]")
        self.all_zero_button.setStyleSheet(BIG)
        self.all_zero_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.all_zero_button.clicked.connect(self._on_all_zero_clicked)
        bind_key(self, "Alt+A", self._on_all_zero_clicked)
        tools.addWidget(self.all_zero_button)
        tools.addStretch(1)
        self.body.addLayout(tools)
        grid = QGridLayout()
        grid.setVerticalSpacing(2)
        self.groups: dict[int, QButtonGroup] = {}
        self.item_labels: dict[int, QLabel] = {}
        for item in range(1, CADSS_ITEMS + 1):
            label = QLabel(cadss_item_label(item))
            grid.addWidget(label, item, 0)
            self.item_labels[item] = label
            g = QButtonGroup(self)
            for score in range(5):
                b = QPushButton(str(score))
                b.setCheckable(True)
                b.setMinimumSize(44, 30)
                b.setStyleSheet("padding: 2px; min-height: 26px")  # 12 items on a screen
                b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys go to the form
                g.addButton(b, score)
                grid.addWidget(b, item, 1 + score)
            g.idClicked.connect(lambda score, i=item: self._on_item_scored(i))
            self.groups[item] = g
        self.body.addLayout(grid)
        self.total = QLabel("Total: –")
        self.total.setStyleSheet("font-size: 14pt; font-weight: bold")
        self.body.addWidget(self.total)
        self.current_item = 1

    def refresh(self) -> None:
        super().refresh()
        for g in self.groups.values():
            g.setExclusive(False)
            for b in g.buttons():
                b.setChecked(False)
            g.setExclusive(True)
        self.select_item(1)
        self._on_score_clicked(0)

    def first_field(self) -> QWidget | None:
        return self  # the digits score the current item

    def select_item(self, item: int) -> None:
        item = max(1, min(CADSS_ITEMS, item))
        old = self.item_labels.get(self.current_item)
        if old is not None:
            old.setStyleSheet("")
        self.current_item = item
        label = self.item_labels[item]
        label.setStyleSheet("background: #32d2f0; color: #000; font-weight: bold; padding: 2px")
        self.scroll_area.ensureWidgetVisible(label, 0, 40)

    def score_current(self, score: int) -> None:
        self.groups[self.current_item].button(score).setChecked(True)
        self._on_item_scored(self.current_item)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, text = event.key(), event.text()
        if len(text) == 1 and text in "01234":
            self.score_current(int(text))
        elif key == Qt.Key.Key_Down:
            self.select_item(self.current_item + 1)
        elif key == Qt.Key.Key_Up:
            self.select_item(self.current_item - 1)
        else:
            super().keyPressEvent(event)

    def _on_all_zero_clicked(self) -> None:
        for g in self.groups.values():
            if g.checkedId() < 0:
                g.button(0).setChecked(True)
        self._on_score_clicked(0)

    def _on_item_scored(self, item: int) -> None:
        self._on_score_clicked(0)
        nxt = next(
            (i for i in range(item + 1, CADSS_ITEMS + 1) if self.groups[i].checkedId() < 0),
            min(item + 1, CADSS_ITEMS),
        )
        self.select_item(nxt)

    def items(self) -> dict[int, int]:
        return {i: g.checkedId() for i, g in self.groups.items() if g.checkedId() >= 0}

    def set_scores(self, scores: dict[int, int]) -> None:
        for i, v in scores.items():
            self.groups[i].button(v).setChecked(True)
        self._on_score_clicked(0)

    def _on_score_clicked(self, _id: int) -> None:
        items = self.items()
        total = sum(items.values())
        s = self.model.state
        pre = s.predose_cadss if s else None
        change = "" if pre is None else f", change from pre-dose {total - pre:+d}"
        self.total.setText(f"Total: {total} of 92 ({len(items)}/23 items scored{change})")

    def save(self) -> Pending[Any]:
        return self.model.record_cadss(self.items())


class SideEffectsPanel(Panel):
    """One row per effect: tick it, then its severity, onset, the serious-adverse-event answer
    (for the serious ones) and its own details. An unticked row's fields are off."""

    title = "Side effects"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Effect</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Severity</b>"), 0, 1)
        grid.addWidget(QLabel("<b>Onset (min after dose)</b>"), 0, 2)
        grid.addWidget(QLabel("<b>Serious adverse event?</b>"), 0, 3)
        grid.addWidget(QLabel("<b>Details</b>"), 0, 4)
        self.rows: dict[str, tuple[QCheckBox, QComboBox, QSpinBox, QComboBox | None]] = {}
        self.details: dict[str, QLineEdit] = {}
        for i, se in enumerate(SIDE_EFFECTS, 1):
            box = QCheckBox(se.label + (" ⚠" if se.serious else ""))
            sev = QComboBox()
            sev.addItems([s.value for s in Severity if s is not Severity.NONE])
            onset = QSpinBox()
            onset.setRange(-60, 600)
            sae: QComboBox | None = None
            detail = QLineEdit()
            detail.setPlaceholderText("Describe" if se.key == "other" else "Details")
            grid.addWidget(box, i, 0)
            grid.addWidget(sev, i, 1)
            grid.addWidget(onset, i, 2)
            if se.serious:
                sae = QComboBox()
                sae.addItems(["— answer —", "No", "Yes"])
                grid.addWidget(sae, i, 3)
            grid.addWidget(detail, i, 4)
            self.rows[se.key] = (box, sev, onset, sae)
            self.details[se.key] = detail
            box.toggled.connect(lambda on, k=se.key: self._enable_row(k, on))
        grid.setColumnStretch(4, 1)
        self.body.addLayout(grid)
        self.suggested = QLabel("")
        self.suggested.setStyleSheet("color: #ffcc00")
        self.body.addWidget(self.suggested)

    def _enable_row(self, key: str, on: bool) -> None:
        _box, sev, onset, sae = self.rows[key]
        for w in (sev, onset, sae, self.details[key]):
            if w is not None:
                w.setEnabled(on)

    def first_field(self) -> QWidget | None:
        return next(iter(self.rows.values()))[0]

    def refresh(self) -> None:
        super().refresh()
        clock = self.model.session_clock()
        now_min = int(clock.minutes(self.model.now()))
        suggested = set(self.model.suggested_side_effects())
        for key, (box, sev, onset, sae) in self.rows.items():
            box.setChecked(key in suggested)
            sev.setCurrentIndex(0)
            onset.setValue(now_min)
            if sae is not None:
                sae.setCurrentIndex(0)
            self.details[key].clear()
            self._enable_row(key, key in suggested)
        labels = [self.rows[k][0].text() for k in suggested]
        self.suggested.setText(
            "Suggested from flagged vitals: " + ", ".join(labels) if labels else ""
        )

    def save(self) -> Pending[Any]:
        clock = self.model.session_clock()
        effects = []
        for key, (box, sev, onset, sae) in self.rows.items():
            if not box.isChecked():
                continue
            serious = None if sae is None or sae.currentIndex() == 0 else sae.currentIndex() == 2
            when = clock.zero + timedelta(minutes=onset.value())
            effects.append(
                SideEffectInput(
                    item=key,
                    severity=sev.currentText(),
                    serious=serious if sae is not None else None,
                    onset=when.isoformat(),
                    text=self.details[key].text().strip(),
                )
            )
        if not effects:
            raise Refused(["Tick at least one side effect"])
        return self.model.record_side_effects(effects)


class NotePanel(Panel):
    title = "Notes"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("Note")
        self.body.addWidget(self.text)
        self.body.addWidget(QLabel("Earlier notes (correct one under Entries, with a reason)"))
        self.history = QListWidget()
        self.body.addWidget(self.history)

    def refresh(self) -> None:
        super().refresh()
        self.text.clear()
        self.history.clear()
        s = self.model.state
        for o in s.live(EntryKind.NOTE) if s else []:
            self.history.addItem(f"{o.at.astimezone().strftime('%H:%M')} · {o.author} · {o.text}")

    def save(self) -> Pending[Any]:
        return self.model.add_note(self.text.toPlainText())


_K = EntryKind
#: the Entries list's filter: name → the kinds it shows (None: everything)
ENTRY_FILTERS: dict[str, frozenset[EntryKind] | None] = {
    "Everything": None,
    "Doses": frozenset(
        {_K.DEVICE, _K.INFUSION_STARTED, _K.INFUSION_STOPPED, _K.OTHER_DOSE, _K.STARTED}
    ),
    "Screening and decisions": frozenset(
        {_K.SCREENING, _K.DECISION, _K.BP_OVERRIDE, _K.BP40_REASON, _K.LIMIT_CHANGED}
    ),
    "Scales (MOAA/S, RASS, CADSS)": frozenset({_K.MOAAS, _K.RASS, _K.CADSS}),
    "Side effects and symptoms": frozenset({_K.SIDE_EFFECT, _K.SYMPTOM_CHECK}),
    "Vitals by hand": frozenset({_K.VITALS}),
    "Notes": frozenset({_K.NOTE}),
    "Flags and monitor": frozenset({_K.ALARM, _K.LINK}),
    "Corrections": frozenset({_K.CORRECTION}),
    "Discharge and sign-off": frozenset(
        {_K.DISCHARGED, _K.CANCELLED, _K.ENDED, _K.SIGNED, _K.ADDENDUM, _K.PMF_FIELDS}
        | {_K.PMF_SUBMITTED}
    ),
}


class EntriesPanel(Panel):
    """Everything recorded at this chair, in time order with its author; an entry can be
    corrected, or marked entered in error, always with a reason (audited)."""

    title = "Entries"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        top = QHBoxLayout()
        top.addWidget(QLabel("The record"))
        top.addStretch(1)
        top.addWidget(QLabel("Show"))
        self.kind_filter = QComboBox()
        self.kind_filter.addItems(list(ENTRY_FILTERS))
        self.kind_filter.currentTextChanged.connect(self._on_filter_changed)
        top.addWidget(self.kind_filter)
        self.body.addLayout(top)
        self.record = QListWidget()
        self.record.setMinimumHeight(220)
        self.record.setWordWrap(True)
        self.body.addWidget(self.record)
        self._lines: list[RecordLine] = []
        self.body.addWidget(QLabel("Correct an entry"))
        self.list = QListWidget()
        self.list.setMinimumHeight(120)
        self.body.addWidget(self.list)
        row = QHBoxLayout()
        self.field = QComboBox()
        self.choice = QComboBox()
        self.text = QLineEdit()
        row.addWidget(QLabel("Correct"))
        row.addWidget(self.field)
        row.addWidget(QLabel("to"))
        row.addWidget(self.choice)
        row.addWidget(self.text, 1)
        self.body.addLayout(row)
        self.in_error = QCheckBox("Entered in error (the entry no longer counts)")
        self.body.addWidget(self.in_error)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the correction (required, audited)")
        self.body.addWidget(self.reason)
        self.body.addStretch(1)
        self.list.currentRowChanged.connect(self._on_list_row_changed)
        self.field.currentTextChanged.connect(self._on_field_changed)
        self._rows: list[tuple[int, str, EntryKind, Any]] = []

    def save_text(self) -> str:
        return "Save correction"

    def refresh(self) -> None:
        super().refresh()
        self._lines = self.model.record()
        self._on_filter_changed(self.kind_filter.currentText())
        self.list.clear()
        self.reason.clear()
        self.in_error.setChecked(False)
        self._rows = self.model.correctable_entries()
        for _id, text, _kind, _cur in self._rows:
            self.list.addItem(text)
        self._on_list_row_changed(self.list.currentRow())

    def first_field(self) -> QWidget | None:
        return self.kind_filter

    def _on_filter_changed(self, name: str) -> None:
        kinds = ENTRY_FILTERS.get(name)
        self.record.clear()
        for line in self._lines:
            if kinds is not None and line.kind not in kinds:
                continue
            by = f" (authorised by {line.authorised_by})" if line.authorised_by else ""
            self.record.addItem(
                f"{line.at.astimezone().strftime('%H:%M:%S')} · {line.author}{by} · "
                f"{line.label}: {line.text}"
            )
        self.record.scrollToBottom()

    def shown_lines(self) -> list[str]:
        return [self.record.item(i).text() for i in range(self.record.count())]

    def _selected(self) -> tuple[int, str, EntryKind, Any] | None:
        row = self.list.currentRow()
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def _on_list_row_changed(self, _row: int) -> None:
        sel = self._selected()
        self.field.clear()
        if sel is None:
            self._on_field_changed("")
            return
        _id, _text, kind, _current = sel
        fields = {
            EntryKind.MOAAS: ["score"],
            EntryKind.RASS: ["score"],
            EntryKind.SIDE_EFFECT: ["severity", "serious", "text"],
            EntryKind.NOTE: ["text"],
            EntryKind.SCREENING: ["bp", "hr", "fasting", "escort", "rems_enrolled"],
            EntryKind.VITALS: [],
            EntryKind.CADSS: [],
        }[kind]
        self.field.addItems(fields)
        self.in_error.setEnabled(kind is not EntryKind.SCREENING)
        self._on_field_changed(self.field.currentText())

    def _on_field_changed(self, field: str) -> None:
        sel = self._selected()
        self.choice.clear()
        self.text.clear()
        choices: list[str] = []
        if sel is not None:
            _id, _text, kind, current = sel
            if field == "score":
                rng = range(6) if kind is EntryKind.MOAAS else range(-5, 5)
                choices = [str(i) for i in rng]
            elif field == "severity":
                choices = ["mild", "moderate", "severe"]
            elif field in ("serious", "fasting", "escort", "rems_enrolled"):
                choices = ["yes", "no"]
            value = current.get(field)
            if choices:
                self.choice.addItems(choices)
                shown = value if not isinstance(value, bool) else ("yes" if value else "no")
                self.choice.setCurrentText(str(shown))
            elif field == "bp" and value:
                self.text.setText(f"{float(value[0]):g}/{float(value[1]):g}")
            elif value is not None:
                self.text.setText(str(value))
        self.choice.setVisible(bool(choices))
        self.text.setVisible(bool(field) and not choices)

    def save(self) -> Pending[Any]:
        sel = self._selected()
        if sel is None:
            raise Refused(["Select the entry to correct"])
        entry_id, _text, _kind, _current = sel
        if self.in_error.isChecked():
            return self.model.correct(entry_id, {}, self.reason.text(), in_error=True)
        field = self.field.currentText()
        new: object
        if self.choice.isVisible():
            raw = self.choice.currentText()
            new = int(raw) if field == "score" else (raw == "yes" if raw in ("yes", "no") else raw)
        elif field == "bp":
            try:
                sys, dia = (float(x) for x in self.text.text().split("/"))
            except ValueError:
                raise Refused(["Enter the BP as SYS/DIA, e.g. 128/82"]) from None
            new = [sys, dia]
        elif field == "hr":
            try:
                new = float(self.text.text())
            except ValueError:
                raise Refused(["Enter the heart rate as a number"]) from None
        else:
            new = self.text.text()
        return self.model.correct(entry_id, {field: new}, self.reason.text())


class VitalsPanel(Panel):
    title = "Enter vitals by hand"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        form = QFormLayout()
        self.fields = {
            "nibp_sys": _spin(40, 300),
            "nibp_dia": _spin(20, 200),
            "hr": _spin(20, 250),
            "spo2": _spin(50, 100),
            "rr": _spin(0, 80),
        }
        for label, key in (
            ("BP systolic (mmHg)", "nibp_sys"),
            ("BP diastolic (mmHg)", "nibp_dia"),
            ("Heart rate (/min)", "hr"),
            ("SpO₂ (%)", "spo2"),
            ("Respiratory rate (/min)", "rr"),
        ):
            form.addRow(label, self.fields[key])
        self.body.addLayout(form)
        self.reason_40 = QLineEdit()
        self.reason_40.setPlaceholderText("…or the reason the 40-minute BP could not be taken")
        self.body.addWidget(self.reason_40)
        self.body.addStretch(1)

    def refresh(self) -> None:
        super().refresh()
        for f in self.fields.values():
            f.setValue(f.minimum())
        self.reason_40.clear()

    def save(self) -> Pending[Any]:
        values = {k: v for k, f in self.fields.items() if (v := _value(f)) is not None}
        if not values and self.reason_40.text().strip():
            return self.model.record_bp40_reason(self.reason_40.text())
        return self.model.record_manual_vitals(values)


class SymptomPanel(Panel):
    title = "BP flagged: ask about symptoms"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        info = QLabel(
            "A high blood pressure was flagged. Ask the patient; any 'Yes' raises a "
            "high-priority escalation and records that the prescriber was notified."
        )
        info.setWordWrap(True)
        self.body.addWidget(info)
        grid = QGridLayout()
        self.answers: dict[str, QButtonGroup] = {}
        for i, (key, label) in enumerate(BP_SYMPTOMS):
            grid.addWidget(QLabel(label), i, 0)
            g = QButtonGroup(self)
            for j, text in enumerate(("No", "Yes")):
                b = QPushButton(text)
                b.setCheckable(True)
                b.setMinimumSize(80, 40)
                g.addButton(b, j)
                grid.addWidget(b, i, 1 + j)
            self.answers[key] = g
        self.body.addLayout(grid)
        esc = QGroupBox("Escalation handled: a physician documents it and resets the flag")
        el = QFormLayout(esc)
        self.documentation = QLineEdit()
        self.documentation.setPlaceholderText("What was done (e.g. prescriber assessed, treated)")
        self.physician = QLineEdit()
        self.physician.setPlaceholderText("Physician user name (if you are not one)")
        self.physician_password = _password_field()
        self.reset_button = QPushButton("Reset the hypertensive-emergency flag")
        self.reset_button.setStyleSheet(BIG)
        self.reset_button.clicked.connect(self._on_reset_clicked)
        el.addRow("Documentation", self.documentation)
        el.addRow("Physician", self.physician)
        el.addRow("Password", self.physician_password)
        el.addRow("", self.reset_button)
        self.escalation_box = esc
        self.body.addWidget(esc)
        self.body.addStretch(1)

    def _on_reset_clicked(self) -> None:
        password = self.physician_password.text()
        self.physician_password.clear()
        pending = self.model.reset_emergency(
            self.documentation.text(), username=self.physician.text(), password=password
        )
        self.saving = pending
        pending.on_done(self._on_saved)

    def refresh(self) -> None:
        super().refresh()
        s = self.model.state
        self.escalation_box.setVisible(s is not None and "hypertensive_emergency" in s.alarms)
        self.documentation.clear()
        for g in self.answers.values():
            g.setExclusive(False)
            for b in g.buttons():
                b.setChecked(False)
            g.setExclusive(True)

    def set_answers(self, answers: dict[str, bool]) -> None:
        for k, v in answers.items():
            self.answers[k].button(1 if v else 0).setChecked(True)

    def save(self) -> Pending[Any]:
        answers = {k: g.checkedId() == 1 for k, g in self.answers.items() if g.checkedId() >= 0}
        return self.model.record_symptom_check(answers)


class DischargePanel(Panel):
    """Discharge: the criteria are computed from the record and listed; what cannot be met is
    accepted by a physician with a reason; the discharging clinician signs with a password."""

    title = "Discharge"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("font-size: 13pt")
        self.body.addWidget(self.status)
        self.criteria = QLabel("")
        self.criteria.setObjectName("dischargeCriteria")
        self.criteria.setWordWrap(True)
        self.body.addWidget(self.criteria)
        box = QGroupBox("Checklist (confirmed at the chair)")
        bl = QVBoxLayout(box)
        self.checks = {key: QCheckBox(label) for key, label in CHECKLIST_LABELS.items()}
        for c in self.checks.values():
            c.setMinimumHeight(32)
            bl.addWidget(c)
        self.body.addWidget(box)
        question = QLabel(
            "If there were no 2-hour minimum, when would the patient have been ready to leave? "
            "(minutes after the first dose)"
        )
        question.setWordWrap(True)
        self.body.addWidget(question)
        self.ready = QSpinBox()
        self.ready.setRange(-1, 1440)
        self.ready.setSpecialValueText("— answer —")
        self.ready.setValue(-1)
        self.ready.setMaximumWidth(220)
        self.body.addWidget(self.ready)
        ov = QGroupBox("Criteria not met: a physician accepts them")
        ol = QFormLayout(ov)
        self.override_reason = QLineEdit()
        self.override_user = QLineEdit()
        self.override_password = _password_field()
        ol.addRow("Reason", self.override_reason)
        ol.addRow("Physician user name", self.override_user)
        ol.addRow("Physician password", self.override_password)
        self.override_box = ov
        self.body.addWidget(ov)
        sign = QGroupBox("Sign the discharge")
        sl = QFormLayout(sign)
        self.signer = QLabel("")
        self.password = _password_field("Your password")
        sl.addRow("Discharging clinician", self.signer)
        sl.addRow("Password", self.password)
        self.body.addWidget(sign)
        cancel = QGroupBox("Session started in error: cancel it (it stays in the record)")
        cl = QFormLayout(cancel)
        self.cancel_reason = QLineEdit()
        self.cancel_reason.setPlaceholderText("Reason (e.g. wrong patient picked)")
        self.cancel_user = QLineEdit()
        self.cancel_user.setPlaceholderText("Physician user name (needed once a dose is logged)")
        self.cancel_password = _password_field()
        self.cancel_session_button = QPushButton("Cancel session: entered in error")
        self.cancel_session_button.clicked.connect(self._on_cancel_session_clicked)
        cl.addRow("Reason", self.cancel_reason)
        cl.addRow("Physician", self.cancel_user)
        cl.addRow("Password", self.cancel_password)
        cl.addRow("", self.cancel_session_button)
        self.body.addWidget(cancel)
        self.body.addStretch(1)
        for c in self.checks.values():
            c.toggled.connect(self.tick)
        self.ready.valueChanged.connect(self.tick)

    def save_text(self) -> str:
        return "Discharge"

    def _ready(self) -> int | None:
        return None if self.ready.value() < 0 else self.ready.value()

    def tick(self) -> None:
        clock = self.model.session_clock()
        now = self.model.now()
        if clock.first_dose is None:
            self.status.setText("No dose logged: cancel the session instead if it was an error.")
        else:
            m = clock.minutes(now)
            left = clock.observation_remaining_min(now) or 0
            self.status.setText(
                f"{m:.0f} min since the first dose. "
                + (
                    f"Minimum observation: {left:.0f} min left."
                    if left > 0
                    else "The 2-hour minimum observation is complete."
                )
            )
        unmet = self.model.discharge_unmet(
            {k: c.isChecked() for k, c in self.checks.items()}, self._ready()
        )
        if unmet:
            self.criteria.setText("Not met yet:\n" + "\n".join(f"• {u.text}" for u in unmet))
            self.criteria.setStyleSheet("color: #ffcc00")
        else:
            self.criteria.setText("✓ Every discharge criterion is met.")
            self.criteria.setStyleSheet("color: #7bd88f")
        self.override_box.setEnabled(any(u.overridable for u in unmet))
        self.signer.setText(f"{self.model.actor.full_name} ({self.model.actor.role.value})")

    def refresh(self) -> None:
        super().refresh()
        self.tick()

    def save(self) -> Pending[Any]:
        password, doc_password = self.password.text(), self.override_password.text()
        self.password.clear()
        self.override_password.clear()
        return self.model.discharge(
            {k: c.isChecked() for k, c in self.checks.items()},
            self._ready(),
            password=password,
            override_reason=self.override_reason.text(),
            physician=self.override_user.text(),
            physician_password=doc_password,
        )

    def _on_cancel_session_clicked(self) -> None:
        password = self.cancel_password.text()
        self.cancel_password.clear()
        pending = self.model.cancel(
            self.cancel_reason.text(), username=self.cancel_user.text(), password=password
        )
        self.saving = pending
        pending.on_done(self._on_saved)

    def saved(self, p: Pending[Any]) -> None:
        s = self.model.last_state
        if s is not None and s.discharge is not None:
            self.status.setText(f"Discharged. Total duration {s.discharge.total_min} min.")


class LimitsPanel(Panel):
    """A physician changes a limit for this session only, with a reason."""

    title = "Alarm limits for this session"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        info = QLabel(
            "The clinic's profile is in force. A change here applies to this session only, "
            "needs a physician and a reason, and is recorded with the session. Sources of the "
            "defaults are shown beside each limit."
        )
        info.setWordWrap(True)
        self.body.addWidget(info)
        self.grid = QGridLayout()
        self.body.addLayout(self.grid)
        self.rows: dict[str, tuple[QDoubleSpinBox | None, QDoubleSpinBox | None]] = {}
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the change (required)")
        self.body.addWidget(self.reason)
        who = QHBoxLayout()
        self.physician = QLineEdit()
        self.physician.setPlaceholderText("Physician user name (if you are not one)")
        self.physician_password = _password_field()
        who.addWidget(self.physician)
        who.addWidget(self.physician_password)
        self.body.addLayout(who)
        self.body.addStretch(1)

    def refresh(self) -> None:
        super().refresh()
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.rows = {}
        self.reason.clear()
        for i, lim in enumerate(self.model.profile.limits):
            self.grid.addWidget(QLabel(f"{lim.priority.marker} {lim.label}"), i, 0)
            spins: list[QDoubleSpinBox | None] = []
            for col, value in ((1, lim.low), (2, lim.high)):
                if value is None:
                    self.grid.addWidget(QLabel("—"), i, col)
                    spins.append(None)
                    continue
                spin = QDoubleSpinBox()
                spin.setRange(0, 400)
                spin.setDecimals(0)
                spin.setValue(value)
                self.grid.addWidget(spin, i, col)
                spins.append(spin)
            src = QLabel(lim.source)
            src.setStyleSheet("color: #8a96a3; font-size: 9pt")
            self.grid.addWidget(src, i, 3)
            self.rows[lim.id] = (spins[0], spins[1])

    def save(self) -> Pending[Any]:
        changed = []
        for lim in self.model.profile.limits:
            low_s, high_s = self.rows.get(lim.id, (None, None))
            low = low_s.value() if low_s is not None else None
            high = high_s.value() if high_s is not None else None
            if (low, high) != (lim.low, lim.high):
                changed.append((lim.id, low, high))
        if not changed:
            raise Refused(["No limit was changed"])
        user, password = self.physician.text(), self.physician_password.text()
        self.physician_password.clear()
        pendings = [
            (
                lambda lid=lid, low=low, high=high: self.model.change_limit(
                    lid, low, high, self.reason.text(), username=user, password=password
                )
            )
            for lid, low, high in changed
        ]
        return chain(pendings[0](), *pendings[1:])
