"""The idle lock, sign-out and switch user (issue 13) on the real station window: the chairs
stay visible and flashing behind the lock, entries are refused, ACKNOWLEDGED from the lock is
recorded "at lock screen", and the header and the role-dependent tabs follow the user."""

from __future__ import annotations

import json

from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication
from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.readings import make_reading
from ketamon.domain.record import EntryKind, PatientInfo, Plan
from ketamon.domain.roles import Action
from ketamon.domain.session_rules import Treatment
from ketamon.domain.thresholds import Priority
from ketamon.storage.models import AuditEntry, SessionEntryRow
from ketamon.ui.admin import AdminWidget

from .conftest import Rig

PATIENT = PatientInfo(None, "LOCK-01", "Jordan", "Lockwood", weight_kg=70.0, rems_enrolled=True)


def _desaturate(rig: Rig) -> None:
    """A session at Chair 2 and a low SpO2 (79 %) from its monitor: a high-priority flag."""
    m = rig.presenter(1)
    assert m.start_session(PATIENT, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True).wait().ok
    rig.settle()
    m._acq.inject([make_reading("spo2", 79, m.now())])
    rig.qtbot.waitUntil(
        lambda: any(a.priority is Priority.HIGH and not a.acknowledged for a in m.active_alarms()),
        timeout=5000,
    )
    rig.settle()


def _sign_in(rig: Rig, username: str, password: str = "demo", why: str | None = None) -> str:
    bar = rig.window.lock_bar
    assert bar is not None and bar.isVisible()
    bar.username.setText(username)
    bar.password.setText(password)
    if why is not None:
        bar.break_glass.setChecked(True)
        bar.reason.setText(why)
    rig.click(bar.sign_in)
    rig.settle()
    return bar.error.text()


def test_the_lock_keeps_the_flag_flashing_refuses_entries_and_audits_an_acknowledgement(
    rig: Rig, qtbot
) -> None:  # type: ignore[no-untyped-def]
    window, station = rig.window, rig.station
    _desaturate(rig)
    window.tabs.setCurrentIndex(0)  # the overview
    assert window.overview is not None
    card = window.overview.cards[1]
    rig.click(window.lock_button)
    assert station.locked and window.lock_bar is not None and window.lock_bar.isVisible()
    assert window.glass is not None and window.glass.isVisible()
    assert window.user_label.text().startswith("Locked · Signed in: Demo Nurse")
    # a click on a chair lands on the glass, not on the card behind it
    at = card.mapTo(window, card.rect().center())
    assert window.childAt(at) is window.glass
    # the flag is still on the card and still flashes (the overview's timer runs on)
    qtbot.waitUntil(lambda: card.flag.priority is Priority.HIGH, timeout=3000)
    assert "SpO" in card.flag.text
    qtbot.waitUntil(lambda: not card.flag.lit, timeout=3000)
    qtbot.waitUntil(lambda: card.flag.lit, timeout=3000)
    # and it is in the grab of the locked window: red (through the glass's tint)
    path = rig.shot("locked-flag-flashing-1366x768")
    assert (window.width(), window.height()) == (1366, 768)  # the lock bar fits the screen
    image = window.grab().toImage()
    flag_at = card.flag.mapTo(window, QPoint(6, 6))
    c = QColor(image.pixel(flag_at))
    if card.flag.lit:
        assert c.red() > 150 and c.green() < 90 and c.blue() < 90, c.name()
    assert path.exists()
    # entries are refused by the station, whatever the widgets
    m = rig.presenter(1)
    p = m.record_manual_vitals({"nibp_sys": 120, "nibp_dia": 80}).wait()
    assert not p.ok and "locked" in p.reasons[0]
    review = window.review
    assert review is not None and not review.model.may(Action.REVIEW)
    assert "locked" in review.model.open(1).wait().reasons[0]
    # the window's own shortcuts are off (Ctrl+1 would open a chair's forms)
    assert not any(sc.isEnabled() for sc in window.shortcuts)
    # ACKNOWLEDGED from the lock bar: recorded at the lock screen
    bar = window.lock_bar
    assert bar.ack_buttons and "Chair 2" in bar.ack_buttons[0].text()
    rig.click(bar.ack_buttons[0])
    rig.settle()
    qtbot.waitUntil(lambda: all(a.acknowledged for a in m.active_alarms()), timeout=3000)
    assert m.state is not None
    lines = [line.text for line in m.record() if line.kind is EntryKind.ALARM]
    assert any(t.startswith("acknowledged at lock screen:") for t in lines), lines
    with Session(rig.engine) as s:
        rows = s.scalars(
            select(SessionEntryRow).where(SessionEntryRow.session_id == m.state.session_id)
        ).all()
        acked = [r for r in rows if r.kind == EntryKind.ALARM.value and "lock screen" in r.data]
        assert acked, [r.data for r in rows]
        audit = s.scalars(
            select(AuditEntry).where(
                AuditEntry.entity == "session_entry", AuditEntry.entity_id == acked[0].id
            )
        ).one()
        assert "at lock screen" in (audit.new_value or "")
        assert json.loads(acked[0].data)["where"] == "at lock screen"
    QApplication.processEvents()
    assert not bar.ack_buttons  # nothing left to acknowledge
    # a wrong password: still locked, said on the bar
    assert "wrong password" in _sign_in(rig, "nurse", "nope")
    assert station.locked
    # the same user signs in again: entries work
    assert _sign_in(rig, "nurse") == ""
    assert not station.locked and not bar.isVisible() and not window.glass.isVisible()
    assert m.record_manual_vitals({"nibp_sys": 120, "nibp_dia": 80}).wait().ok
    assert all(sc.isEnabled() for sc in window.shortcuts)


