"""The admin tab (issue 13) on the real station: accounts, the site profile and the threshold
profile, each change audited with old → new and the reason; a non-admin is refused by the
presenter itself."""

from __future__ import annotations

import json
import tomllib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketamon.domain.site import parse_site_profile
from ketamon.domain.thresholds import parse_profile
from ketamon.storage.models import AuditEntry, User
from ketamon.storage.users import AuthError, authenticate
from ketamon.ui.admin import AdminWidget

from .conftest import Rig


def _admin(rig: Rig) -> AdminWidget:
    window = rig.window
    assert window.access is not None
    window.access.lock(sign_out=True)
    bar = window.lock_bar
    assert bar is not None
    bar.username.setText("admin")
    bar.password.setText("demo")
    rig.click(bar.sign_in)
    rig.settle()
    w = window.role_tabs.get("admin")
    assert isinstance(w, AdminWidget)
    rig.settle()
    return w


def _audit(rig: Rig, entity: str, field: str | None = None) -> list[AuditEntry]:
    with Session(rig.engine) as s:
        q = select(AuditEntry).where(AuditEntry.entity == entity)
        if field is not None:
            q = q.where(AuditEntry.field == field)
        return list(s.scalars(q.order_by(AuditEntry.id)))


def test_an_admin_manages_users_every_change_audited(rig: Rig) -> None:
    w = _admin(rig)
    page = w.users
    assert page.table.rowCount() == 3  # the demo accounts (not the built-in system one)
    page.username.setText("jsmith")
    page.full_name.setText("Jo Smith")
    page.role.setCurrentText("nurse")
    page.credentials.setText("RN")
    page.password.setText("short")
    page.add_reason.setText("new starter, ward 3")
    page._on_add_clicked().wait()
    rig.settle()
    assert "at least 12 characters" in page.status.text()  # the site's password_min_length
    page.password.setText("correct horse battery")
    page._on_add_clicked().wait()
    rig.settle()
    assert "added" in page.status.text(), page.status.text()
    created = [a for a in _audit(rig, "app_user") if a.action.value == "create"]
    assert created[-1].reason == "new starter, ward 3" and "jsmith" in (
        created[-1].new_value or ""
    )
    # she mistypes her password five times: locked; the admin unlocks her
    for _ in range(5):
        with pytest.raises(AuthError):
            authenticate(rig.engine, "jsmith", "wrong password", lockout_after=5)
    page.refresh().wait()
    rig.settle()
    page.select("jsmith")
    assert "LOCKED" in page.table.item(page.table.currentRow(), 3).text()
    page._do(lambda u: w.model.unlock_user(u, ""), "unlocked").wait()  # type: ignore[union-attr]
    assert "reason" in page.status.text()
    page.reason.setText("called the admin, identity checked")
    rig.click(page.unlock_button)
    rig.settle()
    assert "unlocked" in page.status.text(), page.status.text()
    locked = _audit(rig, "app_user", "locked_at")
    assert locked[-1].new_value == "null" and locked[-1].reason == (
        "called the admin, identity checked"
    )
    assert locked[-1].old_value not in (None, "null")  # old → new
    # a new password, then disabled
    page.select("jsmith")
    page.new_password.setText("another good passphrase")
    page.reason.setText("forgot it")
    rig.click(page.reset_button)
    rig.settle()
    assert "new password" in page.status.text(), page.status.text()
    pw = _audit(rig, "app_user", "password_hash")
    assert pw[-1].reason == "forgot it" and "redacted" in (pw[-1].new_value or "")
    assert authenticate(rig.engine, "jsmith", "another good passphrase").username == "jsmith"
    page.select("jsmith")
    page.reason.setText("left the clinic")
    rig.click(page.disable_button)
    rig.settle()
    active = _audit(rig, "app_user", "active")
    assert (active[-1].old_value, active[-1].new_value) == ("true", "false")
    assert active[-1].reason == "left the clinic"
    with Session(rig.engine) as s:
        assert not s.scalars(select(User).where(User.username == "jsmith")).one().active
    # the admin cannot disable herself
    page.select("admin")
    page.reason.setText("testing")
    rig.click(page.disable_button)
    rig.settle()
    assert "your own account" in page.status.text()


