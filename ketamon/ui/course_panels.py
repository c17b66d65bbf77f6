"""The treatment course at the chair (issue 15): one "Course" panel with a tab per task.

* **Screening** - the course's first-visit screening (and its plan when the patient has no
  course yet), each item yes / no / unknown with a note; a physician's override of a
  contraindication with a reason; the precautions and what stops dosing, as last read.
* **Scales** - PHQ-9 (its full text, big touch buttons: the patient may fill it before dosing),
  BPRS+, CGI-S, CGI-I, MADRS (item numbers only), RASS; after a PHQ-9 item 9 above 0, the
  clinician records the action taken.
* **Waste** - drug drawn and not given, or a partly used device, witnessed by a second user
  signing in with their own password.
* **Therapist** - a therapist joins the session (their sign-in) and writes timed notes.

And :class:`AdministerForm`, the IM / oral / sublingual dose's supply, embedded in the dose
panel. Widgets only: every entry goes to the chair's presenter (``CourseActions``).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.course import CoursePlan
from ketamon.domain.dosing import ESKETAMINE_PRODUCT, IM_SITES, ORAL_FORMS, Supply
from ketamon.domain.outcome_scales import SPECS, ScaleId, ScalePack, parse_scale_pack
from ketamon.domain.screening import CONTRAINDICATIONS, PRECAUTIONS, Answer, ItemAnswer
from ketamon.domain.session_rules import Treatment
from ketamon.presenters.chair import ChairPresenter, Refused
from ketamon.presenters.course import CourseActions
from ketamon.presenters.runner import Pending
from ketamon.resources import read_text
from ketamon.ui.course import CourseViewWidget
from ketamon.ui.panels import BIG, Panel

RASS_LEVELS = {
    4: "Combative",
    3: "Very agitated",
    2: "Agitated",
    1: "Restless",
    0: "Alert and calm",
    -1: "Drowsy (eye contact to voice > 10 s)",
    -2: "Light sedation (eye contact < 10 s)",
    -3: "Moderate sedation (movement to voice, no eye contact)",
    -4: "Deep sedation (movement only to physical stimulation)",
    -5: "Unarousable",
}
RASS_SOURCE = "RASS: Sessler et al., Am J Respir Crit Care Med 2002 (freely reproduced)"


def _packs() -> dict[ScaleId, ScalePack]:
    return {s: parse_scale_pack(read_text("scales", f"{s.value}.toml"), s.value) for s in ScaleId}


class AdministerForm(QGroupBox):
    """The IM or oral / sublingual dose's supply: product, concentration, lot, expiry, the
    quantity drawn, and (IM) the injection site."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dose accountability", parent)
        form = QFormLayout(self)
        self.product = QLineEdit()
        self.product.setPlaceholderText("e.g. Ketamine HCl 50 mg/mL vial")
        self.concentration = QDoubleSpinBox()
        self.concentration.setRange(0, 1000)
        self.concentration.setDecimals(1)
        self.lot = QLineEdit()
        self.expiry = QLineEdit()
        self.expiry.setPlaceholderText("YYYY-MM-DD")
        self.drawn = QDoubleSpinBox()
        self.drawn.setRange(0, 2000)
        self.drawn.setDecimals(1)
        self.site = QComboBox()
        self.site.addItem("", "")
        for key, label in IM_SITES.items():
            self.site.addItem(label, key)
        self.planned = QLabel("")
        form.addRow("Dose", self.planned)
        form.addRow("Product", self.product)
        form.addRow("Concentration (mg/mL, or mg per unit)", self.concentration)
        form.addRow("Lot", self.lot)
        form.addRow("Expiry", self.expiry)
        form.addRow("Drawn / dispensed (mg)", self.drawn)
        self.site_label = QLabel("Injection site")
        form.addRow(self.site_label, self.site)

    def show_for(self, treatment: Treatment, planned: str) -> None:
        self.planned.setText(planned)
        im = treatment is Treatment.IM_KETAMINE
        self.site.setVisible(im)
        self.site_label.setVisible(im)

    def supply(self) -> Supply:
        return Supply(
            self.product.text().strip(),
            float(self.concentration.value()),
            self.lot.text().strip(),
            self.expiry.text().strip(),
        )


