"""After a crash or restart, the app finds the open session and resumes it at its chair: the
record comes back from the database, and so do the chart's history and the live rules' state
(the first dose and the BP-rise baseline)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.clock import ManualClock
from ketamon.domain.record import EntryKind
from ketamon.storage.models import AlarmRecord
from ketamon.ui.chair_view import ChairViewWidget
from ketamon.ui.login import LoginDialog, ResumeSessionsDialog

from .conftest import Rig, make_demo_station


def _start_esketamine(rig: Rig, view: ChairViewWidget, mrn: str) -> None:
    qtbot = rig.qtbot
    start = rig.open(view, "start")
    qtbot.keyClicks(start.search, mrn)
    qtbot.waitUntil(lambda: start.results.count() == 1, timeout=5000)
    start.results.setCurrentRow(0)
    start.confirm.setChecked(True)
    assert rig.save(start) == ""
    assert view.model.state is not None and view.model.state.patient.mrn == mrn


def _resume_all(rig: Rig) -> list[int]:
    """What the app does at start-up: offer the open sessions, resume the ones chosen."""
    offered = rig.station.open_sessions()
    dialog = ResumeSessionsDialog(offered)
    rig.qtbot.addWidget(dialog)
    chosen = dialog.selected()
    rig.station.resume(chosen)
    rig.qtbot.waitUntil(
        lambda: all(
            any(m.state is not None and m.state.session_id == sid for m in rig.station.models)
            for sid in chosen
        ),
        timeout=10000,
    )
    rig.settle()
    return chosen


def test_open_session_is_offered_and_resumed_after_restart(open_rig: Callable[..., Rig]) -> None:
    clock = ManualClock()
    first = open_rig(clock, start=False)
    view = first.view(0)
    _start_esketamine(first, view, "DEMO-0002")
    moaas = first.open(view, "moaas")
    assert first.save(moaas, moaas.buttons[5]) == ""
    note = first.open(view, "note")
    note.text.setPlainText("before the restart")
    assert first.save(note) == ""
    sid = view.model.state.session_id
    first.window.close()
    first.station.shutdown()  # the app goes away without discharging (a crash or a restart)

    clock.advance(120)
    second = open_rig(clock, start=False)
    offered = second.station.open_sessions()
    assert [s for s, _ in offered] == [sid]
    assert "Chair 1: Sam Sample (DEMO-0002)" in offered[0][1]
    assert _resume_all(second) == [sid]
    view = second.view(0)
    resumed = view.model.state
    assert resumed is not None and resumed.session_id == sid
    assert resumed.patient.mrn == "DEMO-0002" and resumed.plan.dose_mg == 56
    # What was recorded comes back, with its authors: the pre-dose MOAA/S is not asked again.
    assert [o.kind for o in resumed.observations] == [EntryKind.MOAAS, EntryKind.NOTE]
    assert all(o.author.startswith("Demo Nurse") for o in resumed.observations)
    due = {p.kind.value for p in view.model.prompts() if p.open}
    assert "moaas" not in due and "predose_bp" in due
    assert second.station.models[1].state is None
    # ... and the window shows it: the patient in the header, the record under Entries.
    assert "Sam Sample" in view.phase_label.text()
    assert view.clock_label.text().startswith("Pre-dose · 2 min")
    assert not view.action_buttons["start"].isEnabled()
    entries = second.open(view, "entries")
    record = [entries.record.item(i).text() for i in range(entries.record.count())]
    assert any("MOAA/S: 5" in t for t in record) and any("before the restart" in t for t in record)
    # The session goes on after the restart: a new entry is added to the same record.
    second.click(entries.cancel_button)
    moaas = second.open(view, "moaas")
    assert second.save(moaas, moaas.buttons[5]) == ""
    assert view.model.state is not None and view.model.state.session_id == sid
    assert len(view.model.state.live(EntryKind.MOAAS)) == 2


def test_restart_during_observation_keeps_the_baseline_and_the_chart(
    open_rig: Callable[..., Rig],
) -> None:
    """Dosed with a pre-dose BP of 120/80, restarted: a reading of 161/85 is still a BP rise of
    41 over that baseline, and the chart still shows what was measured before the restart."""
    clock = ManualClock()
    first = open_rig(clock)
    view = first.view(0)
    model = view.model
    first.show(view)
    _start_esketamine(first, view, "DEMO-0001")
    scr = first.open(view, "screening")
    scr.sys.setValue(120)
    scr.dia.setValue(80)
    scr.hr.setValue(70)
    scr.fasting.setChecked(True)
    scr.escort.setChecked(True)
    assert first.save(scr) == ""
    dose = first.open(view, "dose")
    first.qtbot.keyClicks(dose.lot, "LOT-R1")
    assert first.save(dose) == ""
    assert model.state is not None and model.state.baseline == (120.0, 80.0)
    first.advance(6)
    dose = first.open(view, "dose")
    assert first.save(dose) == ""
    assert model.state.dosing_complete
    first.advance(4)
    assert model.state.alarms == {}  # no flag yet: the simulated BP is near the baseline
    hr_before = model.buffers.count("hr")
    assert hr_before > 100
    sid, dosed = model.state.session_id, model.state.first_dose
    restart_at = clock.now()
    first.window.close()
    first.station.shutdown()

    clock.advance(60)  # the restart takes a minute
    second = open_rig(clock)
    assert _resume_all(second) == [sid]
    view = second.view(0)
    model = view.model
    second.show(view)
    s = model.state
    assert s is not None and s.first_dose == dosed and s.baseline == (120.0, 80.0)
    assert view.clock_label.text().startswith("T+11 min")

    # The chart's history came back from the database (monitor readings and the typed BP).
    hr = model.buffers.series("hr")
    assert hr is not None and np.count_nonzero(hr.t <= restart_at.timestamp()) >= hr_before - 2
    bp = model.buffers.series("nibp_sys")
    assert bp is not None and 120.0 in bp.v.tolist()
    view.chart.redraw(force=True)
    x, _y = view.chart.curves["hr"].getData()
    assert x is not None and np.count_nonzero(x <= 10.0) >= hr_before - 2  # T+0 to T+10

    # A cuff reading typed in by hand after the restart: 161/85 is +41 over the baseline.
    vitals = second.open(view, "vitals")
    vitals.fields["nibp_sys"].setValue(161)
    vitals.fields["nibp_dia"].setValue(85)
    assert second.save(vitals) == ""
    second.qtbot.waitUntil(lambda: "bp_rise_nibp_sys" in model.state.alarms, timeout=5000)
    assert "bp_rise_nibp_sys" in {a.key for a in model.active_alarms()}
    assert "bp_rise_nibp_dia" not in {a.key for a in model.active_alarms()}  # 85 is +5
    second.qtbot.waitUntil(
        lambda: any("SYS 161: rise +41 over baseline" in t for t in view.alarm_panel.texts()),
        timeout=3000,
    )
    # the rise after the dose asks about symptoms (the form opens: none was open)
    assert view.current_panel() == "symptoms"
    assert second.station.writer is not None and second.station.writer.wait_idle(10)
    with Session(second.engine) as db:
        rows = db.scalars(
            select(AlarmRecord).where(
                AlarmRecord.session_id == sid, AlarmRecord.key == "bp_rise_nibp_sys"
            )
        ).all()
        assert [r.action for r in rows] == ["raised"]


def test_login_dialog_shows_the_reason_and_keeps_the_user_name(qtbot, db_paths) -> None:  # type: ignore[no-untyped-def]
    station = make_demo_station(db_paths, ManualClock())
    try:
        station.user = None
        dialog: LoginDialog[object] = LoginDialog(station.sign_in)
        qtbot.addWidget(dialog)
        qtbot.keyClicks(dialog.username, "nurse")
        qtbot.keyClicks(dialog.password, "wrong")
        dialog._on_buttons_accepted()
        assert dialog.user is None and dialog.error.text()
        assert dialog.username.text() == "nurse" and dialog.password.text() == ""
        qtbot.keyClicks(dialog.password, "demo")
        dialog._on_buttons_accepted()
        assert dialog.user is not None and station.user is not None
        assert station.user.username == "nurse"
    finally:
        station.shutdown()
