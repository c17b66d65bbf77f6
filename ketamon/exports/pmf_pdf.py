"""The REMS Patient Monitoring Form as a filled, printable PDF page (clinical.md §8 item 35).

Built from a :class:`~ketamon.core.pmf.PmfForm` with QtGui only (QTextDocument laid out on a
QPdfWriter): no widgets, no database. Every field of the form's version is listed with its
value; a required field still empty (or only carried over) is marked MISSING, a carried-over one
"carried over, confirm". The header names the session and the patient; when the session is
signed the signature manifestation (name, credentials, time, meaning, content hash) is printed.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path

from PySide6.QtCore import QMarginsF, QSizeF
from PySide6.QtGui import QGuiApplication, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from ketamon import SAFETY_STATEMENT
from ketamon.core.pmf import CARRIED, PmfDeadline, PmfForm

PAGE_SIZES = {"a4": QPageSize.PageSizeId.A4, "letter": QPageSize.PageSizeId.Letter}

_ORIGIN = {
    "record": "record",
    "site": "site profile",
    "monitor": "monitor reading",
    "entered": "entered",
    "carried_over": "previous session",
    "": "",
}


def _ensure_gui() -> None:
    # QTextDocument needs a QGuiApplication for its fonts (offscreen is enough).
    if QGuiApplication.instance() is None:
        QGuiApplication(["ketamon-export"])


def pmf_html(
    form: PmfForm, *, deadline: PmfDeadline | None = None, generated_at: datetime | None = None
) -> str:
    """The filled form as a self-contained HTML page (what the PDF prints)."""
    e = escape
    parts = [
        "<html><head><style>"
        "body { font-family: sans-serif; font-size: 8pt; }"
        ".title { font-size: 13pt; font-weight: bold; }"
        ".section { font-size: 9pt; font-weight: bold; margin-top: 4px; margin-bottom: 1px; }"
        "td { vertical-align: top; }"
        ".missing { color: #b00000; font-weight: bold; }"
        ".carried { color: #8a5a00; font-weight: bold; } .origin { color: #555555; }"
        ".small { font-size: 7.5pt; color: #444444; }"
        "</style></head><body>",
        f"<p class='title'>{e(form.definition.title)}</p>",
        f"<p class='small'>Form version {e(form.version)} · filled by ketamon · "
        + e(SAFETY_STATEMENT)
        + "</p>",
        "<table width='100%' cellspacing='0'>",
        f"<tr><td><b>Session</b> {form.session_id}</td><td><b>Chair</b> {e(form.chair)}</td>"
        f"<td><b>Treatment date</b> {e(form.session_date)}</td></tr>",
        f"<tr><td colspan='2'><b>Patient</b> {e(form.patient)}</td><td>",
    ]
    if deadline is not None and deadline.due_date is not None:
        parts.append(f"<b>Due</b> {deadline.due_date.isoformat()} ({e(deadline.status)})")
    parts.append("</td></tr></table>")
    missing = form.missing
    if not form.required:
        parts.append("<p><b>This session needs no Patient Monitoring Form.</b></p>")
    elif missing:
        parts.append(
            f"<p class='missing'>INCOMPLETE: {len(missing)} required field(s) missing or to "
            "confirm: " + e("; ".join(missing)) + "</p>"
        )
    else:
        parts.append("<p><b>Complete:</b> every required field is filled.</p>")
    for section in form.definition.sections:
        parts.append(f"<p class='section'>{e(section)}</p>")
        parts.append("<table width='100%' border='1' cellspacing='0' cellpadding='1'>")
        for f in form.fields:
            if f.spec.section != section:
                continue
            star = " *" if f.spec.required else ""
            if not f.applies:
                value = "<span class='origin'>(not asked)</span>"
            elif f.missing and f.origin != CARRIED:
                value = "<span class='missing'>MISSING</span>"
            elif f.text:
                value = f"<b>{e(f.text)}</b>"
            else:
                value = "<span class='origin'>—</span>"
            if f.origin == CARRIED:
                value += f" <span class='carried'>({e(f.note)})</span>"
            origin = _ORIGIN.get(f.origin, f.origin) if f.applies else ""
            parts.append(
                f"<tr><td width='58%'>{e(f.spec.label)}{star}</td><td width='27%'>{value}</td>"
                f"<td width='15%' class='origin'>{e(origin)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<p class='section'>Signature</p>")
    sig = form.signature
    if sig is None:
        parts.append("<p class='missing'>NOT SIGNED</p>")
    else:
        who = e(sig.name) + (f", {e(sig.credentials)}" if sig.credentials else "")
        parts.append(
            f"<p>Signed by <b>{who}</b> on {e(sig.at.isoformat(timespec='seconds'))}<br/>"
            f"Meaning: {e(sig.meaning)}<br/>"
            f"<span class='small'>Record content SHA-256: {e(sig.content_sha256)}</span></p>"
        )
    stamp = f" · printed {generated_at.isoformat(timespec='seconds')}" if generated_at else ""
    parts.append(
        f"<p class='small'>* required. Form SHA-256: {form.sha256}{e(stamp)}</p></body></html>"
    )
    return "".join(parts)


def write_pmf_pdf(
    form: PmfForm,
    path: str | Path,
    *,
    page_size: str = "a4",
    deadline: PmfDeadline | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write the filled form to ``path`` as PDF on A4 or US Letter; returns the path."""
    size = PAGE_SIZES.get(page_size.lower())
    if size is None:
        raise ValueError(f"page size must be one of {', '.join(PAGE_SIZES)}, got {page_size!r}")
    _ensure_gui()
    out = Path(path)
    writer = QPdfWriter(str(out))
    writer.setTitle(f"{form.definition.title}: session {form.session_id}")
    writer.setCreator("ketamon")
    writer.setResolution(300)
    layout = QPageLayout(
        QPageSize(size), QPageLayout.Orientation.Portrait, QMarginsF(14, 9, 14, 9)
    )
    layout.setUnits(QPageLayout.Unit.Millimeter)
    writer.setPageLayout(layout)
    doc = QTextDocument()
    doc.setHtml(pmf_html(form, deadline=deadline, generated_at=generated_at))
    # Laid out at the screen's logical DPI (the one its point sizes are resolved at); print_
    # scales that to the writer, so a 8-pt font prints at 8 pt.
    screen = QGuiApplication.primaryScreen()
    dpi = screen.logicalDotsPerInch() if screen is not None else 96.0
    rect = writer.pageLayout().paintRect(QPageLayout.Unit.Inch)
    doc.setPageSize(QSizeF(rect.width() * dpi, rect.height() * dpi))
    doc.print_(writer)
    del writer  # flushes and closes the file
    if not out.exists():
        raise OSError(f"cannot write the PDF to {out}")
    return out
