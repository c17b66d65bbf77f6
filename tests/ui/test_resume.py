"""After a crash or restart, the app finds the open session and resumes it at its chair."""

from __future__ import annotations

from devices.clock import ManualClock
from ketamon.app import make_station
from ketamon.config import Config
from ketamon.domain.session_rules import Treatment
from ketamon.model.types import PatientDetails, SessionPlan
from ketamon.paths import resolve_paths
from ketamon.services import load_profile
from ketamon.ui.login import LoginDialog, ResumeSessionsDialog


def test_open_session_is_offered_and_resumed_after_restart(qtbot) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    paths = resolve_paths(demo=True).ensure()
    config = Config()
    first = make_station(
        paths, config, load_profile(config), paths.sqlite_url(), demo=True, clock=clock
    )
    model = first.models[0]
    sid = model.start_session(
        PatientDetails("DEMO-0002", "Sam", "Sample"), SessionPlan(Treatment.OTHER)
    )
    model.record_moaas(5)
    model.add_note("before the restart")
    first.shutdown()  # the app goes away without discharging (a crash or a restart)

    second = make_station(
        paths, config, load_profile(config), paths.sqlite_url(), demo=True, clock=clock
    )
    try:
        offered = second.open_sessions()
        assert [s for s, _ in offered] == [sid]
        assert "Chair 1: Sam Sample (DEMO-0002)" in offered[0][1]
        dialog = ResumeSessionsDialog(offered)
        qtbot.addWidget(dialog)
        assert dialog.selected() == [sid]
        second.resume(dialog.selected())
        resumed = second.models[0].session
        assert resumed is not None and resumed.id == sid
        assert resumed.patient.mrn == "DEMO-0002"
        # What was recorded comes back: the pre-dose MOAA/S is not asked for again.
        assert [e.summary for e in resumed.entries] == ["MOAA/S 5", "Note: before the restart"]
        assert all(e.author.startswith("Demo Nurse") for e in resumed.entries)
        due = {p.kind.value for p in second.models[0].prompts() if p.open}
        assert "moaas" not in due and "predose_bp" in due
        assert second.models[1].session is None
    finally:
        second.shutdown()


def test_login_dialog_shows_the_reason_and_keeps_the_user_name(qtbot) -> None:  # type: ignore[no-untyped-def]
    paths = resolve_paths(demo=True).ensure()
    config = Config()
    station = make_station(paths, config, load_profile(config), paths.sqlite_url(), demo=True)
    try:
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