def planned_text(model: ChairPresenter) -> str:
    s = model.state
    if s is None:
        return ""
    p = s.plan
    if p.treatment is Treatment.IM_KETAMINE and p.im_mg_per_kg and s.patient.weight_kg:
        mg = round(p.im_mg_per_kg * s.patient.weight_kg, 1)
        return f"IM {p.im_mg_per_kg:g} mg/kg × {s.patient.weight_kg:g} kg = {mg:g} mg"
    if p.treatment is Treatment.ORAL_KETAMINE and p.oral_mg:
        route, label = ORAL_FORMS.get(p.oral_form, ("", p.oral_form))
        return f"{route} {p.oral_mg:g} mg ({label})"
    return ""


# ---- the tabs ----------------------------------------------------------------------------------


class _Tab(QWidget):
    def __init__(self, panel: CoursePanel) -> None:
        super().__init__()
        self.panel = panel
        self.course_actions = panel.course_actions
        self.lay = QVBoxLayout(self)

    def save(self) -> Pending[Any] | None:
        raise NotImplementedError

    def refresh(self) -> None:
        pass


class ScreeningTab(_Tab):
    def __init__(self, panel: CoursePanel) -> None:
        super().__init__(panel)
        self.gate_text = QLabel("")
        self.gate_text.setWordWrap(True)
        self.gate_text.setStyleSheet("font-size: 12pt")
        self.view_button = QPushButton("Course view: every session and the trends")
        self.view_button.setStyleSheet(BIG)
        self.view_button.clicked.connect(panel.open_course_view)
        top = QHBoxLayout()
        top.addWidget(self.gate_text, 1)
        top.addWidget(self.view_button)
        self.lay.addLayout(top)
        plan = self.plan_box = QGroupBox("Course plan (a new course)")
        pf = QFormLayout(plan)
        self.indication = QLineEdit("Treatment-resistant depression")
        self.induction = QSpinBox()
        self.induction.setRange(0, 52)
        self.induction.setValue(8)
        self.per_week = QDoubleSpinBox()
        self.per_week.setRange(0.25, 7)
        self.per_week.setValue(2)
        self.maintenance = QSpinBox()
        self.maintenance.setRange(0, 200)
        self.maintenance.setValue(4)
        self.interval = QSpinBox()
        self.interval.setRange(1, 90)
        self.interval.setValue(7)
        pf.addRow("Indication", self.indication)
        pf.addRow("Induction sessions", self.induction)
        pf.addRow("… per week", self.per_week)
        pf.addRow("Maintenance sessions", self.maintenance)
        pf.addRow("… every (days)", self.interval)
        self.lay.addWidget(plan)
        items = QGroupBox("First-visit screening (a prescriber answers)")
        grid = QGridLayout(items)
        self.answers: dict[str, tuple[QComboBox, QLineEdit]] = {}
        row = 0
        for heading, entries in (
            ("Contraindications (a yes or unknown stops dosing)", CONTRAINDICATIONS),
            ("Precautions (shown on every session)", PRECAUTIONS),
        ):
            h = QLabel(f"<b>{heading}</b>")
            grid.addWidget(h, row, 0, 1, 3)
            row += 1
            for key, label in entries:
                combo = QComboBox()
                combo.addItem("—", None)
                for a in Answer:
                    combo.addItem(a.value, a.value)
                note = QLineEdit()
                note.setPlaceholderText("note")
                text = QLabel(label)
                text.setWordWrap(True)
                grid.addWidget(text, row, 0)
                grid.addWidget(combo, row, 1)
                grid.addWidget(note, row, 2)
                self.answers[key] = (combo, note)
                row += 1
        self.lay.addWidget(items)
        signer = QHBoxLayout()
        self.prescriber = QLineEdit()
        self.prescriber.setPlaceholderText("Prescriber username (blank: you)")
        self.prescriber_password = QLineEdit()
        self.prescriber_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.prescriber_password.setPlaceholderText("Prescriber password")
        signer.addWidget(QLabel("Answered by"))
        signer.addWidget(self.prescriber)
        signer.addWidget(self.prescriber_password)
        self.lay.addLayout(signer)
        over = QGroupBox("Physician override of a contraindication")
        of = QHBoxLayout(over)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason")
        self.doctor = QLineEdit()
        self.doctor.setPlaceholderText("Physician username (blank: you)")
        self.doctor_password = QLineEdit()
        self.doctor_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.doctor_password.setPlaceholderText("Password")
        self.override_button = QPushButton("Override")
        self.override_button.setStyleSheet(BIG)
        self.override_button.clicked.connect(self._on_override_clicked)
        for w in (self.reason, self.doctor, self.doctor_password, self.override_button):
            of.addWidget(w)
        self.lay.addWidget(over)
        self.lay.addStretch(1)

    def refresh(self) -> None:
        gate = self.course_actions.gate
        course = gate.course
        self.plan_box.setVisible(course is None)
        self.view_button.setEnabled(course is not None)
        lines = []
        if course is None:
            lines.append("No course yet: enter its plan and screen the patient.")
        else:
            sc = course.screening
            when = f"screened {sc.at.date().isoformat()} by {sc.by}" if sc else "not screened"
            lines.append(f"Course {course.course_id}: {course.plan.indication} — {when}")
        lines += [f"✖ {b}" for b in gate.blockers]
        lines += [f"⚠ Precaution: {p}" for p in gate.precautions]
        self.gate_text.setText("\n".join(lines))
        self.gate_text.setStyleSheet(
            "font-size: 12pt" + ("; color: #ff6b6b; font-weight: bold" if gate.blockers else "")
        )

    def save(self) -> Pending[Any]:
        answers: dict[str, ItemAnswer] = {}
        for key, (combo, note) in self.answers.items():
            a = combo.currentData()
            if a is not None:  # (Qt hands the enum back as its str value)
                answers[key] = ItemAnswer(Answer(str(a)), note.text().strip())
        plan = None
        if self.course_actions.gate.course is None:
            s = self.panel.model.state
            plan = CoursePlan(
                self.indication.text().strip(),
                s.plan.treatment.value if s is not None else "esketamine",
                self.panel.model.now().date(),
                self.induction.value(),
                self.per_week.value(),
                self.maintenance.value(),
                self.interval.value(),
            )
        p = self.course_actions.screen(
            answers,
            plan,
            username=self.prescriber.text(),
            password=self.prescriber_password.text(),
        )
        self.prescriber_password.clear()
        return p

    def _on_override_clicked(self) -> None:
        p = self.course_actions.override(
            self.reason.text(), self.doctor.text(), self.doctor_password.text()
        )
        self.doctor_password.clear()
        self.panel.track(p)