def test_idle_lock_after_the_site_time_and_names_masked(rig: Rig) -> None:
    window, station = rig.window, rig.station
    access = window.access
    assert access is not None and access.hooks.idle_lock_min == 5.0  # the site's default
    now = [1000.0]
    access.hooks.idle_clock = lambda: now[0]
    access.hooks.mask_names = True
    access.note_input()
    m = rig.presenter(0)
    assert m.start_session(PATIENT, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True).wait().ok
    rig.settle()
    window.tabs.setCurrentWidget(rig.view(0))
    now[0] += 4 * 60 + 59
    access.tick()
    assert not station.locked
    now[0] += 2
    access.tick()
    assert station.locked and window.lock_bar is not None and window.lock_bar.isVisible()
    # names masked: the overview is shown and its card does not name the patient
    assert window.tabs.currentWidget() is window.overview
    assert window.overview is not None
    window.overview.refresh()
    QApplication.processEvents()
    assert "Lockwood" not in m.summary().patient and "hidden" in m.summary().patient
    card = window.overview.cards[0]
    assert "Lockwood" not in card.name.text() and "hidden" in card.name.text()
    assert _sign_in(rig, "nurse") == ""
    assert "Lockwood" in m.summary().patient


def test_sign_out_and_switch_user_follow_the_role(rig: Rig) -> None:
    window, station = rig.window, rig.station
    assert window.user_label.text().startswith("Signed in: Demo Nurse (DEMO) (nurse)")
    assert "admin" not in window.role_tabs
    review = window.review
    assert review is not None
    rig.click(window.sign_out_button)
    assert station.locked and station.user is None
    assert window.user_label.text().startswith("Nobody signed in")
    # the chairs keep running while nobody is signed in: new readings arrive
    m = rig.presenter(0)
    m._monitor_latest.clear()
    rig.advance(0.5, step_s=10)
    rig.qtbot.waitUntil(lambda: "spo2" in m.monitor_latest(), timeout=5000)
    # the admin signs in: the Admin tab appears (and is shown)
    assert _sign_in(rig, "admin") == ""
    assert window.user_label.text().startswith("Signed in: Demo Admin (DEMO) (admin)")
    admin = window.role_tabs.get("admin")
    assert isinstance(admin, AdminWidget) and window.tabs.currentWidget() is admin
    assert not review.model.may(Action.SIGN)
    # switch to the physician: the Admin tab goes, the desk may sign
    rig.click(window.lock_button)
    assert station.locked and window.tabs.currentWidget() is window.overview
    assert _sign_in(rig, "doctor") == ""
    assert "admin" not in window.role_tabs and window.tabs.indexOf(admin) < 0
    assert window.user_label.text().startswith("Signed in: Demo Physician (DEMO) (physician)")
    assert review.model.may(Action.SIGN)
    # break-glass from the lock bar: the header says so, in red, until it ends
    assert window.access is not None
    window.access.lock()
    assert _sign_in(rig, "nurse", why="SpO2 79 % at Chair 2, no physician reachable") == ""
    assert window.user_label.text().startswith("EMERGENCY ACCESS until ")
    assert "ff3b30" in window.user_label.styleSheet()
    rig.clock.advance(61 * 60)
    assert window.access is not None
    window.access.tick()
    assert window.user_label.text().startswith("Signed in: Demo Nurse (DEMO) (nurse)")
    assert "emergency access ended" in window.user_label.text()
