"""The whole session as a human-readable PDF (clinical.md §8 item 48), QtGui only.

Header (patient, session, treatment, status), the chart drawn from the stored readings and the
record (not a screenshot), the figures, doses with lots, the timeline of every entry (corrections
as old → new with the reason and author), flags with their acknowledgements and resets, the REMS
answers, and the signature manifestations with their hashes. A4 or US Letter. The PDF is made in
memory and written by the caller through a temporary file (so a full disk leaves no half file).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QMarginsF,
    QPointF,
    QRectF,
    QSizeF,
    Qt,
    QUrl,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
    QPolygonF,
    QTextDocument,
)

from ketamon import SAFETY_STATEMENT
from ketamon.core.read_models import KIND_LABELS, record_lines
from ketamon.domain.record import EntryKind
from ketamon.exports.files import ExportError
from ketamon.exports.pmf_pdf import PAGE_SIZES
from ketamon.exports.record import SessionExport, dose_rows, is_manual

#: chart series: parameter → (label, colour); drawn on the 0–220 scale (SpO₂ on its own panel)
SERIES = {
    "nibp_sys": ("BP sys", "#c0392b"),
    "nibp_dia": ("BP dia", "#e67e22"),
    "hr": ("HR", "#27ae60"),
    "rr": ("RR", "#8e44ad"),
}
SPO2 = ("SpO₂", "#2471a3")
CHART_W, CHART_H = 1800, 900


def _ensure_gui() -> None:
    if QGuiApplication.instance() is None:
        QGuiApplication(["ketamon-export"])


def _t(at: datetime | None) -> str:
    """UTC, to the second (the page says the times are UTC)."""
    return "—" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _answer(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "—" if v is None else str(v)


def _m(x: SessionExport, at: datetime) -> str:
    m = x.minutes(at)
    return "" if m is None else f"T{m:+.0f}"


def render_chart(x: SessionExport, width: int = CHART_W, height: int = CHART_H) -> QImage:
    """The session's trends on the session clock (minutes since the first dose), with doses,
    flags raised and the MOAA/S ratings marked."""
    img = QImage(width, height, QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont("sans-serif")
        font.setPixelSize(22)
        p.setFont(font)
        zero = x.state.first_dose or x.state.started
        times = [r.host_time for r in x.readings] + [e.at for e in x.entries]
        t0 = min(times) if times else zero
        t1 = max(times) if times else zero
        lo = (t0 - zero).total_seconds() / 60.0
        hi = max((t1 - zero).total_seconds() / 60.0, lo + 1.0)
        left, right, top = 90, width - 20, 40
        split = int(height * 0.62)
        bottom = height - 60
        panels = [(top, split - 30, 0.0, 220.0), (split, bottom, 80.0, 100.0)]

        def px(minutes: float) -> float:
            return left + (minutes - lo) / (hi - lo) * (right - left)

        def py(panel: tuple[int, int, float, float], v: float) -> float:
            ptop, pbot, vlo, vhi = panel
            v = min(max(v, vlo), vhi)
            return pbot - (v - vlo) / (vhi - vlo) * (pbot - ptop)

        grid = QPen(QColor("#cccccc"))
        grid.setWidth(1)
        for panel in panels:
            ptop, pbot, vlo, vhi = panel
            p.setPen(QPen(QColor("#555555"), 2))
            p.drawRect(QRectF(left, ptop, right - left, pbot - ptop))
            steps = 4
            for k in range(steps + 1):
                v = vlo + (vhi - vlo) * k / steps
                y = py(panel, v)
                p.setPen(grid)
                p.drawLine(QPointF(left, y), QPointF(right, y))
                p.setPen(QColor("#333333"))
                p.drawText(QRectF(0, y - 14, left - 8, 28), Qt.AlignmentFlag.AlignRight, f"{v:g}")
        # minute ticks every 15 / 30 / 60 minutes
        span = hi - lo
        step = 15 if span <= 180 else (30 if span <= 360 else 60)
        m = (int(lo // step) + 1) * step
        while m <= hi:
            xx = px(m)
            p.setPen(grid)
            p.drawLine(QPointF(xx, top), QPointF(xx, bottom))
            p.setPen(QColor("#333333"))
            p.drawText(QRectF(xx - 40, bottom + 6, 80, 26), Qt.AlignmentFlag.AlignHCenter, f"{m}")
            m += step
        p.drawText(
            QRectF(left, bottom + 30, right - left, 28),
            Qt.AlignmentFlag.AlignHCenter,
            "minutes since the first dose" if x.state.first_dose else "minutes since the start",
        )
        # series (invalid readings are left out)
        points: dict[str, list[QPointF]] = {}
        for r in x.readings:
            if not r.valid or (r.parameter not in SERIES and r.parameter != "spo2"):
                continue
            mins = (r.host_time - zero).total_seconds() / 60.0
            panel = panels[1] if r.parameter == "spo2" else panels[0]
            points.setdefault(r.parameter, []).append(QPointF(px(mins), py(panel, r.value)))
        legend_x = left + 10
        for param, (label, colour) in [*SERIES.items(), ("spo2", SPO2)]:
            pts = points.get(param, [])
            pen = QPen(QColor(colour), 3)
            p.setPen(pen)
            if param.startswith("nibp"):
                for pt in pts:  # cuff readings: one mark each
                    p.drawEllipse(pt, 5, 5)
            elif len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            p.drawText(QRectF(legend_x, 4, 160, 30), Qt.AlignmentFlag.AlignLeft, label)
            legend_x += 150
        # doses (blue), flags raised (red ticks), MOAA/S ratings (numbers at the bottom)
        for row in dose_rows(x):
            dosed = x.minutes(datetime.fromisoformat(str(row[1])))
            if dosed is None:
                continue
            p.setPen(QPen(QColor("#1f618d"), 2, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(px(dosed), top), QPointF(px(dosed), bottom))
        for e in x.entries:
            mins = (e.at - zero).total_seconds() / 60.0
            if e.kind is EntryKind.ALARM and e.data.get("action") in ("raised", "escalated"):
                p.setPen(QPen(QColor("#b00000"), 3))
                p.drawLine(QPointF(px(mins), top), QPointF(px(mins), top + 16))
        for o in x.state.live(EntryKind.MOAAS):
            mins = (o.at - zero).total_seconds() / 60.0
            p.setPen(QColor("#000000"))
            p.drawText(
                QRectF(px(mins) - 30, split - 30, 60, 28),
                Qt.AlignmentFlag.AlignHCenter,
                f"M{o.score}",
            )
        p.setPen(QColor("#000000"))
        p.drawText(QRectF(left + 10, split + 4, 200, 28), Qt.AlignmentFlag.AlignLeft, SPO2[0])
    finally:
        p.end()
    return img


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    e = escape
    out = ["<table width='100%' border='1' cellspacing='0' cellpadding='2'><tr>"]
    out += [
        f"<th width='{w}%' align='left'>{e(h)}</th>" for h, w in zip(header, widths, strict=True)
    ]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def session_html(x: SessionExport) -> str:
    e = escape
    s = x.state
    p = s.patient
    f = x.figures()
    parts = [
        "<html><head><style>"
        "body { font-family: sans-serif; font-size: 7.5pt; }"
        ".title { font-size: 13pt; font-weight: bold; }"
        "h2 { font-size: 9.5pt; margin-top: 8px; margin-bottom: 2px; }"
        "th { background-color: #e8e8e8; }"
        ".small { font-size: 6.5pt; color: #444444; } .warn { color: #b00000; font-weight: bold; }"
        ".mono { font-family: monospace; font-size: 6.5pt; }"
        "</style></head><body>",
        f"<p class='title'>Session record: {e(p.label)}</p>",
        f"<p class='small'>ketamon session export · {e(SAFETY_STATEMENT)}</p>",
        "<table width='100%' cellspacing='0' cellpadding='1'>",
        f"<tr><td><b>Patient</b> {e(p.first_name)} {e(p.middle_initial)} {e(p.last_name)}</td>"
        f"<td><b>MRN</b> {e(p.mrn)}</td><td><b>Date of birth</b> {e(p.date_of_birth or '—')}"
        f"</td><td><b>Sex</b> {e(p.sex or '—')}</td></tr>",
        f"<tr><td><b>Session</b> {s.session_id} at {e(s.chair)}</td>"
        f"<td><b>Treatment</b> {e(s.plan.treatment.value.replace('_', ' '))}"
        + (f" {s.plan.dose_mg:g} mg" if s.plan.dose_mg else "")
        + f"</td><td><b>Started</b> {_t(s.started)} by {e(s.started_by)}</td>"
        f"<td><b>Status</b> {e(x.status.replace('_', ' '))}</td></tr>",
        f"<tr><td><b>First dose</b> {_t(s.first_dose)}</td><td><b>Ended</b> {_t(s.ended_at)}"
        f"</td><td><b>Monitor</b> {e(s.device_description or '—')}</td>"
        f"<td><b>Weight</b> {'—' if p.weight_kg is None else f'{p.weight_kg:g} kg'}</td></tr>",
        "</table>",
        "<p class='small'>Times are UTC; T±N is minutes from the first dose.</p>",
        "<h2>Chart</h2>",
        "<p><img src='ketamon-chart' width='640'/></p>",
        "<h2>Figures</h2>",
        "<p>"
        + " · ".join(
            [
                "Peak BP "
                + ("—" if f.peak_bp is None else f"{f.peak_bp[0]:g}/{f.peak_bp[1]:g}")
                + (
                    ""
                    if f.peak_bp_rise is None
                    else f" (rise {f.peak_bp_rise[0]:+g}/{f.peak_bp_rise[1]:+g})"
                ),
                f"Lowest SpO₂ {'—' if f.lowest_spo2 is None else f'{f.lowest_spo2:g} %'}",
                f"Lowest MOAA/S {'—' if f.lowest_moaas is None else f.lowest_moaas}",
                f"Peak CADSS {'—' if f.peak_cadss is None else f.peak_cadss}"
                + ("" if f.cadss_change is None else f" (change {f.cadss_change:+d})"),
                f"Total {'—' if f.total_min is None else f'{f.total_min} min'}",
                "Ready to leave "
                + ("—" if f.ready_to_leave_min is None else f"{f.ready_to_leave_min} min"),
            ]
        )
        + "</p>",
    ]
    doses = dose_rows(x)
    parts.append("<h2>Doses</h2>")
    if doses:
        parts.append(
            _table(
                ["Time (UTC)", "T", "What", "Route", "mg", "Lot", "By"],
                [
                    [
                        e(_t(datetime.fromisoformat(str(r[1])))),
                        "" if r[2] is None else f"{r[2]:+.0f}",
                        e(str(r[4])),
                        e(str(r[5])),
                        "" if r[6] is None else f"{r[6]:g}",
                        e(str(r[7])),
                        e(str(r[11])),
                    ]
                    for r in doses
                ],
                [19, 7, 32, 10, 6, 12, 14],
            )
        )
    else:
        parts.append("<p>No dose recorded.</p>")
    # flags: each raised one with what happened to it
    alarm_rows = []
    for en in x.entries:
        if en.kind is not EntryKind.ALARM:
            continue
        d = en.data
        alarm_rows.append(
            [
                e(_t(en.at)),
                e(_m(x, en.at)),
                e(str(d.get("priority", ""))),
                e(str(d.get("action", ""))),
                e(str(d.get("message") or d.get("key", ""))),
                e(en.authorised_by or en.author),
            ]
        )
    parts.append("<h2>Flags, acknowledgements and resets</h2>")
    parts.append(
        _table(
            ["Time (UTC)", "T", "Priority", "Action", "Flag", "By"],
            alarm_rows,
            [18, 7, 9, 12, 40, 14],
        )
        if alarm_rows
        else "<p>No flag was raised.</p>"
    )
    # REMS
    parts.append("<h2>REMS</h2>")
    rems_rows = [
        ["Patient enrolled in the REMS", e({True: "yes", False: "no", None: "—"}[p.rems_enrolled])]
    ]
    if s.discharge is not None:
        rems_rows += [
            [e(str(k).replace("_", " ")), e(_answer(v))] for k, v in s.discharge.rems.items()
        ]
        rems_rows += [
            [e(f"Discharge checklist: {k}"), "yes" if v else "no"]
            for k, v in s.discharge.checklist.items()
        ]
    rems_rows += [[e(f"PMF: {k}"), e(_answer(v))] for k, v in s.pmf_values.items()]
    rems_rows += [
        [
            "PMF submitted",
            e(
                f"by {sub.method} at {sub.submitted_at}, reference {sub.reference} "
                f"(form {sub.form_version}, SHA-256 {sub.form_sha256})"
            ),
        ]
        for sub in s.pmf_submissions
    ]
    parts.append(_table(["Question", "Answer"], rems_rows, [55, 45]))
    # the timeline: every entry, alarms included
    parts.append("<h2>Record: every entry in time order</h2>")
    lines = record_lines(x.entries)
    parts.append(
        _table(
            ["#", "Time (UTC)", "T", "Entry", "What", "By"],
            [
                [
                    str(line.entry_id),
                    e(_t(line.at)),
                    e(_m(x, line.at)),
                    e(KIND_LABELS[line.kind]),
                    (
                        "<span class='warn'>" + e(line.text) + "</span>"
                        if line.kind is EntryKind.CORRECTION
                        else e(line.text)
                    ),
                    e(
                        line.author
                        + (f" (authorised by {line.authorised_by})" if line.authorised_by else "")
                    ),
                ]
                for line in lines
            ],
            [5, 16, 7, 13, 45, 14],
        )
    )
    # signatures
    parts.append("<h2>Signatures</h2>")
    sigs = x.signatures()
    if not sigs:
        parts.append("<p class='warn'>NOT SIGNED</p>")
    for kind, sig, text in sigs:
        who = e(sig.name) + (f", {e(sig.credentials)}" if sig.credentials else "")
        head = "Addendum: " + e(text) + "<br/>" if kind == "addendum" else ""
        parts.append(
            f"<p>{head}Signed by <b>{who}</b> on {e(_t(sig.at))} — meaning: "
            f"<b>{e(sig.meaning)}</b><br/>covers entries up to #{sig.covers_entry_id}; "
            f"<span class='mono'>content SHA-256 {e(sig.content_sha256)}</span></p>"
        )
    manual = sum(1 for r in x.readings if is_manual(r))
    parts.append(
        f"<p class='small'>{len(x.entries)} entries; {len(x.readings) - manual} monitor and "
        f"{manual} manual readings. Whole record SHA-256 "
        f"<span class='mono'>{x.record_sha256}</span>. Exported {e(_t(x.generated_at))}"
        + (f" by {e(x.exported_by)}" if x.exported_by else "")
        + (f" at {e(x.site_name)}" if x.site_name else "")
        + ".</p></body></html>"
    )
    return "".join(parts)


def session_pdf_bytes(x: SessionExport, page_size: str = "a4") -> bytes:
    """The PDF, made in memory."""
    size = PAGE_SIZES.get(page_size.lower())
    if size is None:
        raise ExportError(f"page size must be one of {', '.join(PAGE_SIZES)}, got {page_size!r}")
    _ensure_gui()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buf)
    writer.setTitle(f"ketamon session {x.session_id}: {x.state.patient.label}")
    writer.setCreator("ketamon")
    writer.setResolution(300)
    layout = QPageLayout(
        QPageSize(size), QPageLayout.Orientation.Portrait, QMarginsF(12, 10, 12, 10)
    )
    layout.setUnits(QPageLayout.Unit.Millimeter)
    writer.setPageLayout(layout)
    doc = QTextDocument()
    doc.addResource(
        QTextDocument.ResourceType.ImageResource, QUrl("ketamon-chart"), render_chart(x)
    )
    doc.setHtml(session_html(x))
    screen = QGuiApplication.primaryScreen()
    dpi = screen.logicalDotsPerInch() if screen is not None else 96.0
    rect = writer.pageLayout().paintRect(QPageLayout.Unit.Inch)
    doc.setPageSize(QSizeF(rect.width() * dpi, rect.height() * dpi))
    doc.print_(writer)
    del writer
    buf.close()
    out = bytes(data.data())
    if not out.startswith(b"%PDF"):
        raise ExportError("the PDF could not be made")
    return out
