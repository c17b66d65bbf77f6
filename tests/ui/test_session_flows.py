"""Whole sessions at the chair, as a nurse clicks through them, on the simulator with scenarios
that breach thresholds, driven by a manual clock (minutes pass in milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.clock import ManualClock
from ketamon.app import Station, build_window, make_station
from ketamon.config import Config
from ketamon.domain.prompts import PromptKind, PromptState
from ketamon.domain.session_rules import ChecklistItem
from ketamon.paths import resolve_paths
from ketamon.services import load_profile
from ketamon.storage.models import (
    AlarmRecord,
    AuditEntry,
    DoseEvent,
    Observation,
    ObservationKind,
    TreatmentSession,
    User,
    VitalReading,
)
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.main_window import MainWindow
from ketamon.ui.overview import chair_summary

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screens"


@pytest.fixture
def station(qtbot) -> Iterator[tuple[Station, MainWindow, ManualClock]]:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    paths = resolve_paths(demo=True).ensure()
    config = Config()
    st = make_station(
        paths, config, load_profile(config), paths.sqlite_url(), demo=True, clock=clock
    )
    window = build_window(st, "ketamon — test")
    qtbot.addWidget(window)
    st.start()
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    try:
        yield st, window, clock
    finally:
        window.close()
        st.shutdown()


def advance(qtbot, clock: ManualClock, minutes: float, step_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Move the clock forward in steps, letting the simulator thread and the UI catch up."""
    left = minutes * 60.0
    while left > 0:
        clock.advance(min(step_s, left))
        left -= step_s
        qtbot.wait(40)


def shot(widget, name: str) -> None:  # type: ignore[no-untyped-def]
    """Save what the nurse sees (out/screens/, not committed) for a person to look at."""
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()  # let new rows lay out before the grab
    SHOTS.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(SHOTS / f"{name}.png"))


