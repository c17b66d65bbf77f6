"""Entry panels shown in place of the chart while the nurse records something.

Each panel calls the chair's session model; a refused action shows its reasons in red and keeps
what was typed. Panels emit ``sig_done`` when the entry was saved (or cancelled).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
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

from devices.scenarios import SCENARIOS
from ketamon.domain.scales import CADSS_ITEMS, MOAAS_LEVELS, MOAAS_SOURCE, cadss_item_label
from ketamon.domain.session_rules import (
    CHECKLIST_LABELS,
    PrescriberDecision,
    Treatment,
)
from ketamon.domain.side_effects import BP_SYMPTOMS, SIDE_EFFECTS, Severity
from ketamon.model.chair_session import ActionRefused, ChairSessionModel
from ketamon.model.types import (
    CurrentUser,
    Entry,
    PatientDetails,
    Screening,
    SessionPlan,
    SideEffectEntry,
)

BIG = "min-height: 44px; font-size: 13pt;"


class Panel(QWidget):
    """Base: a title, a body, an error line, and Save/Cancel buttons."""

    sig_done = Signal()
    title = ""

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        outer = QVBoxLayout(self)
        head = QLabel(f"<b>{self.title}</b>")
        head.setStyleSheet("font-size: 15pt")
        outer.addWidget(head)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        self.body = QVBoxLayout(body)
        scroll.setWidget(body)
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

    def save_text(self) -> str:
        return "Save"

    def refresh(self) -> None:
        """Called when the panel is shown again."""
        self.error.setText("")

    def save(self) -> None:
        raise NotImplementedError

    def _on_save_clicked(self) -> None:
        try:
            self.save()
        except ActionRefused as exc:
            self.error.setText("\n".join(f"• {r}" for r in exc.reasons))
            return
        except ValueError as exc:
            self.error.setText(f"• {exc}")
            return
        self.error.setText("")
        self.sig_done.emit()

    def _on_cancel_clicked(self) -> None:
        self.error.setText("")
        self.sig_done.emit()


def physician_sign_in(
    authenticate: Callable[[str, str], CurrentUser] | None,
    user_field: QLineEdit,
    password_field: QLineEdit,
    who: str,
) -> CurrentUser:
    """A physician confirms an entry with their own user name and password (asked again every
    time); the password field is cleared whatever happens."""
    try:
        if authenticate is None:
            raise ActionRefused([f"{who} sign-in is not available"])
        try:
            user = authenticate(user_field.text().strip(), password_field.text())
        except Exception as exc:
            raise ActionRefused([f"{who} sign-in failed: {exc}"]) from exc
    finally:
        password_field.clear()
    if not user.is_physician:
        raise ActionRefused([f"{user.full_name} is not a physician"])
    return user


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


class StartSessionPanel(Panel):
    title = "Start a session"

    def __init__(
        self,
        model: ChairSessionModel,
        find_patients: Callable[[str], list[PatientDetails]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(model, parent)
        self._find = find_patients
        self._found: list[PatientDetails] = []
        pick = QGroupBox("Patient: search by name or MRN, or enter a new one")
        pl = QVBoxLayout(pick)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Name or MRN")
        self.search.textChanged.connect(self._on_search_text_changed)
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
        tl.addWidget(self.other, 2, 0)
        tl.addWidget(self.first_treatment, 2, 1)
        self.body.addWidget(treat)
        mon = QGroupBox("The chair's monitor")
        ml = QGridLayout(mon)
        self.monitor_label = QLabel(f"Now: {model.chair.monitor.description}")
        ml.addWidget(self.monitor_label, 0, 0, 1, 4)
        self.protocol = QComboBox()
        self.protocol.addItems(["simulator", "intellivue", "datex", "masimo", "hl7"])
        self.address = QLineEdit()
        self.address.setPlaceholderText(
            "serial port, e.g. /dev/ttyUSB0 (HL7: HOST:PORT, or listen:0.0.0.0:6661)"
        )
        self.scenario = QComboBox()
        self.scenario.addItems(list(SCENARIOS))
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

    def _on_protocol_changed(self, protocol: str) -> None:
        self.scenario.setVisible(protocol == "simulator")
        self.address.setVisible(protocol != "simulator")

    def _on_connect_clicked(self) -> None:
        try:
            desc = self.model.connect_monitor(
                self.protocol.currentText(), self.address.text(), self.scenario.currentText()
            )
        except ActionRefused as exc:
            self.error.setText("\n".join(f"• {r}" for r in exc.reasons))
            return
        self.error.setText("")
        self.monitor_label.setText(f"Now: {desc}")

    def refresh(self) -> None:
        super().refresh()
        self.monitor_label.setText(f"Now: {self.model.chair.monitor.description}")

    def _on_search_text_changed(self, text: str) -> None:
        self._found = self._find(text.strip()) if text.strip() else []
        self.results.clear()
        for p in self._found:
            self.results.addItem(p.label)

    def _on_results_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._found):
            p = self._found[row]
            self.mrn.setText(p.mrn)
            self.first.setText(p.first_name)
            self.last.setText(p.last_name)
            self.dob.setText(p.date_of_birth.isoformat() if p.date_of_birth else "")
            self.sex.setCurrentText(p.sex or "")
            self.weight.setValue(p.weight_kg or self.weight.minimum())
            self.rems.setChecked(bool(p.rems_enrolled))

    def save(self) -> None:
        from datetime import date

        dob = None
        if self.dob.text().strip():
            try:
                dob = date.fromisoformat(self.dob.text().strip())
            except ValueError:
                raise ActionRefused(["Date of birth must be YYYY-MM-DD"]) from None
        patient = PatientDetails(
            mrn=self.mrn.text().strip(),
            first_name=self.first.text().strip(),
            last_name=self.last.text().strip(),
            date_of_birth=dob,
            sex=self.sex.currentText() or None,
            weight_kg=_value(self.weight),
            rems_enrolled=self.rems.isChecked(),
        )
        if self.iv.isChecked():
            plan = SessionPlan(
                Treatment.IV_KETAMINE,
                iv_mg_per_kg=_value(self.mgkg),
                iv_minutes=_value(self.minutes),
                first_treatment=self.first_treatment.isChecked(),
            )
        elif self.other.isChecked():
            plan = SessionPlan(Treatment.OTHER, first_treatment=self.first_treatment.isChecked())
        else:
            plan = SessionPlan(
                Treatment.ESKETAMINE,
                dose_mg=84.0 if self.esk84.isChecked() else 56.0,
                first_treatment=self.first_treatment.isChecked(),
            )
        self.model.start_session(patient, plan)


class ScreeningPanel(Panel):
    title = "Pre-dose screening"

    def __init__(
        self,
        model: ChairSessionModel,
        authenticate: Callable[[str, str], CurrentUser] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(model, parent)
        self._authenticate = authenticate
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
        self.prescriber_password = QLineEdit()
        self.prescriber_password.setPlaceholderText("Password")
        self.prescriber_password.setEchoMode(QLineEdit.EchoMode.Password)
        dl.addWidget(self.proceed)
        dl.addWidget(self.delay)
        dl.addWidget(self.prescriber)
        dl.addWidget(self.prescriber_password)
        self.decision_box = dec
        self.body.addWidget(dec)
        checks = QGroupBox("Checks")
        cl = QGridLayout(checks)
        self.fasting = QCheckBox("Fasting as instructed (no food 2 h, no liquids 30 min)")
        self.escort = QCheckBox("Escort / ride home confirmed")
        self.rems = QCheckBox("REMS enrolment confirmed (esketamine)")
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
        s = self.model.session
        if s is not None:
            self.rems.setChecked(bool(s.patient.rems_enrolled))
            self.rems.setVisible(s.plan.treatment is Treatment.ESKETAMINE)
        self._on_bp_value_changed()

    def _on_use_monitor_clicked(self) -> None:
        bp = self.model.latest_nibp()
        if bp is None:
            self.error.setText(
                "• No NIBP from the monitor yet: start a cuff measurement or type it"
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
        adv = self.model.chair.profile.predose_advisory
        self.advisory.setText(
            f"⚠ Pre-dose BP above {adv.sys_above:.0f}/{adv.dia_above:.0f} "
            f"(advisory, {adv.source}):"
            " a prescriber decision is needed before the first dose."
            if need
            else ""
        )
        self.decision_box.setEnabled(need or not self._bp())

    def _prescriber(self) -> CurrentUser:
        return physician_sign_in(
            self._authenticate, self.prescriber, self.prescriber_password, "Prescriber"
        )

    def save(self) -> None:
        decision = (
            PrescriberDecision.PROCEED
            if self.proceed.isChecked()
            else PrescriberDecision.DELAY
            if self.delay.isChecked()
            else None
        )
        if not self.model.needs_prescriber_decision(self._bp()):
            decision = None
        override = self.override.text().strip() if self._bp() is None else ""
        prescriber = self._prescriber() if decision is not None or override else None
        s = self.model.session
        esk = s is not None and s.plan.treatment is Treatment.ESKETAMINE
        self.model.record_screening(
            Screening(
                bp=self._bp(),
                hr=_value(self.hr),
                bp_source=self._source,
                fasting=self.fasting.isChecked(),
                escort_confirmed=self.escort.isChecked(),
                rems_enrolled=self.rems.isChecked() if esk else None,
                decision=decision,
                decision_by=prescriber.full_name if prescriber and decision else "",
                decision_by_id=prescriber.id if prescriber and decision else None,
                override_reason=override,
                override_by_id=prescriber.id if prescriber and override else None,
                **{k: b.isChecked() for k, b in self.meds.items()},
            )
        )


class DosePanel(Panel):
    title = "Dosing"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
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
        self.countdown = QLabel("")
        self.countdown.setStyleSheet("font-size: 22pt; font-weight: bold; color: #ffcc00")
        self.body.addWidget(self.countdown)
        self.blockers = QLabel("")
        self.blockers.setWordWrap(True)
        self.body.addWidget(self.blockers)
        self.stop_button = QPushButton("Stop infusion")
        self.stop_button.setStyleSheet(BIG)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.body.addWidget(self.stop_button)
        self.body.addStretch(1)

    def save_text(self) -> str:
        return "Log dose"

    def refresh(self) -> None:
        super().refresh()
        s = self.model.session
        if s is None:
            return
        if s.plan.treatment is Treatment.ESKETAMINE:
            from ketamon.domain.session_rules import devices_for_dose

            n = devices_for_dose(s.plan.dose_mg or 56.0)
            given = len(s.device_times)
            lines = [f"Esketamine {s.plan.dose_mg:g} mg: {given} of {n} devices given"]
            zero = s.first_dose
            for i, t in enumerate(s.device_times, 1):
                rel = "" if zero is None else f" (T+{(t - zero).total_seconds() / 60:.0f} min)"
                lines.append(f"  Device {i}: {t.astimezone().strftime('%H:%M:%S')}{rel}")
            self.info.setText("\n".join(lines))
            self.save_button.setText(f"Log device {min(given + 1, n)}")
            self.lot_row.setVisible(True)
            self.stop_button.setVisible(False)
        elif s.plan.treatment is Treatment.IV_KETAMINE:
            from ketamon.domain.session_rules import iv_dose_mg, iv_rate_mg_per_min

            try:
                mg = iv_dose_mg(s.plan.iv_mg_per_kg or 0, s.patient.weight_kg or 0)
                rate = iv_rate_mg_per_min(mg, s.plan.iv_minutes or 0)
                text = (
                    f"IV ketamine {s.plan.iv_mg_per_kg:g} mg/kg × {s.patient.weight_kg:g} kg"
                    f" = {mg:g} mg over {s.plan.iv_minutes:g} min ({rate:g} mg/min)"
                )
            except ValueError as exc:
                text = f"IV dose cannot be computed: {exc}"
            state = (
                "running since " + s.infusion_start.astimezone().strftime("%H:%M")
                if s.infusion_start and not s.infusion_stop
                else "stopped"
                if s.infusion_stop
                else "not started"
            )
            self.info.setText(f"{text}\nInfusion {state}")
            self.save_button.setText("Start infusion")
            self.save_button.setEnabled(s.infusion_start is None)
            self.lot_row.setVisible(False)
            self.stop_button.setVisible(s.infusion_start is not None and s.infusion_stop is None)
        else:
            self.info.setText("Other treatment: log the start of treatment.")
            self.save_button.setText("Log treatment start")
            self.lot_row.setVisible(False)
            self.stop_button.setVisible(False)
        self.tick()

    def tick(self) -> None:
        left = self.model.next_device_in_s()
        self.countdown.setText(
            ""
            if left is None
            else (
                f"Next device in {int(left // 60)}:{int(left % 60):02d}"
                if left > 0
                else "Next device: ready"
            )
        )
        blockers = self.model.dose_blockers()
        self.blockers.setText("\n".join(f"• {b}" for b in blockers))

    def save(self) -> None:
        s = self.model.session
        if s is None:
            raise ActionRefused(["Start a session first"])
        if s.plan.treatment is Treatment.ESKETAMINE:
            self.model.log_esketamine_device(self.lot.text())
        elif s.plan.treatment is Treatment.IV_KETAMINE:
            self.model.start_infusion()
        else:
            self.model.log_other_treatment()

    def _on_stop_clicked(self) -> None:
        try:
            self.model.stop_infusion()
        except ActionRefused as exc:
            self.error.setText("\n".join(f"• {r}" for r in exc.reasons))
            return
        self.sig_done.emit()


class MoaasPanel(Panel):
    title = "Sedation: MOAA/S (one tap records)"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
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

    def _record(self, score: int) -> None:
        try:
            self.model.record_moaas(score)
        except ActionRefused as exc:
            self.error.setText("\n".join(f"• {r}" for r in exc.reasons))
            return
        self.sig_done.emit()


class CadssPanel(Panel):
    title = "Dissociation: CADSS (23 items, 0–4)"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        note = QLabel(
            "Item numbers and neutral labels only; the item wording is licensed "
            "separately and is not shipped with ketamon."
        )
        note.setWordWrap(True)
        note.setStyleSheet("color: #8a96a3")
        self.body.addWidget(note)
        grid = QGridLayout()
        self.groups: dict[int, QButtonGroup] = {}
        for item in range(1, CADSS_ITEMS + 1):
            grid.addWidget(QLabel(cadss_item_label(item)), item, 0)
            g = QButtonGroup(self)
            for score in range(5):
                b = QPushButton(str(score))
                b.setCheckable(True)
                b.setMinimumSize(44, 36)
                g.addButton(b, score)
                grid.addWidget(b, item, 1 + score)
            g.idClicked.connect(self._on_score_clicked)
            self.groups[item] = g
        self.body.addLayout(grid)
        self.total = QLabel("Total: –")
        self.total.setStyleSheet("font-size: 14pt; font-weight: bold")
        self.body.addWidget(self.total)

    def refresh(self) -> None:
        super().refresh()
        for g in self.groups.values():
            g.setExclusive(False)
            for b in g.buttons():
                b.setChecked(False)
            g.setExclusive(True)
        self._on_score_clicked(0)

    def items(self) -> dict[int, int]:
        return {i: g.checkedId() for i, g in self.groups.items() if g.checkedId() >= 0}

    def set_scores(self, scores: dict[int, int]) -> None:
        for i, v in scores.items():
            self.groups[i].button(v).setChecked(True)
        self._on_score_clicked(0)

    def _on_score_clicked(self, _id: int) -> None:
        items = self.items()
        total = sum(items.values())
        s = self.model.session
        pre = s.predose_cadss_total if s else None
        change = "" if pre is None else f", change from pre-dose {total - pre:+d}"
        self.total.setText(f"Total: {total} of 92 ({len(items)}/23 items scored{change})")

    def save(self) -> None:
        self.model.record_cadss(self.items())


class SideEffectsPanel(Panel):
    title = "Side effects"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Effect</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Severity</b>"), 0, 1)
        grid.addWidget(QLabel("<b>Onset (min after dose)</b>"), 0, 2)
        grid.addWidget(QLabel("<b>Serious adverse event?</b>"), 0, 3)
        self.rows: dict[str, tuple[QCheckBox, QComboBox, QSpinBox, QComboBox | None]] = {}
        for i, se in enumerate(SIDE_EFFECTS, 1):
            box = QCheckBox(se.label + (" ⚠" if se.serious else ""))
            sev = QComboBox()
            sev.addItems([s.value for s in Severity if s is not Severity.NONE])
            onset = QSpinBox()
            onset.setRange(-60, 600)
            sae: QComboBox | None = None
            grid.addWidget(box, i, 0)
            grid.addWidget(sev, i, 1)
            grid.addWidget(onset, i, 2)
            if se.serious:
                sae = QComboBox()
                sae.addItems(["— answer —", "No", "Yes"])
                grid.addWidget(sae, i, 3)
            self.rows[se.key] = (box, sev, onset, sae)
        self.body.addLayout(grid)
        self.other_text = QLineEdit()
        self.other_text.setPlaceholderText("Details (for 'Other' or any item)")
        self.body.addWidget(self.other_text)
        self.suggested = QLabel("")
        self.suggested.setStyleSheet("color: #ffcc00")
        self.body.addWidget(self.suggested)

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
        labels = [self.rows[k][0].text() for k in suggested]
        self.suggested.setText(
            "Suggested from flagged vitals: " + ", ".join(labels) if labels else ""
        )

    def save(self) -> None:
        clock = self.model.session_clock()
        entries = []
        for key, (box, sev, onset, sae) in self.rows.items():
            if not box.isChecked():
                continue
            serious = None if sae is None or sae.currentIndex() == 0 else sae.currentIndex() == 2
            label = box.text().removesuffix(" ⚠")
            entries.append(
                SideEffectEntry(
                    key=key,
                    label=label,
                    severity=Severity(sev.currentText()),
                    onset=clock.zero + timedelta(minutes=onset.value()),
                    serious=serious if sae is not None else False,
                    text=self.other_text.text().strip(),
                )
            )
        if not entries:
            raise ActionRefused(["Tick at least one side effect"])
        self.model.record_side_effects(entries)


class NotePanel(Panel):
    title = "Notes"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
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
        s = self.model.session
        for e in s.entries if s else []:
            if e.kind == "note":
                self.history.addItem(
                    f"{e.time.astimezone().strftime('%H:%M')} · {e.author} · {e.value}"
                )

    def save(self) -> None:
        self.model.add_note(self.text.toPlainText())


class EntriesPanel(Panel):
    """Everything recorded at this chair with its time and author; a MOAA/S score, a side
    effect's severity or a note can be corrected, always with a reason (audited)."""

    title = "Entries"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        self.list = QListWidget()
        self.list.setMinimumHeight(220)
        self.body.addWidget(self.list)
        row = QHBoxLayout()
        self.choice = QComboBox()
        self.text = QLineEdit()
        row.addWidget(QLabel("Correct to"))
        row.addWidget(self.choice)
        row.addWidget(self.text, 1)
        self.body.addLayout(row)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the correction (required, audited)")
        self.body.addWidget(self.reason)
        self.body.addStretch(1)
        self.list.currentRowChanged.connect(self._on_list_row_changed)
        self._ids: list[int] = []

    def save_text(self) -> str:
        return "Save correction"

    def refresh(self) -> None:
        super().refresh()
        self.list.clear()
        self.reason.clear()
        s = self.model.session
        entries = list(s.entries) if s else []
        self._ids = [e.id for e in entries]
        for e in entries:
            self.list.addItem(
                f"{e.time.astimezone().strftime('%H:%M')} · {e.author} · {e.summary}"
            )
        self._on_list_row_changed(self.list.currentRow())

    def _selected(self) -> Entry | None:
        s = self.model.session
        row = self.list.currentRow()
        if s is None or not 0 <= row < len(self._ids):
            return None
        return next((e for e in s.entries if e.id == self._ids[row]), None)

    def _on_list_row_changed(self, _row: int) -> None:
        e = self._selected()
        self.choice.clear()
        self.text.clear()
        kind = e.kind if e else ""
        if kind == "moaas":
            self.choice.addItems([str(i) for i in range(6)])
        elif kind == "side_effect":
            self.choice.addItems(["mild", "moderate", "severe"])
        if e is not None and kind in ("moaas", "side_effect"):
            self.choice.setCurrentText(e.value)
        if e is not None and kind == "note":
            self.text.setText(e.value)
        self.choice.setVisible(kind in ("moaas", "side_effect"))
        self.text.setVisible(kind == "note")

    def save(self) -> None:
        e = self._selected()
        if e is None:
            raise ActionRefused(["Select the entry to correct"])
        value = self.text.text() if e.kind == "note" else self.choice.currentText()
        self.model.correct_entry(e.id, value, self.reason.text())