class ScalesTab(_Tab):
    CHOICES = (
        ("phq9", "PHQ-9"),
        ("bprs_plus", "BPRS+"),
        ("cgi_s", "CGI-S"),
        ("cgi_i", "CGI-I"),
        ("madrs", "MADRS"),
        ("rass", "RASS"),
    )

    def __init__(self, panel: CoursePanel) -> None:
        super().__init__(panel)
        self.packs = _packs()
        self.scale = QComboBox()
        for key, label in self.CHOICES:
            self.scale.addItem(label, key)
        self.scale.currentIndexChanged.connect(self._build)
        self.lay.addWidget(self.scale)
        self.licence = QLabel("")
        self.licence.setWordWrap(True)
        self.licence.setStyleSheet("color: #8a96a3; font-size: 9pt")
        self.lay.addWidget(self.licence)
        self.form = QWidget()
        self.form_lay = QVBoxLayout(self.form)
        self.lay.addWidget(self.form)
        self.groups: dict[int, QButtonGroup] = {}
        self.total = QLabel("")
        self.total.setStyleSheet("font-size: 13pt; font-weight: bold")
        self.lay.addWidget(self.total)
        act = self.action_box = QGroupBox("PHQ-9 item 9 above 0: record the action taken")
        al = QHBoxLayout(act)
        self.action = QLineEdit()
        self.action.setPlaceholderText("e.g. risk assessed, prescriber told, safety plan")
        self.action_button = QPushButton("Record action")
        self.action_button.setStyleSheet(BIG)
        self.action_button.clicked.connect(self._on_action_clicked)
        al.addWidget(self.action, 1)
        al.addWidget(self.action_button)
        act.setStyleSheet("QGroupBox { color: #ff6b6b; font-weight: bold }")
        self.lay.addWidget(act)
        self.lay.addStretch(1)
        self._build()

    def _clear(self) -> None:
        while self.form_lay.count():
            item = self.form_lay.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.groups = {}

    def _build(self) -> None:
        self._clear()
        key = str(self.scale.currentData())
        if key == "rass":
            self.licence.setText(RASS_SOURCE)
            self._item(1, "", {v: f"{v:+d} {t}" for v, t in RASS_LEVELS.items()}, column=True)
        else:
            pack = self.packs[ScaleId(key)]
            self.licence.setText(f"{pack.licence.value}: {pack.licence_note}. {pack.source}")
            if pack.stem:
                stem = QLabel(pack.stem)
                stem.setWordWrap(True)
                stem.setStyleSheet("font-size: 13pt")
                self.form_lay.addWidget(stem)
            for n in range(1, SPECS[pack.scale].items + 1):
                self._item(n, f"{n}. {pack.label(n)}", dict(pack.answers))
        self._update_total()

    def _item(self, n: int, label: str, answers: dict[int, str], column: bool = False) -> None:
        box = QWidget()
        bl = QVBoxLayout(box)
        bl.setContentsMargins(0, 2, 0, 2)
        if label:
            text = QLabel(label)
            text.setWordWrap(True)
            text.setStyleSheet("font-size: 12pt")
            bl.addWidget(text)
        row = QVBoxLayout() if column else QHBoxLayout()
        group = QButtonGroup(box)
        group.setExclusive(True)
        for value, answer in answers.items():
            # two lines (score, answer): the checked style's bold text still fits
            b = QPushButton(answer if column else f"{value}\n{answer}")
            b.setCheckable(True)
            b.setStyleSheet("min-height: 48px; font-size: 11pt; padding: 2px")
            group.addButton(b, value + 10)  # ids must be >= 0 (RASS goes to -5)
            row.addWidget(b)
        group.idClicked.connect(lambda _id: self._update_total())
        bl.addLayout(row)
        self.groups[n] = group
        self.form_lay.addWidget(box)

    def values(self) -> dict[int, int]:
        return {n: g.checkedId() - 10 for n, g in self.groups.items() if g.checkedId() != -1}

    def _update_total(self) -> None:
        key = str(self.scale.currentData())
        v = self.values()
        if key == "rass" or not v:
            self.total.setText("")
            return
        self.total.setText(f"Total so far: {sum(v.values())} ({len(v)} of {len(self.groups)})")

    def refresh(self) -> None:
        s = self.panel.model.state
        self.action_box.setVisible(bool(s and s.suicidality_pending))

    def save(self) -> Pending[Any]:
        key = str(self.scale.currentData())
        v = self.values()
        if key == "rass":
            if 1 not in v:
                raise Refused(["Choose the RASS level"])
            return self.panel.model.record_rass(v[1])
        return self.course_actions.record_scale(key, v)

    def saved(self) -> None:
        for g in self.groups.values():
            checked = g.checkedButton()
            if checked is not None:
                g.setExclusive(False)
                checked.setChecked(False)
                g.setExclusive(True)
        self._update_total()

    def _on_action_clicked(self) -> None:
        self.panel.track(self.course_actions.suicidality_action(self.action.text()))