def click(qtbot, button) -> None:  # type: ignore[no-untyped-def]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_whole_esketamine_session(station, qtbot) -> None:  # type: ignore[no-untyped-def]
    st, window, clock = station
    view: ChairViewWidget = window.chair_views[0]  # Chair 1: bp_rise scenario
    model = view.model
    window.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: model.latest_value("hr") is not None, timeout=10000)

    # -- start: pick the patient, esketamine 56 mg
    click(qtbot, view.action_buttons["start"])
    start = view.panels["start"]
    qtbot.keyClicks(start.search, "DEMO-0001")
    qtbot.waitUntil(lambda: start.results.count() == 1)
    start.results.setCurrentRow(0)
    assert start.last.text() == "Demo"
    click(qtbot, start.save_button)
    assert model.session is not None and view.current_panel() is None

    # -- dosing is blocked before the screening
    click(qtbot, view.action_buttons["dose"])
    assert "screening" in view.panels["dose"].blockers.text()
    click(qtbot, view.panels["dose"].cancel_button)

    # -- screening with the monitor's pre-dose cuff reading
    advance(qtbot, clock, 2)
    qtbot.waitUntil(lambda: model.latest_nibp() is not None, timeout=10000)
    click(qtbot, view.action_buttons["screening"])
    scr = view.panels["screening"]
    click(qtbot, scr.use_monitor)
    for box in (scr.fasting, scr.escort):
        box.setChecked(True)
    shot(window, "esketamine-1-screening")
    click(qtbot, scr.save_button)
    assert scr.error.text() == "", scr.error.text()

    # -- device 1 needs a lot number; device 2 must wait 5 min
    click(qtbot, view.action_buttons["dose"])
    dose = view.panels["dose"]
    click(qtbot, dose.save_button)
    assert "lot number" in dose.error.text()
    qtbot.keyClicks(dose.lot, "LOT-A1")
    click(qtbot, dose.save_button)
    assert model.session.first_dose is not None
    click(qtbot, view.action_buttons["dose"])
    click(qtbot, dose.save_button)
    assert "Wait" in dose.error.text()
    advance(qtbot, clock, 5, step_s=30)
    click(qtbot, dose.save_button)
    assert len(model.session.device_times) == 2 and model.dosing_complete()

    # -- to 40 min: the BP rise is flagged. The nurse is writing a note: the symptom check
    # waits at the top of the Due list instead of taking her out of the form.
    click(qtbot, view.action_buttons["note"])
    advance(qtbot, clock, 37)
    qtbot.waitUntil(lambda: model.symptom_check_pending, timeout=10000)
    assert view.current_panel() == "note"
    qtbot.waitUntil(lambda: any("symptoms" in b.text() for b in view.prompt_buttons), timeout=5000)
    click(qtbot, view.panels["note"].cancel_button)
    click(qtbot, next(b for b in view.prompt_buttons if "symptoms" in b.text()))
    assert view.current_panel() == "symptoms"
    keys = {a.key for a in model.chair.alarms.active()}
    assert keys & {"bp_rise_nibp_sys", "bp_rise_nibp_dia", "nibp_sys", "nibp_dia"}
    shot(window, "esketamine-2-bp-flag-symptom-check")
    assert window.sounder is not None and "MEDIUM" in {p.name for p in window.sounder.played}
    sym = view.panels["symptoms"]
    click(qtbot, sym.save_button)
    assert "Answer every symptom" in sym.error.text()
    sym.set_answers({k: False for k in sym.answers})
    click(qtbot, sym.save_button)
    assert view.current_panel() is None
    assert "hypertensive_emergency" not in {a.key for a in model.chair.alarms.active()}

    # -- the 40-minute prompts: BP done by the monitor, MOAA/S and CADSS due; one tap each
    ps = {(p.kind, p.due_min): p.state for p in model.prompts()}
    assert ps[(PromptKind.BP_40, 40.0)] is PromptState.DONE
    assert ps[(PromptKind.MOAAS, 40.0)] is PromptState.DUE
    moaas_prompt = next(b for b in view.prompt_buttons if "MOAA/S" in b.text())
    click(qtbot, moaas_prompt)
    assert view.current_panel() == "moaas"
    click(qtbot, view.panels["moaas"].buttons[3])
    assert any(
        a.key == "moaas" and a.priority.name == "MEDIUM" for a in model.chair.alarms.active()
    )
    click(qtbot, view.action_buttons["cadss"])
    cadss = view.panels["cadss"]
    scores = dict.fromkeys(range(1, 24), 0)
    scores.update({1: 2, 5: 3, 20: 1})
    cadss.set_scores(scores)
    assert "Total: 6 of 92" in cadss.total.text()
    click(qtbot, cadss.save_button)

    # -- side effects: BP increased is suggested from the flagged vitals
    click(qtbot, view.action_buttons["side_effects"])
    se = view.panels["side_effects"]
    assert se.rows["bp_increased"][0].isChecked()
    se.rows["nausea"][0].setChecked(True)
    click(qtbot, se.save_button)
    assert se.error.text() == ""

    # -- a note; then corrections (a note's text, the MOAA/S score) need a reason
    click(qtbot, view.action_buttons["note"])
    note = view.panels["note"]
    note.text.setPlainText("Patient resting, eyes closed")
    click(qtbot, note.save_button)
    click(qtbot, view.action_buttons["entries"])
    entries = view.panels["entries"]
    texts = [entries.list.item(i).text() for i in range(entries.list.count())]
    assert any("Demo Nurse" in t and "MOAA/S 3" in t for t in texts), texts  # who and what
    note_row = next(i for i, t in enumerate(texts) if "Note: Patient resting" in t)
    entries.list.setCurrentRow(note_row)
    entries.text.setText("Patient resting, eyes closed, responsive")
    click(qtbot, entries.save_button)
    assert "reason" in entries.error.text()
    qtbot.keyClicks(entries.reason, "added responsiveness")
    click(qtbot, entries.save_button)
    assert entries.error.text() == ""
    assert model.session.notes[-1][2].endswith("responsive")
    click(qtbot, view.action_buttons["entries"])
    entries.list.setCurrentRow(next(i for i, t in enumerate(texts) if "MOAA/S 3" in t))
    entries.choice.setCurrentText("4")
    qtbot.keyClicks(entries.reason, "misread: responded to normal voice")
    click(qtbot, entries.save_button)
    assert entries.error.text() == ""
    assert not any(a.key == "moaas" for a in model.chair.alarms.active())  # 4: no flag
    assert model.session.moaas[-1][1] == 4

    # -- acknowledge with the keyboard
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    assert all(a.acknowledged for a in model.chair.alarms.active())
    qtbot.wait(600)  # one tick of the chair view
    open_kinds = [b.text() for b in view.prompt_buttons]
    assert not any("BP at ~40" in t for t in open_kinds), (open_kinds, model._bp_minutes())
    shot(window, "esketamine-3-observation")

    # -- discharge is blocked before 120 min
    advance(qtbot, clock, 50)
    click(qtbot, view.action_buttons["discharge"])
    dis = view.panels["discharge"]
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(95)
    click(qtbot, dis.save_button)
    assert "120 min" in dis.error.text()
    summary = chair_summary(model)
    assert summary["phase"] == "observation" and summary["time"].startswith("T+")
    advance(qtbot, clock, 30)
    click(qtbot, view.action_buttons["discharge"])
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(95)
    shot(window, "esketamine-4-discharge")
    click(qtbot, dis.save_button)
    assert dis.error.text() == "", dis.error.text()
    assert model.session.discharged is not None
    sid = model.session.id

    st.writer.wait_idle(10)
    with Session(st.writer.engine) as s:
        ts = s.get(TreatmentSession, sid)
        assert ts is not None and ts.ended_at is not None
        assert ts.ready_to_leave_min == 95 and ts.sedation is True  # MOAA/S 4 is sedation
        assert ts.first_dose_at is not None
        assert (ts.ended_at - ts.first_dose_at) >= timedelta(minutes=120)
        doses = s.scalars(select(DoseEvent).where(DoseEvent.session_id == sid)).all()
        assert [(d.device_number, d.lot) for d in doses] == [(1, "LOT-A1"), (2, "LOT-A1")]
        kinds = [
            o.kind for o in s.scalars(select(Observation).where(Observation.session_id == sid))
        ]
        assert ObservationKind.MOAAS in kinds and ObservationKind.CADSS in kinds
        assert kinds.count(ObservationKind.SIDE_EFFECT) == 2
        alarms = s.scalars(select(AlarmRecord).where(AlarmRecord.session_id == sid)).all()
        assert any(a.key.startswith("bp_rise") and a.action == "raised" for a in alarms)
        assert any(a.action == "acknowledged" for a in alarms)
        assert s.scalars(select(VitalReading).where(VitalReading.session_id == sid)).first()
        nurse = s.scalars(select(User).where(User.username == "nurse")).one()
        audited = s.scalars(select(AuditEntry).where(AuditEntry.user_id == nurse.id)).all()
        assert len(audited) > 10
        assert any(e.reason == "added responsiveness" for e in audited)
        corrected = [e for e in audited if e.reason == "misread: responded to normal voice"]
        assert corrected and (corrected[0].old_value, corrected[0].new_value) == ("3", "4")


