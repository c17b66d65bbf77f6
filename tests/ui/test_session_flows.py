"""Whole sessions at the chair, clicked through the panels as a nurse would, on the simulator
with scenarios that breach thresholds, driven by a manual clock (minutes pass in milliseconds).

The clinical rules themselves are tested Qt-free in tests/core; these tests check that the
window wires them: what the nurse clicks reaches the presenter and the command thread, what is
refused is shown with its reasons, and what is recorded is shown and stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketamon.domain.discharge import CHECKLIST_LABELS
from ketamon.domain.prompts import PromptKind, PromptState
from ketamon.domain.record import EntryKind
from ketamon.domain.session_rules import Treatment
from ketamon.storage.models import (
    AlarmRecord,
    AuditEntry,
    DoseEvent,
    Observation,
    ObservationKind,
    SessionEntryRow,
    SessionThresholdProfile,
    TreatmentSession,
    User,
    VitalReading,
)
from ketamon.storage.users import create_user
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.overview import chair_summary
from ketamon.ui.panels import DischargePanel, StartSessionPanel

from .conftest import SCREEN, Rig


def _start(rig: Rig, view: ChairViewWidget, mrn: str, first: str, last: str) -> None:
    """A new patient typed in, identity confirmed, 'Other' treatment (for the short flows)."""
    start = rig.open(view, "start")
    assert isinstance(start, StartSessionPanel)
    for field, text in ((start.mrn, mrn), (start.first, first), (start.last, last)):
        rig.qtbot.keyClicks(field, text)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    assert view.model.state is not None and view.model.state.patient.mrn == mrn


def _alarm_keys(view: ChairViewWidget) -> set[str]:
    return {a.key for a in view.model.active_alarms()}


def _rows(widget) -> list[str]:  # type: ignore[no-untyped-def]
    return [widget.item(i).text() for i in range(widget.count())]


def test_whole_esketamine_session(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    view = rig.view(0)  # Chair 1: bp_rise scenario
    model = view.model
    rig.window.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)

    # -- start: pick the patient; the identity check must be ticked
    start = rig.open(view, "start")
    qtbot.keyClicks(start.search, "DEMO-0001")
    qtbot.waitUntil(lambda: start.results.count() == 1, timeout=5000)
    start.results.setCurrentRow(0)
    assert (start.last.text(), start.weight.value(), start.rems.isChecked()) == ("Demo", 78, True)
    assert "Confirm that this is the patient" in rig.save(start)
    assert model.state is None and view.current_panel() == "start"
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    s = model.state
    assert s is not None and s.patient.mrn == "DEMO-0001" and s.plan.dose_mg == 56
    assert view.current_panel() is None and "Alex Demo" in view.phase_label.text()
    assert not view.action_buttons["start"].isEnabled()

    # -- dosing is blocked before the screening (shown, and refused if tried)
    dose = rig.open(view, "dose")
    assert "screening" in dose.blockers.text()
    assert "screening" in rig.save(dose) and model.state.first_dose is None
    rig.click(dose.cancel_button)

    # -- screening with the monitor's pre-dose cuff reading
    rig.advance(2)
    qtbot.waitUntil(lambda: model.latest_nibp() is not None, timeout=10000)
    scr = rig.open(view, "screening")
    rig.click(scr.use_monitor)
    assert scr.sys.value() == model.latest_nibp()[0]
    for box in (scr.fasting, scr.escort):
        box.setChecked(True)
    assert scr.rems.isChecked()  # from the patient's record
    rig.shot("esketamine-1-screening")
    assert rig.save(scr) == ""
    assert model.state.screening is not None and model.state.screening.bp_source == "monitor"

    # -- device 1 needs a lot number; device 2 must wait 5 min
    dose = rig.open(view, "dose")
    assert "lot number" in rig.save(dose)
    qtbot.keyClicks(dose.lot, "LOT-A1")
    assert rig.save(dose) == ""
    assert model.state.first_dose is not None and view.current_panel() is None
    assert model.state.baseline == model.state.screening.bp  # the BP-rise rule's baseline
    rig.open(view, "dose")
    assert "Device 1" in dose.info.text() and "Device 2 of 2 in" in dose.countdown.text()
    assert "Device 2 of 2 in" in view.dose_label.text()  # the chair's header says it too
    assert "Wait" in rig.save(dose)
    assert len(model.state.devices) == 1
    rig.advance(5, step_s=30)
    assert rig.save(dose) == ""
    assert len(model.state.devices) == 2 and model.state.dosing_complete
    assert not view.action_buttons["screening"].isEnabled()

    # -- to 40 min: the BP rise is flagged. The nurse is writing a note: the symptom check
    # waits at the top of the Due list instead of taking her out of the form.
    played = len(rig.window.sounder.played)
    rig.open(view, "note")
    rig.advance(37)
    qtbot.waitUntil(lambda: model.symptom_check_pending, timeout=10000)
    assert view.current_panel() == "note"
    qtbot.waitUntil(lambda: any("symptoms" in b.text() for b in view.prompt_buttons), timeout=5000)
    rig.click(view.panels["note"].cancel_button)
    rig.click(next(b for b in view.prompt_buttons if "symptoms" in b.text()))
    assert view.current_panel() == "symptoms"
    assert {"bp_rise_nibp_sys", "nibp_sys_high"} <= _alarm_keys(view)
    texts = view.alarm_panel.texts()
    assert any(t.startswith("** MEDIUM: SYS") and "over baseline" in t for t in texts), texts
    rig.shot("esketamine-2-bp-flag-symptom-check")
    new_sounds = rig.window.sounder.played[played:]
    assert new_sounds and {p.name for p in new_sounds} == {"MEDIUM"}
    sym = view.panels["symptoms"]
    assert "Answer every symptom" in rig.save(sym)
    sym.set_answers({k: False for k in sym.answers})
    assert rig.save(sym) == ""
    assert view.current_panel() is None and not model.symptom_check_pending
    assert "hypertensive_emergency" not in _alarm_keys(view)

    # -- the 40-minute prompts: BP done by the monitor, MOAA/S and CADSS due; one tap each
    ps = {(p.kind, p.due_min): p.state for p in model.prompts()}
    assert ps[(PromptKind.BP_40, 40.0)] is PromptState.DONE
    assert ps[(PromptKind.MOAAS, 40.0)] is PromptState.DUE
    rig.click(next(b for b in view.prompt_buttons if "MOAA/S" in b.text()))
    assert view.current_panel() == "moaas"
    moaas = view.panels["moaas"]
    assert rig.save(moaas, moaas.buttons[3]) == ""
    assert any(a.key == "moaas" and a.priority.name == "MEDIUM" for a in model.active_alarms())
    cadss = rig.open(view, "cadss")
    scores = dict.fromkeys(range(1, 24), 0)
    scores.update({1: 2, 5: 3, 20: 1})
    cadss.set_scores(scores)
    assert "Total: 6 of 92" in cadss.total.text()
    assert rig.save(cadss) == ""

    # -- side effects: BP increased is suggested from the flagged vitals
    se = rig.open(view, "side_effects")
    assert se.rows["bp_increased"][0].isChecked()
    assert "Blood pressure increased" in se.suggested.text()
    se.rows["nausea"][0].setChecked(True)
    assert rig.save(se) == ""

    # -- a note; then corrections (a note's text, the MOAA/S score) need a reason
    note = rig.open(view, "note")
    note.text.setPlainText("Patient resting, eyes closed")
    assert rig.save(note) == ""
    entries = rig.open(view, "entries")
    record = _rows(entries.record)
    assert any("Demo Nurse" in t and "MOAA/S: 3" in t for t in record), record  # who and what
    assert any("Flag: raised: ** SYS" in t and "rise +" in t for t in record), record
    assert any("Symptom check: no symptoms" in t for t in record), record
    texts = _rows(entries.list)
    entries.list.setCurrentRow(
        next(i for i, t in enumerate(texts) if "Note: Patient resting" in t)
    )
    assert entries.field.currentText() == "text"
    entries.text.setText("Patient resting, eyes closed, responsive")
    assert "reason" in rig.save(entries)
    qtbot.keyClicks(entries.reason, "added responsiveness")
    assert rig.save(entries) == ""
    assert model.state.live(EntryKind.NOTE)[-1].text.endswith("responsive")
    entries = rig.open(view, "entries")
    texts = _rows(entries.list)
    entries.list.setCurrentRow(next(i for i, t in enumerate(texts) if "MOAA/S: 3" in t))
    entries.choice.setCurrentText("4")
    qtbot.keyClicks(entries.reason, "misread: responded to normal voice")
    assert rig.save(entries) == ""
    assert "moaas" not in _alarm_keys(view)  # 4: no flag
    assert model.state.latest_moaas == 4

    # -- acknowledge with the keyboard: Ctrl+K the most urgent flag, Ctrl+Shift+K the rest
    first = view.alarm_panel.most_urgent_unacknowledged()
    assert first is not None and len(model.active_alarms()) > 1
    focus = QApplication.focusWidget()
    assert focus is not None and view.isAncestorOf(focus)  # the keys go to this chair
    qtbot.keyClick(focus, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    rig.settle()
    acked = {a.key for a in model.active_alarms() if a.acknowledged}
    assert acked == {first}, acked
    qtbot.keyClick(
        QApplication.focusWidget(),
        Qt.Key.Key_K,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    rig.settle()
    assert model.active_alarms() and all(a.acknowledged for a in model.active_alarms())
    qtbot.waitUntil(lambda: all("acknowledged" in t for t in view.alarm_panel.texts()))
    open_kinds = [b.text() for b in view.prompt_buttons]
    assert not any("BP at ~40" in t for t in open_kinds), open_kinds
    rig.shot("esketamine-3-observation")

    # -- at 90 min: discharge is not possible yet; the panel lists what is not met
    rig.advance(50)
    dis = rig.open(view, "discharge")
    assert isinstance(dis, DischargePanel)
    assert set(dis.checks) == set(CHECKLIST_LABELS)
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(95)
    assert "Minimum observation:" in dis.status.text()
    crit = dis.criteria.text()
    assert "of 120 min observed" in crit and "MOAA/S is 4" in crit, crit
    assert "Checklist" not in crit and "ready to leave" not in crit
    qtbot.keyClicks(dis.password, "demo")
    err = rig.save(dis)
    assert "of 120 min observed" in err and "physician" in err, err
    assert model.state is not None and dis.password.text() == ""  # asked again
    summary = chair_summary(model)
    assert summary["phase"] == "observation" and summary["time"].startswith("T+")
    rig.click(dis.cancel_button)

    # -- the 90-minute ratings from the Due list: alert, no dissociation
    rig.click(next(b for b in view.prompt_buttons if "MOAA/S" in b.text()))
    assert rig.save(view.panels["moaas"], view.panels["moaas"].buttons[5]) == ""
    cadss = rig.open(view, "cadss")
    cadss.set_scores(dict.fromkeys(range(1, 24), 0))
    assert rig.save(cadss) == ""

    # -- past 2 h, with the BP back down: every criterion met; the nurse signs
    rig.advance(58)
    dis = rig.open(view, "discharge")
    assert "2-hour minimum observation is complete" in dis.status.text()
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(95)
    assert "Every discharge criterion is met" in dis.criteria.text(), dis.criteria.text()
    assert not dis.override_box.isEnabled()
    rig.shot("esketamine-4-discharge")
    assert "Sign the discharge with your password" in rig.save(dis)
    qtbot.keyClicks(dis.password, "demo")
    assert rig.save(dis) == ""
    assert model.state is None and model.last_state is not None
    assert model.last_state.discharge is not None and model.last_state.discharge.total_min >= 120
    assert model.active_alarms() == []
    assert chair_summary(model)["phase"] == "discharged"
    assert view.clock_label.text() == "Discharged · no session"
    assert view.action_buttons["start"].isEnabled()
    sid = model.last_state.session_id

    # -- what is stored
    assert rig.station.writer is not None and rig.station.writer.wait_idle(10)
    with Session(rig.engine) as db:
        ts = db.get(TreatmentSession, sid)
        assert ts is not None and ts.ended_at is not None
        assert ts.ready_to_leave_min == 95 and ts.sedation is True  # MOAA/S 3→4 is sedation
        assert ts.first_dose_at is not None
        assert (ts.ended_at - ts.first_dose_at) >= timedelta(minutes=120)
        doses = db.scalars(select(DoseEvent).where(DoseEvent.session_id == sid)).all()
        assert [(d.device_number, d.lot) for d in doses] == [(1, "LOT-A1"), (2, "LOT-A1")]
        kinds = [
            o.kind for o in db.scalars(select(Observation).where(Observation.session_id == sid))
        ]
        assert kinds.count(ObservationKind.MOAAS) == 2 and kinds.count(ObservationKind.CADSS) == 2
        assert kinds.count(ObservationKind.SIDE_EFFECT) == 2
        alarms = db.scalars(select(AlarmRecord).where(AlarmRecord.session_id == sid)).all()
        assert any(a.key == "bp_rise_nibp_sys" and a.action == "raised" for a in alarms)
        assert any(a.action == "acknowledged" and a.user_id is not None for a in alarms)
        n_readings = db.scalar(
            select(func.count()).select_from(VitalReading).where(VitalReading.session_id == sid)
        )
        assert n_readings and n_readings > 100  # the monitor's readings, 1 Hz for ~2.5 h
        entry_kinds = db.scalars(
            select(SessionEntryRow.kind).where(SessionEntryRow.session_id == sid)
        ).all()
        assert entry_kinds[0] == "started" and entry_kinds[-1] == "discharged"
        assert entry_kinds.count("device") == 2 and entry_kinds.count("correction") == 2
        nurse = db.scalars(select(User).where(User.username == "nurse")).one()
        audited = db.scalars(select(AuditEntry).where(AuditEntry.user_id == nurse.id)).all()
        assert len(audited) > 10
    # the record the screen shows is the one stored: the core's entries are the rows
    assert [e.kind.value for e in model.core.entries] == list(entry_kinds)


def test_whole_iv_session_with_prescriber_decision_and_early_discharge(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    view = rig.view(1)  # Chair 2: desaturation scenario
    model = view.model
    # Open the chair from the overview, as a nurse would.
    rig.window.tabs.setCurrentIndex(0)
    assert rig.window.overview is not None
    rig.click(rig.window.overview.cards[1])
    assert rig.window.tabs.currentWidget() is view

    start = rig.open(view, "start")
    for field, text in ((start.mrn, "NEW-77"), (start.first, "Kim"), (start.last, "Newpatient")):
        qtbot.keyClicks(field, text)
    start.iv.setChecked(True)
    start.mgkg.setValue(0.5)
    start.minutes.setValue(40)
    start.confirm.setChecked(True)
    assert "weight" in rig.save(start)  # an IV dose needs the weight
    start.weight.setValue(80)
    assert rig.save(start) == ""
    assert model.state is not None and model.state.plan.treatment is Treatment.IV_KETAMINE

    # Typed pre-dose BP above 140/90: a prescriber decision is needed before the infusion.
    scr = rig.open(view, "screening")
    scr.sys.setValue(150)
    scr.dia.setValue(92)
    scr.hr.setValue(74)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    assert "prescriber decision" in scr.advisory.text()
    assert rig.save(scr) == ""
    assert model.state.screening is not None and model.state.screening.above_advisory
    assert model.latest_nibp() == (150, 92)  # the typed BP is on the chart too
    dose = rig.open(view, "dose")
    info = dose.info.text()
    assert "0.5 mg/kg × 80 kg over 40 min" in info and "not started" in info, info
    assert "prescriber" in rig.save(dose)
    rig.click(dose.cancel_button)
    scr = rig.open(view, "screening")
    scr.sys.setValue(150)
    scr.dia.setValue(92)
    scr.hr.setValue(74)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    scr.proceed.setChecked(True)
    qtbot.keyClicks(scr.prescriber, "nurse")
    qtbot.keyClicks(scr.prescriber_password, "demo")
    assert "must be authorised by a physician" in rig.save(scr)
    assert model.state.decision is None
    scr.prescriber.clear()
    qtbot.keyClicks(scr.prescriber, "doctor")
    qtbot.keyClicks(scr.prescriber_password, "demo")
    assert rig.save(scr) == ""
    assert model.state.decision is not None and model.state.decision.by.startswith("Demo Phys")
    dose = rig.open(view, "dose")
    assert dose.blockers.text() == ""
    assert rig.save(dose) == ""
    assert model.state.infusion is not None and model.state.infusion.planned_mg == 40

    # Desaturation 25-45 min after the start: SpO2 flagged, on the chart too.
    rig.show(view)
    rig.advance(32)
    qtbot.waitUntil(lambda: "spo2_low" in _alarm_keys(view), timeout=10000)
    qtbot.waitUntil(lambda: view.chart.flagged_point_count("spo2") > 0, timeout=5000)
    assert any("SpO" in t for t in view.alarm_panel.texts())
    dose = rig.open(view, "dose")
    assert "running since" in dose.info.text()
    assert "planned stop" in dose.countdown.text() and "IV " in view.dose_label.text()
    # stopping before the planned time is asked twice (and needs a reason)
    assert rig.save(dose, dose.stop_button) == "" and model.state.infusion.stop is None
    assert "min before its planned stop" in dose.stop_warning.text()
    rig.click(dose.keep_button)
    assert dose.stop_warning.text() == "" and model.state.infusion.stop is None
    rig.click(dose.stop_button)
    assert "give the reason" in rig.save(dose, dose.stop_button)
    qtbot.keyClicks(dose.stop_reason, "SpO2 below 90")
    rig.click(dose.stop_button)
    assert rig.save(dose, dose.stop_button) == ""
    assert model.state.infusion.stop is not None and model.state.dosing_complete

    # MOAA/S 1 is high priority: shown, sounded, and latched until acknowledged.
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[1]) == ""
    high = [a for a in model.active_alarms() if a.key == "moaas"]
    assert high and high[0].priority.name == "HIGH"
    assert any(t.startswith("*** HIGH: MOAA/S 1") for t in view.alarm_panel.texts())
    assert rig.window.sounder is not None and "HIGH" in {p.name for p in rig.window.sounder.played}
    qtbot.waitUntil(lambda: "***" in rig.window.tabs.tabText(2), timeout=3000)
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[5]) == ""
    assert any(a.key == "moaas" and a.state.value == "latched" for a in model.active_alarms())
    assert any("latched" in t for t in view.alarm_panel.texts())
    rig.shot("iv-1-high-priority-latched")
    rig.click(view.alarm_panel.ack_button)
    rig.settle()
    assert "moaas" not in _alarm_keys(view)

    # Early discharge at ~95 min needs a physician's sign-in and a reason.
    rig.advance(60)
    dis = rig.open(view, "discharge")
    assert isinstance(dis, DischargePanel)
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(80)
    assert "of 120 min observed" in dis.criteria.text() and dis.override_box.isEnabled()
    qtbot.keyClicks(dis.password, "demo")
    err = rig.save(dis)
    assert "physician's sign-in and a reason" in err, err
    qtbot.keyClicks(dis.override_reason, "Transfer to ward for other care")
    qtbot.keyClicks(dis.override_user, "nurse")
    qtbot.keyClicks(dis.override_password, "demo")
    qtbot.keyClicks(dis.password, "demo")
    assert "physician" in rig.save(dis)
    assert model.state is not None
    dis.override_user.clear()
    qtbot.keyClicks(dis.override_user, "doctor")
    qtbot.keyClicks(dis.override_password, "demo")
    qtbot.keyClicks(dis.password, "demo")
    assert rig.save(dis) == ""
    last = model.last_state
    assert model.state is None and last is not None and last.discharge is not None
    assert last.discharge.authorised_by.startswith("Demo Physician")
    assert chair_summary(model)["phase"] == "discharged"
    sid = last.session_id

    assert rig.station.writer is not None and rig.station.writer.wait_idle(10)
    with Session(rig.engine) as db:
        ts = db.get(TreatmentSession, sid)
        assert ts is not None and ts.ended_at is not None and ts.ready_to_leave_min == 80
        assert ts.pulse_oximetry_used is True
        infusion = db.scalars(select(DoseEvent).where(DoseEvent.session_id == sid)).one()
        assert infusion.stopped_at is not None
        assert infusion.mg == pytest.approx(32, abs=1)  # 1 mg/min, stopped at 32 of 40 min
        notes = [
            o.text
            for o in db.scalars(
                select(Observation).where(
                    Observation.session_id == sid, Observation.kind == ObservationKind.NOTE
                )
            )
        ]
        assert ts.predose_decision is not None and ts.predose_decision.value == "proceed"
        assert ts.predose_decision_by_id is not None
        assert ts.early_discharge_by_id == ts.predose_decision_by_id  # the same physician
        assert any("Transfer to ward for other care" in n for n in notes), notes
        alarms = db.scalars(select(AlarmRecord).where(AlarmRecord.session_id == sid)).all()
        assert any(a.key == "moaas" and a.priority == "high" for a in alarms)
        assert any(a.key == "spo2_low" and a.action == "raised" for a in alarms)


def test_two_patients_in_a_row_at_the_same_chair(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    """After the first patient is discharged, nothing of theirs shows for the second one."""
    view = rig.view(0)
    model = view.model
    rig.show(view)
    qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)

    # -- patient 1: typed in (weight, DOB), other treatment, a typed BP, a flag, a note
    start = rig.open(view, "start")
    for field, text in (
        (start.mrn, "FIRST-1"),
        (start.first, "Fay"),
        (start.last, "First"),
        (start.dob, "1980-02-03"),
    ):
        qtbot.keyClicks(field, text)
    start.weight.setValue(70)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    first = model.state
    assert first is not None
    scr = rig.open(view, "screening")
    scr.sys.setValue(122)
    scr.dia.setValue(78)
    scr.hr.setValue(70)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    assert rig.save(scr) == ""
    dose = rig.open(view, "dose")
    qtbot.keyClicks(dose.description, "Ketamine 35 mg IM")
    assert rig.save(dose) == ""
    note = rig.open(view, "note")
    note.text.setPlainText("First patient's note")
    assert rig.save(note) == ""
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[3]) == ""
    assert "moaas" in _alarm_keys(view)
    rig.advance(125, step_s=120)
    # the BP rise (Chair 1's scenario) asked about symptoms while no form was open
    assert view.current_panel() == "symptoms"
    sym = view.panels["symptoms"]
    sym.set_answers({k: False for k in sym.answers})
    assert rig.save(sym) == ""
    moaas = rig.open(view, "moaas")
    assert rig.save(moaas, moaas.buttons[5]) == ""
    # a fast heart rate typed by hand: flagged (HR is no discharge criterion)
    vitals = rig.open(view, "vitals")
    vitals.fields["hr"].setValue(125)
    assert rig.save(vitals) == ""
    assert "hr_high" in _alarm_keys(view)
    assert any("HR" in t or "Heart" in t for t in view.alarm_panel.texts())
    assert model.buffers.count("hr") > 0 and model.buffers.count("nibp_sys") > 0
    first_end = model.now()
    rig.shot("two_sessions_first")
    assert rig.window.grab().size().toTuple() == SCREEN

    dis = rig.open(view, "discharge")
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(60)
    qtbot.keyClicks(dis.password, "demo")
    assert rig.save(dis) == "", dis.criteria.text()
    assert model.state is None and model.last_state is not None
    assert model.last_state.discharge is not None

    # -- patient 2 at the same chair: empty forms, an empty chart, no flags, an empty record
    rig.advance(1)
    start = rig.open(view, "start")
    assert isinstance(start, StartSessionPanel)
    assert [start.mrn.text(), start.first.text(), start.last.text(), start.dob.text()] == [""] * 4
    assert start.weight.text() == "—" and not start.confirm.isChecked()
    assert start.results.count() == 0 and start.search.text() == ""
    for field, text in ((start.mrn, "SECOND-2"), (start.first, "Sid"), (start.last, "Second")):
        qtbot.keyClicks(field, text)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    second = model.state
    assert second is not None and second.session_id != first.session_id
    assert second.patient.weight_kg is None and second.patient.date_of_birth is None
    assert second.screening is None and second.first_dose is None and not second.observations

    assert model.active_alarms() == []
    assert view.alarm_panel.texts() == [] and view.alarm_panel.none_label.isVisible()
    # the first patient's readings are gone from the chart's buffers (and the typed BP too)
    for p in ("hr", "spo2", "nibp_sys"):
        series = model.buffers.series(p)
        assert series is None or all(t > first_end.timestamp() for t in series.t), p
    assert model.latest_nibp() is None
    assert all(r.host_time > first_end for r, _ in model.buffers.latest().values())

    scr = view.panels["screening"]
    rig.open(view, "screening")
    assert _value_text(scr) == ("—", "—", False, False)
    dose = rig.open(view, "dose")
    assert dose.description.text() == ""
    rig.click(dose.cancel_button)
    entries = rig.open(view, "entries")
    record = _rows(entries.record)
    assert len(record) == 1 and "Sid Second (SECOND-2)" in record[0], record
    assert not any("First" in t or "Fay" in t for t in record + _rows(entries.list))
    notes = rig.open(view, "note")
    assert _rows(notes.history) == []
    rig.click(notes.cancel_button)
    assert {e.session_id for e in model.core.entries} == {second.session_id}
    assert all("First" not in line.text for line in model.record())
    assert "Sid Second" in view.phase_label.text()
    rig.advance(2)
    qtbot.waitUntil(lambda: model.buffers.count("hr") > 0, timeout=5000)  # the monitor goes on
    rig.shot("two_sessions_second")
    from .conftest import SHOTS

    assert (SHOTS / "two_sessions_first.png").stat().st_size > 0
    assert (SHOTS / "two_sessions_second.png").stat().st_size > 0


def test_the_next_patients_chart_and_numerics_show_nothing_of_the_previous_one(  # type: ignore[no-untyped-def]
    rig: Rig, qtbot
) -> None:
    view = rig.view(1)
    model = view.model
    rig.show(view)
    _start(rig, view, "PREV-1", "Pat", "Previous")
    scr = rig.open(view, "screening")
    scr.sys.setValue(132)
    scr.dia.setValue(85)
    scr.hr.setValue(80)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    assert rig.save(scr) == ""
    assert view.numerics.tiles["nibp"].value.text() == "132/85"  # typed: on screen at once
    view.chart.redraw()
    assert len(view.chart.curves["nibp_sys"].getData()[0]) == 1
    dose = rig.open(view, "dose")
    qtbot.keyClicks(dose.description, "Ketamine 35 mg IM")
    assert rig.save(dose) == ""
    dis = rig.open(view, "discharge")  # early: a physician accepts it
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(0)
    qtbot.keyClicks(dis.override_reason, "Left against advice")
    qtbot.keyClicks(dis.override_user, "doctor")
    qtbot.keyClicks(dis.override_password, "demo")
    qtbot.keyClicks(dis.password, "demo")
    assert rig.save(dis) == ""
    _start(rig, view, "NEXT-2", "Nat", "Next")
    assert model.buffers.series("nibp_sys") is None  # the buffers are clean ...
    x = view.chart.curves["nibp_sys"].getData()[0]
    leftovers = {
        "chart: NIBP points": 0 if x is None else len(x),
        "chart: NIBP flag marks": view.chart.flagged_point_count("bp"),
        "numerics: NIBP tile": view.numerics.tiles["nibp"].value.text(),
    }
    # ... and so must be what the nurse sees
    assert leftovers == {
        "chart: NIBP points": 0,
        "chart: NIBP flag marks": 0,
        "numerics: NIBP tile": "--",
    }


def _value_text(scr) -> tuple[str, str, bool, bool]:  # type: ignore[no-untyped-def]
    return (scr.sys.text(), scr.dia.text(), scr.fasting.isChecked(), scr.escort.isChecked())


def test_an_auditor_cannot_start_a_session(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    """Role enforcement through the UI: the auditor's Start is refused on screen, nothing is
    recorded and the chair stays free."""
    writer = rig.station.writer
    assert writer is not None
    writer.call(
        lambda s: create_user(
            s,
            username="audrey",
            full_name="Audrey Auditor",
            role="auditor",
            password="read-only-pass",
        )
    )
    rig.station.sign_in("audrey", "read-only-pass")
    view = rig.view(0)
    model = view.model
    rig.show(view)
    assert model.actor.username == "audrey"
    with Session(rig.engine) as db:
        before = db.scalar(select(func.count()).select_from(SessionEntryRow))

    start = rig.open(view, "start")
    for field, text in ((start.mrn, "AUD-1"), (start.first, "Ann"), (start.last, "Audit")):
        qtbot.keyClicks(field, text)
    start.other.setChecked(True)
    start.confirm.setChecked(True)
    err = rig.save(start)
    assert "Auditors have read-only access" in err, err
    assert view.current_panel() == "start" and start.mrn.text() == "AUD-1"  # kept as typed
    assert model.state is None and model.last_state is None and model.core.entries == ()
    assert view.action_buttons["start"].isEnabled()
    assert not view.action_buttons["dose"].isEnabled()
    with Session(rig.engine) as db:
        assert db.scalar(select(func.count()).select_from(SessionEntryRow)) == before == 0
        assert db.scalar(select(func.count()).select_from(TreatmentSession)) == 0


def test_per_session_limit_change_needs_a_physician_and_a_reason(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    view = rig.view(0)
    model = view.model
    rig.show(view)
    _start(rig, view, "LIM-1", "Lee", "Limits")
    panel = rig.open(view, "limits")
    low, _ = panel.rows["spo2"]
    assert low is not None and low.value() == 90
    low.setValue(88)
    assert "needs a physician to sign in" in rig.save(panel)  # the nurse alone may not
    qtbot.keyClicks(panel.physician, "doctor")
    qtbot.keyClicks(panel.physician_password, "demo")
    assert "needs a reason" in rig.save(panel)
    assert panel.physician_password.text() == ""  # asked again
    assert model.profile.limits_for("spo2")[0].low == 90
    qtbot.keyClicks(panel.reason, "COPD, baseline SpO2 89-91")
    qtbot.keyClicks(panel.physician_password, "demo")
    assert rig.save(panel) == ""
    assert model.state is not None and [lc.limit_id for lc in model.state.limit_changes] == [
        "spo2"
    ]
    assert model.profile.limits_for("spo2")[0].low == 88  # the live rules use it
    lines = [item.objectName() for _, item in view.chart._threshold_items]
    assert "threshold-spo2-88" in lines and "threshold-spo2-90" not in lines
    sid = model.state.session_id
    assert rig.station.writer is not None and rig.station.writer.wait_idle(10)
    with Session(rig.engine) as db:
        profiles = db.scalars(
            select(SessionThresholdProfile).where(SessionThresholdProfile.session_id == sid)
        ).all()
        assert profiles
        kinds = db.scalars(
            select(SessionEntryRow.kind).where(SessionEntryRow.session_id == sid)
        ).all()
        assert "limit_changed" in kinds


@pytest.mark.pty
def test_connect_the_chairs_monitor_at_session_start(rig: Rig, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The nurse connects Chair 1 to a Masimo oximeter (an emulator on a real pty)."""
    from devices.emulators.base import PtyServer
    from devices.emulators.masimo import MasimoEmulator
    from devices.scenarios import get_scenario
    from ketamon.presenters.chair import Refused

    view = rig.view(0)
    model = view.model
    rig.show(view)
    link = tmp_path / "oximeter"
    server = PtyServer(MasimoEmulator(get_scenario("stable")), speed=5.0, link=link).start()
    try:
        start = rig.open(view, "start")
        start.protocol.setCurrentText("datex")
        start.address.setText("")
        rig.click(start.connect_button)
        assert "needs 'port'" in start.error.text()
        start.protocol.setCurrentText("masimo")
        start.address.setText(str(link))
        rig.click(start.connect_button)
        assert start.error.text() == ""
        assert f"masimo on {link}" in start.monitor_label.text()
        qtbot.waitUntil(lambda: "streaming" in view.link_label.text(), timeout=10000)
        before = model.buffers.count("spo2")
        qtbot.waitUntil(lambda: model.buffers.count("spo2") > before, timeout=10000)
        sources = {r.source for r, _ in model.buffers.latest().values()}
        assert "Chair 1" in sources
        for field, text in ((start.mrn, "OX-1"), (start.first, "Ola"), (start.last, "Oxi")):
            qtbot.keyClicks(field, text)
        start.other.setChecked(True)
        start.confirm.setChecked(True)
        assert rig.save(start) == ""
        assert model.state is not None
        assert model.state.device_description == f"masimo on {link}"
        # Once a session runs, the monitor is not changed under it.
        with pytest.raises(Refused, match="before starting"):
            model.connect_monitor("simulator")
    finally:
        rig.station.shutdown()
        server.stop()
