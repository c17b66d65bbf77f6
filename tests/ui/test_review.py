"""The review desk through the window: a physician finds the finished session, is stopped by a
missing PMF field, fills it and signs, prints the PMF, records the fax and adds an addendum; an
auditor reads and cannot sign. (The rules themselves are tested Qt-free in tests/core.)"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication

from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.session_rules import Treatment
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role
from ketamon.storage.users import create_user, system_user_id
from ketamon.ui.review import STATUSES

from .conftest import Rig

PATIENT = PatientInfo(
    None,
    "DEMO-0001",
    "Alex",
    "Demo",
    date_of_birth="1980-02-03",
    sex="female",
    weight_kg=78.0,
    rems_enrolled=True,
)
CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}


def finished_session(rig: Rig) -> int:
    """An esketamine session at Chair 1, run to its discharge through the presenter."""
    m = rig.presenter(0)
    assert m.start_session(PATIENT, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True).wait().ok
    assert (
        m.record_screening(
            bp=(120, 80),
            hr=70,
            bp_source="manual",
            fasting=True,
            escort=True,
            rems_enrolled=True,
            medicines={"opioid": True},
        )
        .wait()
        .ok
    )
    assert m.log_esketamine_device("LOT-24A").wait().ok
    rig.advance(0.5, step_s=2)  # half a minute in small steps: the simulator's pleth flows
    rig.advance(4.5)
    assert m.log_esketamine_device("LOT-24A").wait().ok
    rig.advance(40)
    assert m.record_manual_vitals({"nibp_sys": 150, "nibp_dia": 92}).wait().ok
    rig.settle()
    if m.symptom_check_pending:
        assert m.record_symptom_check({k: False for k in m_symptoms()}).wait().ok
    rig.advance(81, step_s=300)
    assert (
        m.record_manual_vitals({"nibp_sys": 122, "nibp_dia": 78, "spo2": 98, "rr": 14}).wait().ok
    )
    assert m.record_moaas(5).wait().ok
    rig.settle()
    if m.symptom_check_pending:
        assert m.record_symptom_check({k: False for k in m_symptoms()}).wait().ok
    p = m.discharge(
        CHECKLIST,
        100,
        password="demo",
        override_reason="accepted at the bedside",
        physician="doctor",
        physician_password="demo",
    ).wait()
    assert p.ok, p.reasons
    last = m.last_state
    assert last is not None and last.discharge is not None
    return last.session_id


def m_symptoms() -> list[str]:
    from ketamon.domain.side_effects import BP_SYMPTOMS

    return [k for k, _ in BP_SYMPTOMS]


def review(rig: Rig):  # type: ignore[no-untyped-def]
    w = rig.window.review
    assert w is not None
    rig.window.tabs.setCurrentIndex(0)
    rig.window.tabs.setCurrentWidget(w)  # opening the desk refreshes the list
    rig.settle()
    return w


def test_a_physician_reviews_signs_prints_records_the_fax_and_adds_an_addendum(
    rig: Rig, tmp_path: Path
) -> None:
    sid = finished_session(rig)
    rig.window._on_pmf_timer_timeout()  # what the overview's minute timer does
    rig.settle()
    overview = rig.window.overview
    assert overview is not None and "1 due" in overview.pmf_label.text()
    rig.station.sign_in("doctor", "demo")
    w = review(rig)
    w.status.setCurrentIndex(2)  # awaiting signature
    assert w.table.rowCount() == 1 and "Alex Demo" in w.table.item(0, 2).text()
    w.table.setCurrentCell(0, 0)
    rig.settle()
    assert w.view is not None and w.view.session_id == sid
    assert any(
        "Esketamine device: device 2" in w.timeline.item(i).text()
        for i in range(w.timeline.count())
    )
    assert "Peak BP" in w.figures.text() and "over the baseline" in w.figures.text()
    assert "ready to leave at</b> 100 min" in w.figures.text()
    # the monitor's pleth was stored with the session and is drawn under the chart
    assert w.view.pleth is not None and len(w.view.pleth[1]) > 125
    assert w.pleth_plot is not None and w.pleth_plot.isVisible()
    # the site has not filled in its monitoring HCP: signing is refused, the fields listed
    w.sign_password.setText("demo")
    rig.click(w.sign_button)
    rig.settle()
    assert "missing" in w.error.text()
    assert not rig.presenter(0).last_state.signed  # type: ignore[union-attr]
    # fill every missing field in the form's table, save, sign
    missing = set(w.view.form.missing)
    for i in range(w.form_table.rowCount()):
        label = w.form_table.item(i, 0).text().removeprefix("⚠ ")
        if label in missing:
            w.form_table.item(i, 1).setText(_value_for(label))
    rig.click(w.save_fields)
    rig.settle()
    assert w.error.text() == "", w.error.text()
    assert w.view.form.missing == [], w.view.form.missing
    w.sign_password.setText("demo")
    rig.click(w.sign_button)
    rig.settle()
    assert w.error.text() == ""
    assert "Signed by" in w.manifestation.text() and "SHA-256" in w.manifestation.text()
    # the PMF as PDF, then the fax confirmation, then an addendum
    pdf = tmp_path / "pmf.pdf"
    w.print_to(str(pdf))
    assert w.error.text() == "" and pdf.read_bytes().startswith(b"%PDF")
    w.method.setCurrentText("fax")
    w.submitted_at.setText(rig.clock.now().isoformat())
    w.reference.setText("FAX-2026-0042")
    rig.click(w.submit_button)
    rig.settle()
    assert w.error.text() == ""
    assert any(
        "FAX-2026-0042" in w.timeline.item(i).text() or "fax" in w.timeline.item(i).text().lower()
        for i in range(w.timeline.count())
    )
    w.addendum_text.setPlainText("Patient phoned next day: well, no headache.")
    w.addendum_password.setText("demo")
    rig.click(w.addendum_button)
    rig.settle()
    assert w.error.text() == ""
    assert w.addenda.count() == 1 and "phoned next day" in w.addenda.item(0).text()
    assert not w.countersign_button.isVisible()  # a physician's addendum is signed already
    w.scroll_area.verticalScrollBar().setValue(0)  # the chart, the pleth and the figures
    rig.shot("review-signed")
    # the next day a nurse adds what the escort said: pending until a physician countersigns
    rig.advance(24 * 60, step_s=3600)
    rig.station.sign_in("nurse", "demo")
    w = review(rig)
    w.status.setCurrentIndex(0)  # any status
    w.days.setCurrentIndex(1)  # today: nothing
    assert w.table.rowCount() == 0
    w.days.setCurrentIndex(2)  # yesterday
    assert w.table.rowCount() == 1
    w.table.setCurrentCell(0, 0)
    rig.settle()
    assert w.addendum_text.isVisible() and not w.countersign_button.isVisible()
    assert not w.sign_button.isVisible()
    w.addendum_text.setPlainText("Escort confirmed the patient got home safely.")
    w.addendum_password.setText("demo")
    rig.click(w.addendum_button)
    rig.settle()
    assert w.error.text() == "", w.error.text()
    assert "awaiting a physician" in w.addenda.item(1).text()
    rig.station.sign_in("doctor", "demo")
    w = review(rig)
    w.days.setCurrentIndex(0)
    w.status.setCurrentIndex(STATUSES.index("addendum_pending"))
    assert w.table.rowCount() == 1
    w.table.setCurrentCell(0, 0)
    rig.settle()
    assert w.countersign_button.isVisible()
    assert w.addenda.currentRow() == 1  # the pending one is selected
    w.addendum_password.setText("demo")
    rig.click(w.countersign_button)
    rig.settle()
    assert w.error.text() == "", w.error.text()
    assert "countersigned by" in w.addenda.item(1).text()
    assert not w.countersign_button.isVisible()
    w.status.setCurrentIndex(STATUSES.index("addendum_pending"))
    assert w.table.rowCount() == 0
    rig.shot("review-countersigned")


def _value_for(label: str) -> str:
    low = label.lower()
    if "email" in low:
        return "clinic@example.org"
    if "phone" in low:
        return "555-0100"
    if "zip" in low:
        return "90001"
    if "state" in low:
        return "CA"
    return "Example Clinic"


def test_an_auditor_reads_but_cannot_sign(rig: Rig) -> None:
    finished_session(rig)
    with rig.station.writer.engine.begin() as _c:  # type: ignore[union-attr]
        pass
    from sqlalchemy.orm import Session

    with Session(rig.engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        create_user(
            s,
            username="otto",
            full_name="Otto Auditor",
            role=Role.AUDITOR,
            password="audit pass 1",
        )
    rig.station.sign_in("otto", "audit pass 1")
    w = review(rig)
    w.table.setCurrentCell(0, 0)
    rig.settle()
    assert w.view is not None and w.timeline.count() > 5
    assert not w.sign_button.isVisible() and not w.save_fields.isVisible()
    # and the desk itself refuses, whatever a widget shows
    p = w.model.sign(w.view.session_id, "reviewed_discharge_criteria_met", "audit pass 1").wait()
    assert not p.ok and "read-only" in p.reasons[0]
    QApplication.processEvents()


def test_the_review_desk_exports_a_signed_session_and_audits_it(rig: Rig, tmp_path: Path) -> None:
    import json
    import zipfile

    from sqlalchemy import text

    from ketamon.core import commands as c

    sid = finished_session(rig)
    rig.station.sign_in("doctor", "demo")
    w = review(rig)
    w.open_session(sid).wait(30)
    rig.settle()
    # FHIR needs a signature: refused, with the reason, and no file
    fhir = tmp_path / "s-fhir.json"
    p = w.export_to(str(fhir), "fhir").wait(60)
    rig.settle()
    assert not p.ok and "sign" in w.error.text().lower() and not fhir.exists()
    desk = w.model._desk  # sign through the desk (the PMF fields are tested above)
    from ketamon.core import pmf

    missing = pmf.missing_fields  # the form's own rules are tested elsewhere
    pmf.missing_fields = lambda *a, **k: []  # type: ignore[assignment]
    try:
        desk.execute(sid, c.Sign("reviewed_discharge_criteria_met", "demo"), w.model.actor)
    finally:
        pmf.missing_fields = missing  # type: ignore[assignment]
    for fmt, name in (("pdf", "s.pdf"), ("csv", "s.zip"), ("json", "s.json"), ("fhir", "f.json")):
        out = tmp_path / name
        p = w.export_to(str(out), fmt).wait(120)
        rig.settle()
        assert p.ok, p.reasons
        assert out.exists() and "✔ Wrote" in w.export_status.text()
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
    assert "observations.csv" in zipfile.ZipFile(tmp_path / "s.zip").namelist()
    assert json.loads((tmp_path / "f.json").read_text())["resourceType"] == "Bundle"
    with rig.engine.connect() as conn:
        audited = conn.execute(
            text(
                "SELECT count(*) FROM audit_entry WHERE new_value LIKE '%review desk%' "
                "OR reason LIKE '%review desk%'"
            )
        ).scalar()
    assert audited == 4  # one per export, as the physician
