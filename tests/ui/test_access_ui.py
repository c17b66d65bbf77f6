"""Break-glass through the station and the sign-in dialog; the review board flags it. (The
rules are tested without Qt in tests/storage/test_access.py.)"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialogButtonBox

from ketamon.app import StationAuth
from ketamon.domain.roles import Actor, Role
from ketamon.ui.login import LoginDialog

from .conftest import Rig


def test_a_nurse_breaks_the_glass_gets_physician_rights_for_an_hour_and_is_flagged(
    rig: Rig, qtbot
) -> None:  # type: ignore[no-untyped-def]
    station = rig.station
    dialog: LoginDialog[Actor] = LoginDialog(
        station.sign_in, emergency=station.sign_in_emergency, emergency_minutes=60
    )
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.reason.isVisible()
    dialog.break_glass.setChecked(True)
    assert dialog.reason.isVisible() and dialog.ok.text() == "Sign in for an emergency"
    dialog.username.setText("nurse")
    dialog.password.setText("demo")
    dialog.reason.setText("short")
    dialog.ok.click()
    assert "reason of at least" in dialog.error.text() and dialog.user is None
    dialog.password.setText("demo")
    dialog.reason.setText("SpO2 79 % at Chair 2, physician not reachable")
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.user is not None and dialog.user.role is Role.PHYSICIAN
    assert station.current_user().role is Role.PHYSICIAN
    # a re-typed password (a discharge override, say) carries the same rights for the hour
    assert StationAuth(station).verify("nurse", "demo").role is Role.PHYSICIAN
    # the review board shows it until an admin reviews it
    w = rig.window.review
    if w is not None:
        rig.window.tabs.setCurrentWidget(w)
        rig.settle()
        qtbot.waitUntil(lambda: w.emergency_board.isVisible(), timeout=3000)
        assert "1 emergency access" in w.emergency_board.text()
        assert "physician not reachable" in w.emergency_board.text()
        rig.shot("review-emergency-board")
    # an hour later the rights end by themselves
    rig.clock.advance(61 * 60)
    assert station.current_user().role is Role.NURSE
    assert station.emergency_ended is not None and station.emergency is None
    assert StationAuth(station).verify("nurse", "demo").role is Role.NURSE


def test_a_nurse_changes_her_own_password(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    from ketamon.storage.users import AuthError, authenticate

    window = rig.window
    assert window.password_button.isVisible()
    dialog = window.change_password_dialog()
    qtbot.addWidget(dialog)
    dialog.current.setText("wrong")
    dialog.new.setText("a brand new passphrase")
    dialog.repeat.setText("a brand new passphrase")
    dialog.ok.click()
    assert "wrong password" in dialog.error.text() and dialog.result() == 0
    dialog.current.setText("demo")
    dialog.new.setText("short")
    dialog.repeat.setText("short")
    dialog.ok.click()
    assert "at least 12" in dialog.error.text()
    dialog.current.setText("demo")
    dialog.new.setText("a brand new passphrase")
    dialog.repeat.setText("a brand new passphrase!")
    dialog.ok.click()
    assert "differ" in dialog.error.text()
    dialog.current.setText("demo")
    dialog.new.setText("a brand new passphrase")
    dialog.repeat.setText("a brand new passphrase")
    dialog.ok.click()
    assert dialog.result() == dialog.DialogCode.Accepted
    assert authenticate(rig.engine, "nurse", "a brand new passphrase").username == "nurse"
    with pytest.raises(AuthError):
        authenticate(rig.engine, "nurse", "demo")