class WasteTab(_Tab):
    def __init__(self, panel: CoursePanel) -> None:
        super().__init__(panel)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.lay.addWidget(self.info)
        form = QFormLayout()
        self.product = QLineEdit()
        self.lot = QLineEdit()
        self.mg = QDoubleSpinBox()
        self.mg.setRange(0, 2000)
        self.mg.setDecimals(1)
        self.device = QSpinBox()
        self.device.setRange(0, 3)
        self.device.setSpecialValueText("—")
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("e.g. drawn a full vial; device partly used")
        self.witness = QLineEdit()
        self.witness.setPlaceholderText("The witness's username (a second user)")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("The witness types their password")
        for label, w in (
            ("Product", self.product),
            ("Lot", self.lot),
            ("Wasted (mg)", self.mg),
            ("Esketamine device no.", self.device),
            ("Reason", self.reason),
            ("Witness", self.witness),
            ("Witness's password", self.password),
        ):
            form.addRow(label, w)
        self.lay.addLayout(form)
        self.lay.addStretch(1)

    def refresh(self) -> None:
        s = self.panel.model.state
        a = s.administration if s is not None else None
        if s is not None and a is not None:
            self.product.setText(a.product)
            self.lot.setText(a.lot)
            self.mg.setValue(s.unaccounted_mg)
            self.info.setText(
                f"Drawn {a.drawn_mg:g} mg, given {a.given_mg:g} mg: "
                f"{s.unaccounted_mg:g} mg still to account for"
            )
        elif s is not None and s.devices:
            self.product.setText(ESKETAMINE_PRODUCT)
            self.lot.setText(s.devices[-1].lot)
            self.info.setText("A partly used device: name it and what was left in it")
        else:
            self.info.setText("")

    def save(self) -> Pending[Any]:
        dev = self.device.value() or None
        p = self.course_actions.record_waste(
            self.product.text(),
            self.lot.text(),
            float(self.mg.value()),
            self.reason.text(),
            username=self.witness.text(),
            password=self.password.text(),
            device_number=dev,
        )
        self.password.clear()
        return p

    def saved(self) -> None:
        self.reason.clear()
        self.witness.clear()


