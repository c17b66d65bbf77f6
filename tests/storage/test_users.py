"""Users and roles: argon2id hashes, sign-in, disabling, the system account, demo accounts."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ketamon.services import AuthenticatedUser, AuthError, authenticate, ensure_demo_users
from ketamon.storage import users
from ketamon.storage.audit import MissingUserError, acting_as
from ketamon.storage.models import AuditAction, Role, User
from ketamon.storage.records import audit_entries
from ketamon.storage.users import (
    UserError,
    create_user,
    disable_user,
    list_users,
    normalise_username,
    system_user_id,
)

from .conftest import PASSWORD, Staff


def test_the_shipped_hasher_is_argon2id() -> None:
    # (tests run with cheaper costs; the module's own default is checked on a fresh instance)
    hasher = PasswordHasher()
    assert hasher.type is Type.ID
    assert hasher.hash("x" * 12).startswith("$argon2id$")


def test_passwords_are_stored_only_as_argon2id_hashes(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s:
        nurse = s.get_one(User, staff.nurse)
        assert nurse.password_hash is not None
        assert nurse.password_hash.startswith("$argon2id$")
        assert PASSWORD not in nurse.password_hash


def test_sign_in_returns_who_and_records_the_login(engine: Engine, staff: Staff) -> None:
    user = authenticate(engine, "Nina", PASSWORD)
    assert user == AuthenticatedUser(staff.nurse, "nina", "Nina Nurse", Role.NURSE)
    assert not user.is_physician
    with Session(engine) as s:
        assert s.get_one(User, staff.nurse).last_login_at is not None
    (login,) = [
        e
        for e in audit_entries(engine, entity="app_user", entity_id=staff.nurse)
        if e.field == "last_login_at"
    ]
    assert login.user_id == staff.nurse
    # Also inside a caller's Session (the caller commits).
    with Session(engine) as s, s.begin():
        assert authenticate(s, "paul", PASSWORD).role is Role.PHYSICIAN


@pytest.mark.parametrize(
    ("username", "password"),
    [("nina", "wrong password"), ("nobody", PASSWORD), ("", ""), ("NINA ", "")],
)
def test_wrong_password_and_unknown_user_get_the_same_answer(
    engine: Engine, staff: Staff, username: str, password: str
) -> None:
    with pytest.raises(AuthError, match=r"^unknown username or wrong password$"):
        authenticate(engine, username, password)


def test_system_account_cannot_sign_in(engine: Engine, staff: Staff) -> None:
    with pytest.raises(AuthError):
        authenticate(engine, "system", "")


def test_disabled_users_cannot_sign_in_and_stay_in_the_list(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        disable_user(s, "nina", why="left the clinic")
    with pytest.raises(AuthError, match="disabled"):
        authenticate(engine, "nina", PASSWORD)
    listed = {u.username: u for u in list_users(engine)}
    assert not listed["nina"].active and listed["paul"].active
    assert listed["system"].role is Role.SYSTEM
    assert "system" not in {u.username for u in list_users(engine, include_system=False)}
    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        with pytest.raises(UserError, match="already disabled"):
            disable_user(s, "nina")
        with pytest.raises(UserError, match="cannot be disabled"):
            disable_user(s, "system")
        with pytest.raises(UserError, match="no user"):
            disable_user(s, "ghost")


def test_an_outdated_hash_is_upgraded_at_sign_in(
    engine: Engine, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(engine) as s:
        old = s.get_one(User, staff.nurse).password_hash
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=2, memory_cost=2048))
    authenticate(engine, "nina", PASSWORD)
    with Session(engine) as s:
        new = s.get_one(User, staff.nurse).password_hash
    assert new != old and new is not None and "t=2" in new
    (change,) = [
        e
        for e in audit_entries(engine, entity="app_user", entity_id=staff.nurse)
        if e.field == "password_hash"
    ]
    assert change.old_value == change.new_value == '"<redacted>"'


def test_user_rules(engine: Engine, staff: Staff) -> None:
    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        with pytest.raises(UserError, match="already exists"):
            create_user(s, username="NINA", full_name="X", role="nurse", password=PASSWORD)
        with pytest.raises(UserError, match="at least 8"):
            create_user(s, username="ann", full_name="Ann", role="nurse", password="short")
        with pytest.raises(UserError, match="must not be empty"):
            create_user(s, username="ann", full_name="Ann", role="nurse", password="   ")
        with pytest.raises(UserError, match="unknown role"):
            create_user(s, username="ann", full_name="Ann", role="surgeon", password=PASSWORD)
        with pytest.raises(UserError, match="cannot be given"):
            create_user(s, username="ann", full_name="Ann", role="system", password=PASSWORD)
        with pytest.raises(UserError, match="built-in"):
            create_user(s, username="system", full_name="S", role="admin", password=PASSWORD)
        with pytest.raises(UserError, match="full name"):
            create_user(s, username="ann", full_name=" ", role="nurse", password=PASSWORD)
        auditor = create_user(
            s, username="ann", full_name="Ann Auditor", role="auditor", password=PASSWORD
        )
        assert auditor.role is Role.AUDITOR
    for bad in ("a", "-x", "with space", "é"):
        with pytest.raises(UserError, match="invalid username"):
            normalise_username(bad)
    assert normalise_username(" Dr.Who_2 ") == "dr.who_2"


def test_adding_a_user_needs_an_acting_user(engine: Engine) -> None:
    with pytest.raises(MissingUserError), Session(engine) as s, s.begin():
        create_user(s, username="ann", full_name="Ann", role="nurse", password=PASSWORD)


def test_demo_accounts(engine: Engine) -> None:
    assert ensure_demo_users(engine) == ["nurse", "doctor", "admin"]
    assert ensure_demo_users(engine) == []  # idempotent
    nurse = authenticate(engine, "nurse", "demo")
    assert nurse.role is Role.NURSE and "DEMO" in nurse.full_name
    assert authenticate(engine, "doctor", "demo").role is Role.PHYSICIAN
    assert authenticate(engine, "admin", "demo").role is Role.ADMIN
    with Session(engine) as s:
        demo = s.scalars(select(User).where(User.is_demo)).all()
        assert {u.username for u in demo} == {"nurse", "doctor", "admin"}
    creates = [
        e for e in audit_entries(engine, entity="app_user") if e.action is AuditAction.CREATE
    ]
    assert len(creates) == 4  # system + 3 demo, each by the system account
    assert {e.user_id for e in creates} == {system_user_id(engine)}


def test_no_demo_accounts_in_a_database_with_real_users(engine: Engine, staff: Staff) -> None:
    with pytest.raises(UserError, match="real users"):
        ensure_demo_users(engine)
    with pytest.raises(AuthError):
        authenticate(engine, "nurse", "demo")