class VitalsPanel(Panel):
    title = "Enter vitals by hand"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
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

    def save(self) -> None:
        values = {k: v for k, f in self.fields.items() if (v := _value(f)) is not None}
        if not values and self.reason_40.text().strip():
            self.model.record_bp40_reason(self.reason_40.text())
            return
        self.model.record_manual_vitals(values)


class SymptomPanel(Panel):
    title = "BP flagged: ask about symptoms"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        info = QLabel(
            "A blood-pressure flag was raised. Ask the patient; any 'Yes' raises a "
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
        self.body.addStretch(1)

    def refresh(self) -> None:
        super().refresh()
        for g in self.answers.values():
            g.setExclusive(False)
            for b in g.buttons():
                b.setChecked(False)
            g.setExclusive(True)

    def set_answers(self, answers: dict[str, bool]) -> None:
        for k, v in answers.items():
            self.answers[k].button(1 if v else 0).setChecked(True)

    def save(self) -> None:
        answers = {k: g.checkedId() == 1 for k, g in self.answers.items() if g.checkedId() >= 0}
        self.model.record_symptom_check(answers)


class DischargePanel(Panel):
    title = "Discharge"

    def __init__(
        self,
        model: ChairSessionModel,
        authenticate: Callable[[str, str], CurrentUser] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(model, parent)
        self._authenticate = authenticate
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("font-size: 13pt")
        self.body.addWidget(self.status)
        box = QGroupBox("Checklist")
        bl = QVBoxLayout(box)
        self.checks = {item: QCheckBox(label) for item, label in CHECKLIST_LABELS.items()}
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
        ov = QGroupBox("Discharge before 120 min: physician override")
        ol = QFormLayout(ov)
        self.override_reason = QLineEdit()
        self.override_user = QLineEdit()
        self.override_password = QLineEdit()
        self.override_password.setEchoMode(QLineEdit.EchoMode.Password)
        ol.addRow("Reason", self.override_reason)
        ol.addRow("Physician user name", self.override_user)
        ol.addRow("Password", self.override_password)
        self.body.addWidget(ov)
        self.blockers = QLabel("")
        self.blockers.setWordWrap(True)
        self.body.addWidget(self.blockers)
        self.body.addStretch(1)
        for c in self.checks.values():
            c.toggled.connect(self.tick)
        self.ready.valueChanged.connect(self.tick)

    def save_text(self) -> str:
        return "Discharge"

    def tick(self) -> None:
        clock = self.model.session_clock()
        now = self.model.now()
        if clock.first_dose is None:
            self.status.setText("No dose logged.")
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
        ready = self.ready.value()
        b = self.model.discharge_blockers(
            {k: c.isChecked() for k, c in self.checks.items()},
            None if ready < 0 else ready,
            self.override_reason.text(),
        )
        self.blockers.setText("\n".join(f"• {r}" for r in b))

    def refresh(self) -> None:
        super().refresh()
        self.tick()

    def save(self) -> None:
        override_by = None
        if self.override_reason.text().strip():
            override_by = physician_sign_in(
                self._authenticate, self.override_user, self.override_password, "Physician"
            )
        ready = self.ready.value()
        if ready < 0:
            raise ActionRefused(["Answer: when would the patient have been ready to leave?"])
        total = self.model.discharge(
            {k: c.isChecked() for k, c in self.checks.items()},
            ready,
            self.override_reason.text(),
            override_by,
        )
        self.status.setText(f"Discharged. Total duration {total} min.")


class LimitsPanel(Panel):
    title = "Alarm limits for this session"

    def __init__(self, model: ChairSessionModel, parent: QWidget | None = None) -> None:
        super().__init__(model, parent)
        info = QLabel(
            "The clinic's profile is in force. A change here applies to this session only, "
            "needs a reason, and is recorded with the session. Sources of the defaults are "
            "shown beside each limit."
        )
        info.setWordWrap(True)
        self.body.addWidget(info)
        self.grid = QGridLayout()
        self.body.addLayout(self.grid)
        self.rows: dict[str, tuple[QDoubleSpinBox | None, QDoubleSpinBox | None]] = {}
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for the change (required)")
        self.body.addWidget(self.reason)
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
        for i, lim in enumerate(self.model.chair.profile.limits):
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

    def save(self) -> None:
        changed = []
        for lim in self.model.chair.profile.limits:
            low_s, high_s = self.rows.get(lim.id, (None, None))
            low = low_s.value() if low_s is not None else None
            high = high_s.value() if high_s is not None else None
            if (low, high) != (lim.low, lim.high):
                changed.append((lim.id, low, high))
        if not changed:
            raise ActionRefused(["No limit was changed"])
        for lid, low, high in changed:
            self.model.override_threshold(lid, low, high, self.reason.text())
