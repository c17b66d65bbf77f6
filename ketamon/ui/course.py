"""The course view (issue 15): a patient's treatment course on one screen.

The header names the patient's course, plan and precautions; the table has one row per session
(planned slot and its status, dose and the esketamine dose step, peak BP and its rise, lowest
SpO2 and MOAA/S, peak CADSS, side effects and SAEs, PHQ-9 / MADRS / CGI-S); two plots show the
trends across the sessions: the outcome scales, and the safety figures. The widget shows a
:class:`~ketamon.domain.course_view.CourseView` it is given; it reads nothing itself.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ketamon.domain.course import SlotStatus
from ketamon.domain.course_view import CourseSessionRow, CourseView
from ketamon.domain.thresholds import Priority
from ketamon.ui import theme

COLUMNS = (
    "#",
    "Date",
    "Plan",
    "Dose",
    "Peak BP",
    "Rise",
    "Min SpO₂",
    "Min MOAA/S",
    "Peak CADSS",
    "Side effects",
    "SAE",
    "PHQ-9",
    "MADRS",
    "CGI-S",
)
#: slot status -> (text, colour); the text carries the meaning, the colour only repeats it
STATUS = {
    SlotStatus.DONE: ("done", "#9ccc65"),
    SlotStatus.LATE: ("LATE", "#ffcc00"),
    SlotStatus.MISSED: ("MISSED", "#ff3b30"),
    SlotStatus.DUE: ("due", "#32d2f0"),
    SlotStatus.UPCOMING: ("upcoming", "#9e9e9e"),
}
SCALE_PENS = {"phq9": "#4fc3f7", "madrs": "#ba68c8", "cgi_s": "#fff176"}
SCALE_NAMES = {"phq9": "PHQ-9", "madrs": "MADRS", "cgi_s": "CGI-S"}


def _bp(v: tuple[float, float] | None, sign: bool = False) -> str:
    if v is None:
        return "—"
    if sign:
        return f"{v[0]:+.0f}/{v[1]:+.0f}"
    return f"{v[0]:.0f}/{v[1]:.0f}"


def _num(v: float | int | None) -> str:
    return "—" if v is None else f"{v:g}"


def _short(note: str) -> str:
    """'Dose step 56 → 84 mg' -> '▲56→84 mg' (the whole note is the cell's tooltip)."""
    return note.replace("Dose step ", "▲").replace("Dose reduced ", "▼").replace(" → ", "→")


def _row_cells(r: CourseSessionRow) -> list[str]:
    slot = "—"
    if r.slot is not None:
        text, _ = STATUS[r.slot.status]
        late = f" +{r.slot.days_late} d" if r.slot.status is SlotStatus.LATE else ""
        slot = f"{r.slot.phase[:5]}. {r.slot.number}: {text}{late}"
    dose = r.dose + (f"  {_short(r.label_note)}" if r.label_note else "")
    return [
        str(r.number),
        r.day.isoformat(),
        slot,
        dose,
        _bp(r.peak_bp),
        _bp(r.rise, sign=True),
        _num(r.lowest_spo2),
        _num(r.lowest_moaas),
        _num(r.peak_cadss),
        ", ".join(e.replace("_", " ") for e in r.side_effects) or "none",
        str(r.saes) if r.saes else "—",
        _num(r.scales.get("phq9")),
        _num(r.scales.get("madrs")),
        _num(r.scales.get("cgi_s")),
    ]


class CourseViewWidget(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("courseView")
        self.title = QLabel("No course")
        self.title.setObjectName("courseTitle")
        self.title.setStyleSheet("font-size: 16pt; font-weight: bold;")
        self.plan = QLabel("")
        self.plan.setWordWrap(True)
        self.precautions = QLabel("")
        self.precautions.setWordWrap(True)
        self.precautions.setStyleSheet("color: #ffcc00;")
        self.missed = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.scales_plot = self._plot("Outcome scales", "score")
        self.safety_plot = self._plot("Peak systolic BP / lowest SpO₂", "mmHg / %")
        self.scales_plot.addLegend(offset=(-10, 10))
        # above the lines: the y range leaves room at the top for it (see _plot_trends)
        self.safety_plot.addLegend(offset=(10, 5), colCount=2)
        plots = QHBoxLayout()
        plots.addWidget(self.scales_plot, 1)
        plots.addWidget(self.safety_plot, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(self.plan)
        lay.addWidget(self.precautions)
        lay.addWidget(self.missed)
        lay.addWidget(self.table, 3)
        lay.addLayout(plots, 2)
        self.view: CourseView | None = None

    @staticmethod
    def _plot(title: str, unit: str) -> pg.PlotWidget:
        p = pg.PlotWidget()
        p.setBackground(theme.BACKGROUND)
        p.setTitle(title, color="#e0e0e0", size="10pt")
        p.setLabel("bottom", "session")
        p.setLabel("left", unit)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setMouseEnabled(x=False, y=False)
        p.setMenuEnabled(False)
        return p

    def show_view(self, view: CourseView) -> None:
        self.view = view
        c = view.course
        p = c.plan
        self.title.setText(
            f"Course {c.course_id} — {c.patient_mrn}: {p.indication}"
            + ("" if c.active else " (closed)")
        )
        sc = c.screening
        screened = (
            f"screened {sc.at.date().isoformat()} by {sc.by}"
            if sc
            else "NOT SCREENED (dosing is stopped)"
        )
        overrides = f"; {len(c.overrides)} contraindication override(s)" if c.overrides else ""
        self.plan.setText(
            f"{p.treatment.replace('_', ' ')} from {p.start.isoformat()}: {p.induction_sessions} "
            f"induction sessions at {p.induction_per_week:g}/week, then {p.maintenance_sessions} "
            f"maintenance every {p.maintenance_interval_days} days — {screened}{overrides}"
        )
        self.precautions.setText(
            ("⚠ Precautions: " + "; ".join(view.precautions)) if view.precautions else ""
        )
        counts = {s: sum(1 for sl in view.slots if sl.status is s) for s in SlotStatus}
        self.missed.setText(
            f"Schedule: {counts[SlotStatus.DONE]} done, {counts[SlotStatus.LATE]} late, "
            f"{counts[SlotStatus.MISSED]} missed, {counts[SlotStatus.DUE]} due, "
            f"{counts[SlotStatus.UPCOMING]} upcoming of {len(view.slots)} planned"
        )
        self.table.setRowCount(len(view.rows))
        for i, r in enumerate(view.rows):
            for j, text in enumerate(_row_cells(r)):
                item = QTableWidgetItem(text)
                if j == 2 and r.slot is not None:
                    item.setForeground(QColor(STATUS[r.slot.status][1]))
                if j == 10 and r.saes:
                    item.setForeground(QColor(theme.PRIORITY_COLOURS[Priority.HIGH]))
                if j == 3 and r.label_note:
                    item.setToolTip(r.label_note)
                if j != 3 and j != 9:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(i, j, item)
        self._plot_trends(view)

    def _plot_trends(self, view: CourseView) -> None:
        self.scales_plot.clear()
        for scale, colour in SCALE_PENS.items():
            pts = [(x, float(y)) for x, y in view.trend(scale)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                self.scales_plot.plot(
                    list(xs),
                    list(ys),
                    pen=pg.mkPen(colour, width=2),
                    symbol="o",
                    symbolBrush=colour,
                    symbolSize=7,
                    name=SCALE_NAMES[scale],
                )
        self.safety_plot.clear()
        for what, colour, name in (
            ("peak_sys", theme.PARAMETER_COLOURS["nibp_sys"], "peak systolic"),
            ("lowest_spo2", theme.PARAMETER_COLOURS["spo2"], "lowest SpO₂"),
        ):
            spts = view.series(what)
            pts = [(x, float(y)) for x, y in spts]
            if pts:
                xs, ys = zip(*pts, strict=True)
                self.safety_plot.plot(
                    list(xs),
                    list(ys),
                    pen=pg.mkPen(colour, width=2),
                    symbol="s" if what == "peak_sys" else "t",
                    symbolBrush=colour,
                    symbolSize=7,
                    name=name,
                )
        n = max(len(view.rows), 1)
        for plot in (self.scales_plot, self.safety_plot):
            plot.setXRange(0.5, n + 0.5, padding=0)
        values = [v for w in ("peak_sys", "lowest_spo2") for _, v in view.series(w)]
        if values:
            lo, hi = min(values), max(values)
            self.safety_plot.setYRange(lo - 5, hi + 0.25 * (hi - lo) + 10, padding=0)