def test_whole_iv_session_with_prescriber_decision_and_early_discharge(station, qtbot) -> None:  # type: ignore[no-untyped-def]
    st, window, clock = station
    view: ChairViewWidget = window.chair_views[1]  # Chair 2: desaturation scenario
    model = view.model
    # Open the chair from the overview, as a nurse would.
    window.tabs.setCurrentIndex(0)
    qtbot.mouseClick(window.overview.cards[1], Qt.MouseButton.LeftButton)
    assert window.tabs.currentIndex() == 2

    click(qtbot, view.action_buttons["start"])
    start = view.panels["start"]
    for field, text in ((start.mrn, "NEW-77"), (start.first, "Kim"), (start.last, "Newpatient")):
        qtbot.keyClicks(field, text)
    start.weight.setValue(80)
    start.iv.setChecked(True)
    start.mgkg.setValue(0.5)
    start.minutes.setValue(40)
    click(qtbot, start.save_button)
    assert model.session is not None

    # Typed pre-dose BP above 140/90: a prescriber decision is needed before the infusion.
    click(qtbot, view.action_buttons["screening"])
    scr = view.panels["screening"]
    scr.sys.setValue(150)
    scr.dia.setValue(92)
    scr.hr.setValue(74)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    assert "prescriber decision" in scr.advisory.text()
    click(qtbot, scr.save_button)
    click(qtbot, view.action_buttons["dose"])
    dose = view.panels["dose"]
    assert "40 mg over 40 min (1 mg/min)" in dose.info.text()
    click(qtbot, dose.save_button)
    assert "prescriber" in dose.error.text()
    click(qtbot, dose.cancel_button)
    click(qtbot, view.action_buttons["screening"])
    scr.sys.setValue(150)
    scr.dia.setValue(92)
    scr.hr.setValue(74)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    scr.proceed.setChecked(True)
    qtbot.keyClicks(scr.prescriber, "nurse")
    qtbot.keyClicks(scr.prescriber_password, "demo")
    click(qtbot, scr.save_button)
    assert "not a physician" in scr.error.text()
    scr.prescriber.clear()
    qtbot.keyClicks(scr.prescriber, "doctor")
    qtbot.keyClicks(scr.prescriber_password, "demo")
    click(qtbot, scr.save_button)
    assert scr.error.text() == "", scr.error.text()
    click(qtbot, view.action_buttons["dose"])
    click(qtbot, dose.save_button)
    assert dose.error.text() == "" and model.session.infusion_start is not None

    # Desaturation 25-45 min after the start: SpO2 flagged.
    advance(qtbot, clock, 32)
    qtbot.waitUntil(
        lambda: any(a.key == "spo2" for a in model.chair.alarms.active()), timeout=10000
    )
    assert view.chart.flagged_point_count("spo2") > 0
    click(qtbot, view.action_buttons["dose"])
    click(qtbot, dose.stop_button)
    assert model.session.infusion_stop is not None

    # MOAA/S 1 is high priority and latches until acknowledged.
    click(qtbot, view.action_buttons["moaas"])
    click(qtbot, view.panels["moaas"].buttons[1])
    high = [a for a in model.chair.alarms.active() if a.key == "moaas"]
    assert high and high[0].priority.name == "HIGH"
    assert any("***" in t and "HIGH" in t for t in view.alarm_panel.texts())
    assert window.sounder is not None and "HIGH" in {p.name for p in window.sounder.played}
    click(qtbot, view.action_buttons["moaas"])
    click(qtbot, view.panels["moaas"].buttons[5])
    assert any(a.key == "moaas" for a in model.chair.alarms.active())  # latched
    shot(window, "iv-1-high-priority-latched")
    click(qtbot, view.alarm_panel.ack_button)
    assert not any(a.key == "moaas" for a in model.chair.alarms.active())

    # Early discharge at ~95 min needs a physician's sign-in and a reason.
    advance(qtbot, clock, 60)
    click(qtbot, view.action_buttons["discharge"])
    dis = view.panels["discharge"]
    for c in dis.checks.values():
        c.setChecked(True)
    dis.ready.setValue(80)
    qtbot.keyClicks(dis.override_reason, "Transfer to ward for other care")
    qtbot.keyClicks(dis.override_user, "nurse")
    qtbot.keyClicks(dis.override_password, "demo")
    click(qtbot, dis.save_button)
    assert "physician" in dis.error.text()
    dis.override_user.clear()
    qtbot.keyClicks(dis.override_user, "doctor")
    qtbot.keyClicks(dis.override_password, "demo")
    click(qtbot, dis.save_button)
    assert dis.error.text() == "", dis.error.text()
    sid = model.session.id
    assert chair_summary(model)["phase"] == "discharged"

    st.writer.wait_idle(10)
    with Session(st.writer.engine) as s:
        ts = s.get(TreatmentSession, sid)
        assert ts is not None and ts.ended_at is not None and ts.ready_to_leave_min == 80
        assert ts.pulse_oximetry_used is True
        infusion = s.scalars(select(DoseEvent).where(DoseEvent.session_id == sid)).one()
        assert infusion.mg == 40 and infusion.stopped_at is not None
        assert infusion.mg_per_kg == pytest.approx(0.5)
        notes = [
            o.text
            for o in s.scalars(
                select(Observation).where(
                    Observation.session_id == sid, Observation.kind == ObservationKind.NOTE
                )
            )
        ]
        assert any("prescriber decision: proceed" in n for n in notes)
        assert ts.predose_decision is not None and ts.predose_decision.value == "proceed"
        assert ts.predose_decision_by_id is not None
        assert ts.early_discharge_by_id == ts.predose_decision_by_id  # the same physician
        assert any("Early discharge authorised by doctor" in n for n in notes)
        alarms = s.scalars(select(AlarmRecord).where(AlarmRecord.session_id == sid)).all()
        assert any(a.key == "moaas" and a.priority == "high" for a in alarms)
        assert any(a.key == "spo2" for a in alarms)


