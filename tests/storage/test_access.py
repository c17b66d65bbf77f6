"""Sign-in control (issue 13): failed sign-ins audited, lockout after N, an admin's unlock."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ketamon.storage.audit import acting_as
from ketamon.storage.models import AuditEntry, User
from ketamon.storage.users import AuthError, UserError, authenticate, unlock_user

from .conftest import PASSWORD, Staff


def failed_rows(engine: Engine) -> list[dict[str, str]]:
    with Session(engine) as s:
        rows = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "login", AuditEntry.field == "failed")
            .order_by(AuditEntry.id)
        ).all()
        out = []
        for r in rows:
            assert r.station  # which station it came from
            out.append({**json.loads(r.new_value or "{}"), "user_id": r.user_id})
        return out


def user(engine: Engine, name: str) -> User:
    with Session(engine) as s:
        u = s.scalars(select(User).where(User.username == name)).one()
        s.expunge(u)
        return u


def test_five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it(
    engine: Engine, staff: Staff
) -> None:
    for i in range(4):
        with pytest.raises(AuthError, match="wrong password"):
            authenticate(engine, "nina", f"guess {i}")
    assert user(engine, "nina").failed_logins == 4 and user(engine, "nina").locked_at is None
    with pytest.raises(AuthError, match="now locked after 5 failed sign-ins"):
        authenticate(engine, "nina", "guess 5")
    with pytest.raises(AuthError, match="is locked after 5 failed sign-ins: an admin"):
        authenticate(engine, "nina", PASSWORD)  # the right password no longer opens it
    rows = failed_rows(engine)
    assert [r["why"] for r in rows] == ["wrong password"] * 5 + ["account locked"]
    assert {r["username"] for r in rows} == {"nina"} and {r["user_id"] for r in rows} == {
        staff.nurse
    }
    # an unknown name is audited too, by the system account
    with pytest.raises(AuthError, match="unknown username or wrong password"):
        authenticate(engine, "mallory", "x")
    assert failed_rows(engine)[-1] == {
        "username": "mallory",
        "why": "wrong password",
        "user_id": staff.system,
    }
    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        with pytest.raises(UserError, match="say why"):
            unlock_user(s, "nina", why=" ")
        unlock_user(s, "nina", why="identity checked in person")
    with Session(engine) as s:
        unlock = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == "app_user", AuditEntry.field == "locked_at")
            .order_by(AuditEntry.id.desc())
        ).first()
        assert unlock is not None and unlock.reason == "identity checked in person"
        assert unlock.new_value in (None, "null") and unlock.old_value not in (None, "null")
    assert authenticate(engine, "nina", PASSWORD).username == "nina"
    assert user(engine, "nina").failed_logins == 0
    with (
        Session(engine) as s,
        s.begin(),
        acting_as(s, staff.system),
        pytest.raises(UserError, match="not locked"),
    ):
        unlock_user(s, "nina", why="again")


def test_a_good_sign_in_resets_the_count_and_none_means_no_lockout(
    engine: Engine, staff: Staff
) -> None:
    for _ in range(3):
        with pytest.raises(AuthError):
            authenticate(engine, "paul", "nope")
    authenticate(engine, "paul", PASSWORD)
    assert user(engine, "paul").failed_logins == 0
    for _ in range(8):
        with pytest.raises(AuthError, match="wrong password"):
            authenticate(engine, "paul", "nope", lockout_after=None)
    assert user(engine, "paul").locked_at is None
    with pytest.raises(AuthError, match="now locked after 9"):
        authenticate(engine, "paul", "nope", lockout_after=9)


def test_ketamon_user_unlock(
    engine: Engine,
    db_url: str,
    staff: Staff,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ketamon.cli import main

    for _ in range(5):
        with pytest.raises(AuthError):
            authenticate(engine, "nina", "wrong")
    assert main(["user", "list", "--db", db_url]) == 0
    listed = capsys.readouterr().out
    assert any(line.startswith("nina") and "locked" in line for line in listed.splitlines())
    with pytest.raises(SystemExit) as no_reason:  # argparse: --reason is required
        main(["user", "unlock", "--db", db_url, "--username", "nina"])
    assert no_reason.value.code == 2 and "--reason" in capsys.readouterr().err
    rc = main(["user", "unlock", "--db", db_url, "--username", "nina", "--reason", "called her"])
    assert rc == 0 and "unlocked nina" in capsys.readouterr().err
    assert authenticate(engine, "nina", PASSWORD).username == "nina"
    rc = main(["user", "unlock", "--db", db_url, "--username", "nina", "--reason", "again"])
    assert rc == 2 and "not locked" in capsys.readouterr().err


def test_break_glass_needs_a_reason_and_a_password_and_waits_for_an_admins_review(
    engine: Engine, staff: Staff
) -> None:
    from datetime import UTC, datetime, timedelta

    from ketamon.storage.emergency import emergencies, review_emergency, start_emergency
    from ketamon.storage.models import EmergencyAccess, Role
    from ketamon.storage.users import create_user

    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        admin = create_user(
            s, username="ada", full_name="Ada Admin", role=Role.ADMIN, password=PASSWORD
        ).id
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    with pytest.raises(UserError, match="reason of at least"):
        start_emergency(engine, "nina", PASSWORD, "help", minutes=60, now=now)
    with pytest.raises(AuthError, match="wrong password"):
        start_emergency(engine, "nina", "nope", "patient unresponsive, no MD", minutes=60)
    with pytest.raises(AuthError, match="clinical staff"):
        start_emergency(engine, "ada", PASSWORD, "patient unresponsive, no MD", minutes=60)
    who, em = start_emergency(
        engine, "nina", PASSWORD, "  SpO2 78 %, physician off site  ", minutes=60, now=now
    )
    assert who.username == "nina" and em.reason == "SpO2 78 %, physician off site"
    assert em.expires_at - em.started_at == timedelta(minutes=60) and em.station
    assert [e.id for e in emergencies(engine, open_only=True)] == [em.id]
    with Session(engine) as s:
        audit = s.scalars(
            select(AuditEntry).where(AuditEntry.entity == "emergency_access")
        ).first()
        assert audit is not None and audit.user_id == staff.nurse
        assert "SpO2 78 %" in (audit.reason or "")
    with Session(engine) as s, s.begin():
        with pytest.raises(UserError, match="only an admin"):
            review_emergency(s, em.id, "fine", admin_id=staff.physician)
        done = review_emergency(
            s, em.id, "Reviewed with the charge nurse: justified.", admin_id=admin
        )
    assert done.reviewed and done.reviewed_by == "Ada Admin"
    assert emergencies(engine, open_only=True) == []
    with Session(engine) as s, s.begin(), pytest.raises(UserError, match="reviewed already"):
        review_emergency(s, em.id, "again", admin_id=admin)
    with Session(engine) as s:
        assert s.get(EmergencyAccess, em.id).review_note.startswith("Reviewed")  # type: ignore[union-attr]
