"""The review desk: finished sessions listed, one opened on one screen (its chart from pre-dose
to discharge, its figures, every entry in time order), signed by a physician with a meaning and
their password, then only signed addenda; the REMS form, printed and its submission recorded.
Auditors see everything and can change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.roles import Action
from ketamon.domain.thresholds import ThresholdProfile
from ketamon.presenters.review import ReviewPresenter, ReviewView
from ketamon.presenters.runner import Pending
from ketamon.ui import theme
from ketamon.ui.chart import TrendChartWidget

STATUSES = ("all", "open", "awaiting_signature", "signed", "addendum", "addendum_pending")
#: the date filter: (label, first day back, last day back); None: no bound
DAYS = (
    ("Any date", None, None),
    ("Today", 0, 0),
    ("Yesterday", 1, 1),
    ("Last 7 days", 6, 0),
    ("Last 30 days", 29, 0),
)
#: what the review desk exports to (ketamon.exports.FORMATS)
EXPORTS = (
    ("pdf", "PDF (the whole record, printable)"),
    ("csv", "CSV (zip: observations, doses, alarms)"),
    ("json", "JSON (the record, versioned schema)"),
    ("fhir", "FHIR R4 bundle (signed sessions)"),
)
PMF_STATES = ("any", "due", "warned", "overdue", "submitted", "not_required")


def _get(row: Any, *names: str, default: Any = "") -> Any:
    for n in names:
        if isinstance(row, dict) and n in row:
            return row[n]
        if hasattr(row, n):
            return getattr(row, n)
    return default


def _when(v: Any) -> str:
    if isinstance(v, datetime):
        return v.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(v or "")


def _typed(ftype: str, text: str) -> object:
    """A value typed in the form's table, as the field's type wants it (the core checks it)."""
    if ftype == "yesno":
        low = text.lower()
        return (
            True if low in ("yes", "y", "true") else False if low in ("no", "n", "false") else text
        )
    if ftype == "number":
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _password() -> QLineEdit:
    f = QLineEdit()
    f.setEchoMode(QLineEdit.EchoMode.Password)
    f.setPlaceholderText("Your password (asked at every signing)")
    return f


class ReviewWidget(QWidget):
    def __init__(
        self,
        model: ReviewPresenter,
        profile: ThresholdProfile,
        meanings: Sequence[tuple[str, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self._profile = profile
        self._meanings = list(meanings)
        self._rows: list[Any] = []
        self.pmf_counts: dict[str, int] = {}
        self.view: ReviewView | None = None
        root = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        root.addWidget(split)
        # ---- the list ------------------------------------------------------------------------
        left = QWidget()
        ll = QVBoxLayout(left)
        filters = QHBoxLayout()
        self.status = QComboBox()
        self.status.addItems([s.replace("_", " ") for s in STATUSES])
        self.pmf = QComboBox()
        self.pmf.addItems([f"PMF: {s.replace('_', ' ')}" for s in PMF_STATES])
        self.days = QComboBox()
        self.days.addItems([d[0] for d in DAYS])
        self.chair_filter = QComboBox()
        self.treatment_filter = QComboBox()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Patient or MRN")
        for w in (self.status, self.pmf, self.days, self.chair_filter, self.treatment_filter):
            w.currentIndexChanged.connect(self._fill_table)
        self.search.textChanged.connect(self._fill_table)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        filters.addWidget(self.status)
        filters.addWidget(self.pmf)
        filters.addWidget(refresh)
        ll.addLayout(filters)
        more = QHBoxLayout()
        more.addWidget(self.days)
        more.addWidget(self.chair_filter)
        more.addWidget(self.treatment_filter)
        ll.addLayout(more)
        ll.addWidget(self.search)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(
            ["Started", "Chair", "Patient", "Treatment", "Status", "PMF"]
        )
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.currentCellChanged.connect(self._on_table_current_cell_changed)
        ll.addWidget(self.table, 1)
        self.board = QLabel("")
        self.board.setObjectName("pmfBoard")
        ll.addWidget(self.board)
        self.emergency_board = QLabel("")
        self.emergency_board.setObjectName("emergencyBoard")
        self.emergency_board.setWordWrap(True)
        self.emergency_board.setStyleSheet("color: #ffb74d; font-weight: bold")
        self.emergency_board.setVisible(False)
        ll.addWidget(self.emergency_board)
        split.addWidget(left)
        # ---- one session -----------------------------------------------------------------------
        scroll = self.scroll_area = QScrollArea()
        scroll.setWidgetResizable(True)
        right = QWidget()
        self.body = QVBoxLayout(right)
        scroll.setWidget(right)
        split.addWidget(scroll)
        split.setSizes([430, 900])
        self.header = QLabel("Select a session")
        self.header.setStyleSheet("font-size: 14pt; font-weight: bold")
        self.header.setWordWrap(True)
        self.body.addWidget(self.header)
        self.chart_box = QVBoxLayout()
        self.body.addLayout(self.chart_box)
        self.chart: TrendChartWidget | None = None
        self.pleth_plot: pg.PlotWidget | None = None
        self.pleth_curve: pg.PlotDataItem | None = None
        self.figures = QLabel("")
        self.figures.setWordWrap(True)
        self.body.addWidget(self.figures)
        exports = QHBoxLayout()
        self.export_format = QComboBox()
        for fmt, label in EXPORTS:
            self.export_format.addItem(label, fmt)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._on_export_clicked)
        self.export_status = QLabel("")
        self.export_status.setWordWrap(True)
        exports.addWidget(QLabel("Export the session as"))
        exports.addWidget(self.export_format)
        exports.addWidget(self.export_button)
        exports.addWidget(self.export_status, 1)
        self.body.addLayout(exports)
        self.body.addWidget(QLabel("<b>Everything recorded, in time order</b>"))
        self.timeline = QListWidget()
        self.timeline.setMinimumHeight(220)
        self.body.addWidget(self.timeline)
        # signature
        sig = QGroupBox("Sign-off")
        sl = QFormLayout(sig)
        self.manifestation = QLabel("")
        self.manifestation.setObjectName("signatureManifestation")
        self.manifestation.setWordWrap(True)
        self.meaning = QComboBox()
        for mid, text in self._meanings:
            self.meaning.addItem(text, mid)
        self.sign_password = _password()
        self.sign_button = QPushButton("Sign")
        self.sign_button.clicked.connect(self._on_sign_clicked)
        sl.addRow(self.manifestation)
        sl.addRow("Meaning", self.meaning)
        sl.addRow("Password", self.sign_password)
        sl.addRow("", self.sign_button)
        self._sign_form = sl
        self.sign_box = sig
        self.body.addWidget(sig)
        add = QGroupBox("Addenda (a signed session changes only by a signed addendum)")
        al = QFormLayout(add)
        self.addenda = QListWidget()
        self.addenda.setMaximumHeight(110)
        self.addenda.setWordWrap(True)
        self.addendum_text = QPlainTextEdit()
        self.addendum_text.setMaximumHeight(80)
        self.addendum_password = _password()
        self.addendum_button = QPushButton("Sign the addendum")
        self.addendum_button.clicked.connect(self._on_addendum_clicked)
        self.countersign_button = QPushButton("Countersign the selected addendum")
        self.countersign_button.clicked.connect(self._on_countersign_clicked)
        al.addRow(self.addenda)
        al.addRow("", self.countersign_button)
        al.addRow("Addendum", self.addendum_text)
        al.addRow("Password", self.addendum_password)
        al.addRow("", self.addendum_button)
        self._addendum_form = al
        self.addendum_box = add
        self.body.addWidget(add)
        # the REMS form
        pmf = QGroupBox("REMS Patient Monitoring Form")
        pl = QVBoxLayout(pmf)
        self.pmf_status = QLabel("")
        self.pmf_status.setWordWrap(True)
        pl.addWidget(self.pmf_status)
        self.form_table = QTableWidget(0, 3)
        self.form_table.setHorizontalHeaderLabels(["Field", "Value", "From"])
        self.form_table.verticalHeader().setVisible(False)
        self.form_table.setMinimumHeight(260)
        pl.addWidget(self.form_table)
        row = QHBoxLayout()
        self.save_fields = QPushButton("Save the entered fields")
        self.save_fields.clicked.connect(self._on_save_fields_clicked)
        self.print_pdf = QPushButton("Print to PDF…")
        self.print_pdf.clicked.connect(self._on_print_clicked)
        row.addWidget(self.save_fields)
        row.addWidget(self.print_pdf)
        pl.addLayout(row)
        sub = QGridLayout()
        self.method = QComboBox()
        self.method.addItems(["fax", "portal"])
        self.submitted_at = QLineEdit()
        self.submitted_at.setPlaceholderText("When it was sent (YYYY-MM-DD HH:MM)")
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("Confirmation reference")
        self.submit_button = QPushButton("Record the submission")
        self.submit_button.clicked.connect(self._on_submit_clicked)
        sub.addWidget(self.method, 0, 0)
        sub.addWidget(self.submitted_at, 0, 1)
        sub.addWidget(self.reference, 0, 2)
        sub.addWidget(self.submit_button, 0, 3)
        pl.addLayout(sub)
        self.pmf_box = pmf
        self.body.addWidget(pmf)
        self.error = QLabel("")
        self.error.setObjectName("reviewError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff6b6b; font-weight: bold")
        self.body.addWidget(self.error)
        self.body.addStretch(1)
        model.sig_session_changed.connect(self._on_model_session_changed)
        self._show_nothing()

    # ---- the list -------------------------------------------------------------------------
    def _show_emergencies(self, p: Pending[Any]) -> None:
        rows = list(p.result or []) if p.ok else []
        self.emergency_board.setVisible(bool(rows))
        lines = [
            f"⚠ {len(rows)} emergency access sign-in{'s' if len(rows) != 1 else ''} "
            "awaiting an admin's review:"
        ]
        for e in rows[:5]:
            lines.append(
                f"• {_when(_get(e, 'started_at'))} {_get(e, 'full_name')} "
                f"({_get(e, 'role')}) at {_get(e, 'station')}: “{_get(e, 'reason')}”"
            )
        self.emergency_board.setText("\n".join(lines))

    def refresh(self) -> Pending[Any]:
        self.model.emergencies().on_done(self._show_emergencies)
        pending = self.model.sessions()

        def done(p: Pending[Any]) -> None:
            if p.ok:
                self._rows = list(p.result or [])
                chairs = {str(_get(r, "chair")) for r in self._rows}
                treatments = {str(_get(r, "treatment")) for r in self._rows}
                self._fill_choices(self.chair_filter, "Every chair", chairs)
                self._fill_choices(self.treatment_filter, "Every treatment", treatments)
                self._fill_table()
                if self.view is not None:  # what others recorded meanwhile, and who may act
                    self.open_session(self.view.session_id)
            else:
                self.error.setText("\n".join(p.reasons))

        return pending.on_done(done)

    def _fill_choices(self, box: QComboBox, everything: str, values: set[str]) -> None:
        """A filter's choices from the sessions listed, keeping the one chosen."""
        chosen = box.currentData()
        box.blockSignals(True)
        box.clear()
        box.addItem(everything, None)
        for v in sorted(values):
            box.addItem(v.replace("_", " "), v)
        i = box.findData(chosen)
        box.setCurrentIndex(max(i, 0))
        box.blockSignals(False)

    def _fill_table(self) -> None:
        status = STATUSES[self.status.currentIndex()]
        pmf = PMF_STATES[self.pmf.currentIndex()]
        text = self.search.text().strip().lower()
        _, back_from, back_to = DAYS[self.days.currentIndex()]
        today = self.model.now().astimezone().date()
        chair, treatment = self.chair_filter.currentData(), self.treatment_filter.currentData()
        shown = []
        for r in sorted(self._rows, key=lambda r: _when(_get(r, "started")), reverse=True):
            st = str(_get(r, "status"))
            pm = str(_get(r, "pmf", "pmf_status", default=""))
            started = _get(r, "started", default=None)
            if status != "all" and st != status:
                continue
            if pmf != "any" and pm != pmf:
                continue
            if back_from is not None and isinstance(started, datetime):
                ago = (today - started.astimezone().date()).days
                if not back_to <= ago <= back_from:  # type: ignore[operator]
                    continue
            if chair is not None and str(_get(r, "chair")) != chair:
                continue
            if treatment is not None and str(_get(r, "treatment")) != treatment:
                continue
            if text and text not in str(_get(r, "patient")).lower():
                continue
            shown.append(r)
        self._shown = shown
        self.table.setRowCount(len(shown))
        for i, r in enumerate(shown):
            cells = [
                _when(_get(r, "started")),
                str(_get(r, "chair")),
                str(_get(r, "patient")),
                str(_get(r, "treatment")).replace("_", " "),
                str(_get(r, "status")).replace("_", " "),
                str(_get(r, "pmf", "pmf_status", default="")).replace("_", " "),
            ]
            for j, v in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(v))
        counts: dict[str, int] = {}
        for r in self._rows:
            k = str(_get(r, "pmf", "pmf_status", default=""))
            counts[k] = counts.get(k, 0) + 1
        self.pmf_counts = counts
        self.board.setText(
            "PMF: "
            + ", ".join(
                f"{counts.get(k, 0)} {k}" for k in ("overdue", "warned", "due", "submitted")
            )
        )

    def _on_table_current_cell_changed(self, row: int, *_: int) -> None:
        if 0 <= row < len(getattr(self, "_shown", [])):
            sid = int(_get(self._shown[row], "session_id", "id"))
            self.open_session(sid)

    def _show_pleth(self, view: ReviewView) -> None:
        """The session's stored pleth under the chart, on the same minutes axis (drawn
        peak-downsampled to the screen's width: 8 hours are 3.6 million samples)."""
        t, v = view.pleth if view.pleth is not None else (np.empty(0), np.empty(0))
        if not len(t):
            if self.pleth_plot is not None:
                self.pleth_plot.setVisible(False)
                assert self.pleth_curve is not None
                self.pleth_curve.setData([], [])
            return
        if self.pleth_plot is None:
            plot = self.pleth_plot = pg.PlotWidget()
            plot.setFixedHeight(110)
            plot.setBackground(theme.BACKGROUND)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            plot.setLabel("left", "Pleth")
            plot.getAxis("left").setWidth(62)
            plot.getAxis("left").setStyle(showValues=False)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            colour = theme.PARAMETER_COLOURS.get("spo2", "#00bcd4")
            self.pleth_curve = plot.plot(pen=pg.mkPen(colour, width=1), connect="finite")
            assert self.chart is not None
            plot.setXLink(self.chart.plots["rr"])
            self.chart_box.addWidget(plot)
        assert self.pleth_curve is not None
        zero = view.clock().zero.timestamp()
        self.pleth_curve.setData((t - zero) / 60.0, v)
        self.pleth_plot.setVisible(True)

    def open_session(self, session_id: int) -> Pending[ReviewView]:
        self.error.setText("")
        pending = self.model.open(session_id)

        def done(p: Pending[ReviewView]) -> None:
            if p.ok and p.result is not None:
                self._show(p.result)
            else:
                self.error.setText("\n".join(f"• {r}" for r in p.reasons))

        return pending.on_done(done)

    def _on_model_session_changed(self, view: ReviewView) -> None:
        self._show(view)
        self.refresh()  # its status (and the PMF counts) changed in the list too

    # ---- one session ------------------------------------------------------------------------
    def _show_nothing(self) -> None:
        for box in (self.sign_box, self.addendum_box, self.pmf_box):
            box.setVisible(False)

    def _show(self, view: ReviewView) -> None:
        self.view = view
        s = view.reviewed.state
        status = (
            "signed" + (" with addenda" if s.addenda else "")
            if s.signed
            else ("awaiting signature" if s.ended else "open (still at the chair)")
        )
        self.header.setText(
            f"{s.patient.label} · {s.chair} · {s.plan.treatment.value.replace('_', ' ')} · "
            f"{_when(s.started)} · {status}"
        )
        end = view.end()
        if self.chart is None:  # one chart, built once: building one costs ~100 ms
            self.chart = TrendChartWidget(view.buffers, self._profile, view.clock, lambda: end)
            self.chart.setMinimumHeight(360)
            self.chart_box.addWidget(self.chart)
        self.chart.set_source(view.buffers, view.clock, lambda: end)
        self._show_pleth(view)
        f = view.figures

        def num(v: Any, unit: str = "") -> str:
            return "—" if v is None else f"{v:g}{unit}"

        peak = "—" if f.peak_bp is None else f"{f.peak_bp[0]:g}/{f.peak_bp[1]:g}"
        rise = (
            ""
            if f.peak_bp_rise is None
            else (f" (+{f.peak_bp_rise[0]:g}/+{f.peak_bp_rise[1]:g} over the baseline)")
        )
        self.figures.setText(
            f"<b>Peak BP</b> {peak}{rise} · <b>lowest SpO₂</b> {num(f.lowest_spo2, ' %')} · "
            f"<b>lowest MOAA/S</b> {num(f.lowest_moaas)} · <b>peak CADSS</b> "
            f"{num(f.peak_cadss)} (change {num(f.cadss_change)}) · <b>total</b> "
            f"{num(f.total_min, ' min')} · <b>ready to leave at</b> "
            f"{num(f.ready_to_leave_min, ' min')}"
        )
        self.timeline.clear()
        for line in view.lines:
            by = f" (authorised by {line.authorised_by})" if line.authorised_by else ""
            self.timeline.addItem(
                f"{line.at.astimezone().strftime('%H:%M:%S')} · {line.author}{by} · "
                f"{line.label}: {line.text}"
            )
        physician = self.model.may(Action.SIGN)
        self.sign_box.setVisible(True)
        if s.signature is not None:
            g = s.signature
            self.manifestation.setText(
                f"✔ Signed by <b>{g.name}</b>{', ' + g.credentials if g.credentials else ''} "
                f"on {_when(g.at)} — meaning: <i>{g.meaning}</i><br>"
                f"<small>SHA-256 of the signed record: {g.content_sha256}</small>"
            )
        else:
            self.manifestation.setText(
                "Not signed yet."
                if s.ended
                else "The session is still running at its chair: it is signed once it has ended."
            )
        can_sign = physician and s.ended and not s.signed
        sign_widgets: tuple[QWidget, ...] = (self.meaning, self.sign_password, self.sign_button)
        for w in sign_widgets:
            w.setVisible(can_sign)
            self._sign_form.setRowVisible(w, can_sign)
        self.addendum_box.setVisible(s.signed)
        self.addenda.clear()
        for a in s.addenda:
            if a.pending:
                state = "⏳ awaiting a physician's countersignature"
            elif a.countersignature is not None:
                state = f"countersigned by {a.countersignature.name}"
            else:
                state = "signed"
            item = QListWidgetItem(
                f"{_when(a.at)} · {a.signature.name}: {a.text} "
                f"({state}; SHA-256 {a.signature.content_sha256[:16]}…)"
            )
            item.setData(Qt.ItemDataRole.UserRole, a.entry_id)
            self.addenda.addItem(item)
        may_add = s.signed and (physician or self.model.may(Action.LATE_ENTRY))
        add_widgets: tuple[QWidget, ...] = (
            self.addendum_text,
            self.addendum_password,
            self.addendum_button,
        )
        for w in add_widgets:
            w.setVisible(may_add)
            self._addendum_form.setRowVisible(w, may_add)
        self.addendum_button.setText(
            "Sign the addendum" if physician else "Sign as author (a physician countersigns)"
        )
        pending = [a for a in s.addenda if a.pending]
        can_countersign = physician and bool(pending)
        self.countersign_button.setVisible(can_countersign)
        self._addendum_form.setRowVisible(self.countersign_button, can_countersign)
        if can_countersign:
            self.addenda.setCurrentRow(s.addenda.index(pending[0]))
        self._show_form(view)

    def _show_form(self, view: ReviewView) -> None:
        form = view.form
        self.pmf_box.setVisible(form is not None)
        if form is None:
            return
        fields = list(_get(form, "fields", default=[]))
        missing = list(_get(form, "missing", default=[]))
        dl = view.deadline
        dl_text = ""
        if dl is not None:
            dl_text = f" · {str(_get(dl, 'status')).replace('_', ' ')}"
            due = _get(dl, "due_date", default=None)
            if due:
                dl_text += f", due {due}"
        self.pmf_status.setText(
            f"Form version {_get(form, 'version', 'form_version')}{dl_text}. "
            + (
                "Missing: " + ", ".join(str(m) for m in missing)
                if missing
                else "Every required field is filled."
            )
        )
        fields = [f for f in fields if _get(f, "applies", default=True)]
        self.form_table.setRowCount(len(fields))
        editable = not view.reviewed.state.signed and self.model.may(Action.PMF)
        self._form_fields: dict[str, tuple[str, str]] = {}  # id -> (type, text shown)
        for i, fld in enumerate(fields):
            spec = _get(fld, "spec", default=fld)
            fid, ftype = str(_get(spec, "id")), str(_get(spec, "type", default="text"))
            shown = str(_get(fld, "text", default="") or "")
            name = str(_get(spec, "label"))
            if _get(fld, "missing", default=False):
                name = "⚠ " + name
            label = QTableWidgetItem(name)
            label.setData(Qt.ItemDataRole.UserRole, fid)
            label.setFlags(label.flags() & ~Qt.ItemFlag.ItemIsEditable)
            item = QTableWidgetItem(shown)
            if ftype == "yesno":
                item.setToolTip("yes or no")
            elif ftype == "bp":
                item.setToolTip("systolic/diastolic, e.g. 128/82")
            elif ftype == "date":
                item.setToolTip("YYYY-MM-DD")
            if not editable:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            origin = str(_get(fld, "origin", default=""))
            note = str(_get(fld, "note", default=""))
            src = QTableWidgetItem(note or origin.replace("_", " ") or "—")
            src.setFlags(src.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.form_table.setItem(i, 0, label)
            self.form_table.setItem(i, 1, item)
            self.form_table.setItem(i, 2, src)
            self._form_fields[fid] = (ftype, shown)
        self.save_fields.setVisible(editable)
        signed = view.reviewed.state.signed
        for w in (self.method, self.submitted_at, self.reference, self.submit_button):
            w.setVisible(signed and self.model.may(Action.PMF))

    # ---- actions ----------------------------------------------------------------------------
    def _after(self, p: Pending[Any]) -> None:
        self.error.setText("" if p.ok else "\n".join(f"• {r}" for r in p.reasons))

    def _on_sign_clicked(self) -> None:
        if self.view is None:
            return
        password = self.sign_password.text()
        self.sign_password.clear()
        meaning = str(self.meaning.currentData() or "")
        self.model.sign(self.view.session_id, meaning, password).on_done(self._after)

    def _on_addendum_clicked(self) -> None:
        if self.view is None:
            return
        password = self.addendum_password.text()
        self.addendum_password.clear()
        text = self.addendum_text.toPlainText()
        pending = self.model.add_addendum(self.view.session_id, text, password)

        def done(p: Pending[Any]) -> None:
            self._after(p)
            if p.ok:
                self.addendum_text.clear()

        pending.on_done(done)

    def _on_countersign_clicked(self) -> None:
        item = self.addenda.currentItem()
        if self.view is None or item is None:
            return
        password = self.addendum_password.text()
        self.addendum_password.clear()
        aid = int(item.data(Qt.ItemDataRole.UserRole))
        self.model.countersign(self.view.session_id, aid, password).on_done(self._after)

    def changed_fields(self) -> dict[str, object]:
        """The fields the user typed or changed (a carried-over value is confirmed by
        typing it again), as values of each field's type."""
        out: dict[str, object] = {}
        for i in range(self.form_table.rowCount()):
            label, item = self.form_table.item(i, 0), self.form_table.item(i, 1)
            if label is None or item is None:
                continue
            fid = str(label.data(Qt.ItemDataRole.UserRole))
            ftype, before = self._form_fields.get(fid, ("text", ""))
            now = item.text().strip()
            if now and (now != before or label.text().startswith("⚠")):
                out[fid] = _typed(ftype, now)
        return out

    def _on_save_fields_clicked(self) -> None:
        if self.view is None or self.view.form is None:
            return
        values = self.changed_fields()
        version = str(_get(self.view.form, "version", "form_version"))
        self.model.enter_pmf(self.view.session_id, values, version).on_done(self._after)

    def _on_print_clicked(self) -> None:
        if self.view is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the PMF as PDF", f"pmf-session-{self.view.session_id}.pdf", "PDF (*.pdf)"
        )
        if path:
            self.print_to(path)

    def _on_export_clicked(self) -> None:
        if self.view is None:
            return
        fmt = str(self.export_format.currentData())
        suffix = {"pdf": "pdf", "csv": "zip", "json": "json", "fhir": "json"}[fmt]
        name = f"session-{self.view.session_id}{'-fhir' if fmt == 'fhir' else ''}.{suffix}"
        path, _ = QFileDialog.getSaveFileName(self, "Export the session", name)
        if path:
            self.export_to(path, fmt)

    def export_to(self, path: str, fmt: str) -> Pending[Any]:
        """Write the open session to ``path`` (the user chose it) as ``fmt``; audited."""
        assert self.view is not None
        self.export_status.setText("Exporting…")
        pending = self.model.export(self.view.session_id, fmt, path)

        def done(p: Pending[Any]) -> None:
            if p.ok and p.result is not None:
                r = p.result
                self.export_status.setText(
                    f"✔ Wrote {', '.join(str(x) for x in _get(r, 'paths'))} "
                    f"({_get(r, 'bytes')} bytes, SHA-256 {str(_get(r, 'sha256'))[:16]}…)"
                )
                self.error.setText("")
            else:
                self.export_status.setText("")
                self._after(p)

        return pending.on_done(done)

    def print_to(self, path: str) -> None:
        """Write the filled PMF page to ``path`` (refused, with reasons, while incomplete)."""
        if self.view is None:
            return
        self.model.print_pmf(self.view, path).on_done(self._after)

    def _on_submit_clicked(self) -> None:
        if self.view is None:
            return
        self.model.record_submission(
            self.view.session_id,
            self.method.currentText(),
            self.submitted_at.text().strip(),
            self.reference.text().strip(),
        ).on_done(self._after)