def test_checklist_items_cover_the_discharge_rules() -> None:
    assert {i.value for i in ChecklistItem} == {
        "bp_baseline",
        "moaas_5",
        "dissociation_resolved",
        "spo2_rr_ok",
        "steady_gait",
        "escort_present",
    }


def test_per_session_limit_override_needs_a_reason_and_is_recorded(station, qtbot) -> None:  # type: ignore[no-untyped-def]
    from ketamon.storage.models import SessionThresholdProfile

    st, window, _clock = station
    view: ChairViewWidget = window.chair_views[0]
    model = view.model
    window.tabs.setCurrentWidget(view)
    click(qtbot, view.action_buttons["start"])
    start = view.panels["start"]
    for field, text in ((start.mrn, "LIM-1"), (start.first, "Lee"), (start.last, "Limits")):
        qtbot.keyClicks(field, text)
    click(qtbot, start.save_button)
    click(qtbot, view.action_buttons["limits"])
    panel = view.panels["limits"]
    low, _ = panel.rows["spo2"]
    assert low is not None and low.value() == 90
    low.setValue(88)
    click(qtbot, panel.save_button)
    assert "reason" in panel.error.text()
    assert model.chair.alarms.profile.band("spo2") == (90, None)
    qtbot.keyClicks(panel.reason, "COPD, baseline SpO2 89-91")
    click(qtbot, panel.save_button)
    assert panel.error.text() == ""
    assert model.chair.alarms.profile.band("spo2") == (88, None)
    lines = [item.objectName() for _, item in view.chart._threshold_items]
    assert "threshold-spo2-88" in lines and "threshold-spo2-90" not in lines
    sid = model.session.id
    st.writer.wait_idle(10)
    with Session(st.writer.engine) as s:
        profiles = s.scalars(
            select(SessionThresholdProfile).where(SessionThresholdProfile.session_id == sid)
        ).all()
        assert len(profiles) == 2 and profiles[-1].origin == "session override"
        assert (
            s.scalars(
                select(AuditEntry).where(AuditEntry.reason == "COPD, baseline SpO2 89-91")
            ).first()
            is not None
        )