class TherapistTab(_Tab):
    def __init__(self, panel: CoursePanel) -> None:
        super().__init__(panel)
        join = QGroupBox("A therapist joins this session (their sign-in)")
        jl = QHBoxLayout(join)
        self.user = QLineEdit()
        self.user.setPlaceholderText("Therapist username")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("Password")
        self.join_button = QPushButton("Assign")
        self.join_button.setStyleSheet(BIG)
        self.join_button.clicked.connect(self._on_join_clicked)
        for w in (self.user, self.password, self.join_button):
            jl.addWidget(w)
        self.lay.addWidget(join)
        self.assigned = QLabel("")
        self.lay.addWidget(self.assigned)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("Therapist's note (timed when saved; kept apart)")
        self.lay.addWidget(self.note)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.lay.addWidget(self.notes)
        self.lay.addStretch(1)

    def refresh(self) -> None:
        s = self.panel.model.state
        self.assigned.setText(
            "Assigned: " + (", ".join(s.therapists) if s and s.therapists else "nobody yet")
        )
        mine = s.therapist_notes if s is not None else ()
        self.notes.setText(
            "\n".join(f"{n.at.astimezone().strftime('%H:%M')} {n.by}: {n.text}" for n in mine)
        )

    def save(self) -> Pending[Any]:
        return self.course_actions.therapist_note(self.note.toPlainText())

    def saved(self) -> None:
        self.note.clear()

    def _on_join_clicked(self) -> None:
        p = self.course_actions.assign_therapist(self.user.text(), self.password.text())
        self.password.clear()
        self.panel.track(p)


class CoursePanel(Panel):
    title = "Treatment course"

    def __init__(self, model: ChairPresenter, parent: QWidget | None = None) -> None:
        self.course_actions = CourseActions(model)
        super().__init__(model, parent)
        self.tabs = QTabWidget()
        self.screening = ScreeningTab(self)
        self.scales = ScalesTab(self)
        self.waste = WasteTab(self)
        self.therapist = TherapistTab(self)
        for tab, name in (
            (self.screening, "Screening"),
            (self.scales, "Scales"),
            (self.waste, "Waste"),
            (self.therapist, "Therapist"),
        ):
            self.tabs.addTab(tab, name)
        self.course_view = CourseViewWidget()
        self.course_view.setMinimumHeight(620)  # the table and its trends (the panel scrolls)
        self.tabs.addTab(self.course_view, "Course view")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.body.addWidget(self.tabs)
        model.sig_changed.connect(self._on_changed)

    def current(self) -> _Tab | None:
        tab = self.tabs.currentWidget()
        return tab if isinstance(tab, _Tab) else None

    def refresh(self) -> None:
        super().refresh()
        tab = self.current()
        if tab is not None:
            tab.refresh()
        self.save_button.setVisible(tab is not None)

    def _on_tab_changed(self, _index: int) -> None:
        self.refresh()

    def _on_changed(self) -> None:
        tab = self.current()
        if self.isVisible() and tab is not None:
            tab.refresh()

    def save(self) -> Pending[Any] | None:
        tab = self.current()
        return None if tab is None else tab.save()

    def saved(self, p: Pending[Any]) -> None:
        tab = self.current()
        if tab is None:
            return
        done = getattr(tab, "saved", None)
        if callable(done):
            done()
        tab.refresh()

    def open_course_view(self) -> None:
        """The course view, on its own tab (read on the command thread)."""
        p = self.course_actions.course_view()
        self.saving = p
        p.on_done(self._on_course_view)

    def _on_course_view(self, p: Pending[Any]) -> None:
        if not p.ok or p.result is None:
            self.show_reasons(p.reasons)
            return
        self.error.setText("")
        self.course_view.show_view(p.result)
        self.tabs.setCurrentWidget(self.course_view)

    def track(self, p: Pending[Any]) -> None:
        """A tab's own button (override, item-9 action, assign): show its refusal or done."""
        self.saving = p
        p.on_done(self._on_side_done)

    def _on_side_done(self, p: Pending[Any]) -> None:
        if not p.ok:
            self.show_reasons(p.reasons)
            return
        self.error.setText("")
        tab = self.current()
        if tab is not None:
            tab.refresh()


__all__ = ["AdministerForm", "CoursePanel", "planned_text"]