def test_an_admin_edits_the_site_and_threshold_profiles_audited_and_checked(
    rig: Rig, db_paths
) -> None:  # type: ignore[no-untyped-def]
    w = _admin(rig)
    w.pages.setCurrentWidget(w.site)
    site = w.site
    assert site.table.rowCount() > 30
    # a value outside its range is refused with the field named; nothing is written
    site.set_value("prompts.vitals_interval_min", "45")
    site.reason.setText("try")
    site.save().wait()
    rig.settle()
    assert "prompts.vitals_interval_min must be within 5–30 min, got 45" in site.status.text()
    assert not (db_paths.config_dir / "site.toml").exists()
    site.refresh().wait()
    rig.settle()
    site.set_value("security.idle_lock_min", "10")
    site.set_value("rems.hcp_phone", "555-0100 22")
    site.reason.setText("")
    site.save().wait()
    assert "reason" in site.status.text()
    site.reason.setText("policy 2025-07: 10 min idle lock; new HCP line")
    site.save().wait()
    rig.settle()
    assert "Saved 2 change(s)" in site.status.text(), site.status.text()
    # stored in a file beside config.toml, which now names it; the sources name the admin
    path = db_paths.config_dir / "site.toml"
    text = path.read_text(encoding="utf-8")
    p = parse_site_profile(text, str(path))
    assert p.idle_lock_min == 10 and p.hcp_phone == "555-0100 22"
    assert "Demo Admin" in p.source("idle_lock_min") and "policy 2025-07" in p.source(
        "idle_lock_min"
    )
    config = tomllib.loads(db_paths.config_file.read_text(encoding="utf-8"))
    assert config["site_file"] == str(path)
    rows = _audit(rig, "site_profile", "idle_lock_min")
    assert [(json.loads(r.old_value or ""), json.loads(r.new_value or "")) for r in rows] == [
        (5.0, 10.0)
    ]
    assert rows[0].reason == "policy 2025-07: 10 min idle lock; new HCP line"
    assert _audit(rig, "site_profile", "file")[-1].reason == rows[0].reason
    # the idle lock follows at once on this station
    assert rig.window.access is not None and rig.window.access.hooks.idle_lock_min == 10
    assert rig.station.site.idle_lock_min == 10
    # thresholds: SpO2 low 90 -> 88, checked as 'ketamon thresholds check' does
    th = w.thresholds
    th.refresh().wait()
    rig.settle()
    th.set_value("limit.spo2.low", "101")
    th.reason.setText("try")
    th.save().wait()
    assert "spo2" in th.status.text() and "low" in th.status.text(), th.status.text()
    th.refresh().wait()
    rig.settle()
    th.set_value("limit.spo2.low", "88")
    th.reason.setText("medical director, COPD-heavy clinic population")
    th.save().wait()
    rig.settle()
    assert "Saved 1 change(s)" in th.status.text(), th.status.text()
    tpath = db_paths.config_dir / "thresholds.toml"
    profile = parse_profile(tpath.read_text(encoding="utf-8"), str(tpath))
    assert [x.low for x in profile.limits if x.id == "spo2"] == [88]
    rows = _audit(rig, "threshold_profile", "limit.spo2.low")
    assert [(json.loads(r.old_value or ""), json.loads(r.new_value or "")) for r in rows] == [
        (90.0, 88.0)
    ]
    config = tomllib.loads(db_paths.config_file.read_text(encoding="utf-8"))
    assert config["thresholds_file"] == str(tpath) and config["site_file"] == str(path)
    rig.window.tabs.setCurrentWidget(w)
    w.pages.setCurrentWidget(w.site)
    rig.shot("admin-site-profile-1366x768")


def test_a_non_admin_is_refused_by_the_presenter(rig: Rig) -> None:
    w = _admin(rig)
    model = w.model
    # the nurse signs in: the tab goes, and the presenter (kept here) refuses everything
    assert rig.window.access is not None
    rig.window.access.lock()
    bar = rig.window.lock_bar
    assert bar is not None
    bar.username.setText("nurse")
    bar.password.setText("demo")
    rig.click(bar.sign_in)
    rig.settle()
    assert "admin" not in rig.window.role_tabs
    why = "no business here"
    for p in (
        model.users(),
        model.add_user("mallory", "Mal Lory", "admin", "a long enough pass", "", why),
        model.disable_user("doctor", why),
        model.unlock_user("doctor", why),
        model.reset_password("doctor", "a long enough pass", why),
        model.site_fields(),
        model.save_site({"security.idle_lock_min": "60"}, why),
        model.threshold_fields(),
        model.save_thresholds({"limit.spo2.low": "70"}, why),
        model.emergencies(),
        model.review_emergency(1, why),
    ):
        assert p.done and not p.ok and "admin" in p.reasons[0], p.reasons
    assert not model.may()
    # and while the screen is locked nobody's request gets through
    rig.window.access.lock()
    assert "locked" in model.users().reasons[0]
    assert not _audit(rig, "site_profile") and not _audit(rig, "threshold_profile")


def test_an_admin_reviews_a_break_glass_sign_in_and_it_leaves_the_board(rig: Rig) -> None:
    rig.station.sign_in_emergency("nurse", "demo", "SpO2 78 %, the physician is off site")
    w = _admin(rig)
    page = w.emergency
    page.refresh().wait(10)
    rig.settle()
    assert page.table.rowCount() == 1
    assert "awaiting review" in page.table.item(0, 6).text()
    page.table.selectRow(0)
    page.note.setText("")
    p = page.review_selected()
    assert p is not None
    p.wait(10)
    rig.settle()
    assert "reason" in page.status.text().lower()  # a review says what it found
    page.note.setText("Checked with the charge nurse: justified, no harm.")
    p = page.review_selected()
    assert p is not None
    p.wait(10)
    rig.settle()
    assert page.status.text() == "Reviewed (audited)."
    page.refresh().wait(10)
    rig.settle()
    assert "Checked with the charge nurse" in page.table.item(0, 6).text()
    rows = _audit(rig, "emergency_access", "review_note")
    assert rows and "justified" in (rows[-1].new_value or "")