@pytest.mark.pty
def test_connect_the_chairs_monitor_at_session_start(station, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The nurse connects Chair 1 to a Masimo oximeter (an emulator on a real pty)."""
    from devices.emulators.base import PtyServer
    from devices.emulators.masimo import MasimoEmulator
    from devices.scenarios import get_scenario

    _st, window, _clock = station
    view: ChairViewWidget = window.chair_views[0]
    model = view.model
    window.tabs.setCurrentWidget(view)
    link = tmp_path / "oximeter"
    server = PtyServer(MasimoEmulator(get_scenario("stable")), speed=5.0, link=link).start()
    try:
        click(qtbot, view.action_buttons["start"])
        start = view.panels["start"]
        start.protocol.setCurrentText("datex")
        start.address.setText("")
        click(qtbot, start.connect_button)
        assert "needs 'port'" in start.error.text()
        start.protocol.setCurrentText("masimo")
        start.address.setText(str(link))
        click(qtbot, start.connect_button)
        assert start.error.text() == "" and f"masimo on {link}" in start.monitor_label.text()
        qtbot.waitUntil(lambda: "streaming" in view.link_label.text(), timeout=10000)
        before = model.chair.buffers.count("spo2")
        qtbot.waitUntil(lambda: model.chair.buffers.count("spo2") > before, timeout=10000)
        sources = {r.source for r, _ in model.chair.buffers.latest().values()}
        assert "Chair 1" in sources
        for field, text in ((start.mrn, "OX-1"), (start.first, "Ola"), (start.last, "Oxi")):
            qtbot.keyClicks(field, text)
        click(qtbot, start.save_button)
        assert model.session is not None
        # Once a session runs, the monitor is not changed under it.
        from ketamon.model.chair_session import ActionRefused

        with pytest.raises(ActionRefused, match="before starting"):
            model.connect_monitor("simulator")
    finally:
        model.chair.stop()
        server.stop()
