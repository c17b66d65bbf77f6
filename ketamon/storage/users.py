"""Users, roles and sign-in. Passwords are kept only as argon2id hashes.

Users are never deleted (the audit trail names them); they are disabled. The built-in ``system``
account (made by the first migration, no password, cannot sign in) is the user of automatic
writes, such as a session opened by ``ketamon record``. Demo accounts (``is_demo``) exist only in
a database that has no real users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ketamon.storage.audit import acting_as, append_entry, reason
from ketamon.storage.database import in_session
from ketamon.storage.models import AuditAction, Role, User, utcnow

SYSTEM_USERNAME = "system"
#: NIST SP 800-63B §5.1.1.2: at least 8 characters, allow at least 64, refuse known-common ones
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
MAX_NAME_LENGTH = 200
#: roles a person can hold (``system`` is the built-in account's alone)
HUMAN_ROLES = (Role.NURSE, Role.PHYSICIAN, Role.ADMIN, Role.AUDITOR, Role.THERAPIST)
DEMO_PASSWORD = "demo"
DEMO_USERS = (
    ("nurse", "Demo Nurse (DEMO)", Role.NURSE, "RN"),
    ("doctor", "Demo Physician (DEMO)", Role.PHYSICIAN, "MD"),
    ("admin", "Demo Admin (DEMO)", Role.ADMIN, ""),
)

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
#: argon2id with the library's RFC 9106 "low memory" defaults (t=3, m=64 MiB, p=4)
HASHER = PasswordHasher()
#: demo accounts' password is printed in the README: hashing it hard protects nothing and would
#: only slow the demo's start. Still argon2id; never used for a real account.
DEMO_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class UserError(ValueError):
    """A user-management request that cannot be done; the message says why."""


class AuthError(Exception):
    """Sign-in refused. The message is safe to show (it does not say which part was wrong)."""


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    id: int
    username: str
    full_name: str
    role: Role
    credentials: str = ""  # e.g. "MD", "RN": shown with a signature

    @property
    def is_physician(self) -> bool:
        return self.role is Role.PHYSICIAN


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    full_name: str
    role: Role
    credentials: str
    active: bool
    is_demo: bool
    created_at: str
    last_login_at: str | None
    locked: bool = False  # by failed sign-ins, until an admin unlocks it

    def to_json_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "full_name": self.full_name,
            "role": self.role.value,
            "credentials": self.credentials,
            "active": self.active,
            "demo": self.is_demo,
            "created_at": self.created_at,
            "last_login_at": self.last_login_at,
            "locked": self.locked,
        }


# ---- passwords ---------------------------------------------------------------------------------


_COMMON: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (``resources/common_passwords.txt``), lower case."""
    global _COMMON
    if _COMMON is None:
        from ketamon.resources import read_text

        _COMMON = frozenset(
            line.strip().lower()
            for line in read_text("common_passwords.txt").splitlines()
            if line.strip() and not line.startswith("#")
        )
    return _COMMON


def check_password_rules(password: str, username: str = "") -> None:
    """The password policy: 8–128 characters, no control characters, not the username (nor
    a case or order variant of it), not in the shipped list of common passwords."""
    if not password or not password.strip():
        raise UserError("the password must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    if any(_is_control(ch) for ch in password):
        raise UserError("the password must not contain control characters")
    low = password.lower()
    name = username.strip().lower()
    if name and (low == name or low == name[::-1] or (name in low and len(low) - len(name) < 4)):
        raise UserError("the password must not be (or merely extend) the username")
    stripped = low.rstrip("0123456789!?.")
    if low in common_passwords() or (stripped and stripped in common_passwords()):
        raise UserError("that password is on the list of common passwords; choose another")
    if len(set(low)) < 3:
        raise UserError("the password must not repeat one or two characters")


def _is_control(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (newlines, ANSI escapes,
    bidirectional overrides) shown as escapes, so no stored name can forge output."""
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch for ch in text
    )


def check_name(field: str, text: str) -> str:
    """A name or credential for an account: stripped, no control characters, not too long."""
    text = text.strip()
    if any(_is_control(ch) for ch in text):
        raise UserError(
            f"the {field} must not contain control characters (newlines, escapes), "
            f"got '{printable(text)}'"
        )
    if len(text) > MAX_NAME_LENGTH:
        raise UserError(f"the {field} must be at most {MAX_NAME_LENGTH} characters long")
    return text


def hash_password(password: str) -> str:
    return HASHER.hash(password)


# Verifying against this when the user does not exist keeps sign-in time the same either way.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = HASHER.hash("not a password of anyone")
    return _DUMMY_HASH


def normalise_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise UserError(
            f"invalid username {printable(username)!r}: use 2–64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


# ---- accounts ----------------------------------------------------------------------------------


def system_user_id(target: Engine | Session) -> int:
    def op(s: Session) -> int:
        uid = s.scalar(select(User.id).where(User.username == SYSTEM_USERNAME))
        if uid is None:
            raise UserError("the built-in 'system' account is missing: the database is damaged")
        return int(uid)

    return in_session(target, op)


def create_user(
    s: Session,
    *,
    username: str,
    full_name: str,
    role: Role | str,
    password: str,
    credentials: str = "",
    is_demo: bool = False,
) -> User:
    """Add a person; the caller's Session names who is adding them (``acting_as``)."""
    name = normalise_username(username)
    if name == SYSTEM_USERNAME:
        raise UserError(f"{SYSTEM_USERNAME!r} is the built-in account; choose another username")
    try:
        role = Role(role)
    except ValueError:
        raise UserError(
            f"unknown role {role!r}: choose one of {', '.join(r.value for r in HUMAN_ROLES)}"
        ) from None
    if role not in HUMAN_ROLES:
        raise UserError(f"role {role.value!r} cannot be given to a person")
    full_name = check_name("full name", full_name)
    if not full_name:
        raise UserError("the full name must not be empty")
    credentials = check_name("credentials", credentials)
    if not is_demo:
        check_password_rules(password, name)
    if s.scalar(select(User.id).where(User.username == name)) is not None:
        raise UserError(f"user {name!r} already exists")
    user = User(
        username=name,
        full_name=full_name,
        role=role,
        credentials=credentials.strip(),
        password_hash=DEMO_HASHER.hash(password) if is_demo else hash_password(password),
        active=True,
        is_demo=is_demo,
    )
    s.add(user)
    s.flush()
    return user


def _info(u: User) -> UserInfo:
    return UserInfo(
        id=u.id,
        username=u.username,
        full_name=u.full_name,
        role=u.role,
        credentials=u.credentials,
        active=u.active,
        is_demo=u.is_demo,
        created_at=u.created_at.isoformat(),
        last_login_at=u.last_login_at.isoformat() if u.last_login_at else None,
        locked=u.locked_at is not None,
    )


def list_users(target: Engine | Session, *, include_system: bool = True) -> list[UserInfo]:
    def op(s: Session) -> list[UserInfo]:
        q = select(User).order_by(User.username)
        if not include_system:
            q = q.where(User.role != Role.SYSTEM)
        return [_info(u) for u in s.scalars(q)]

    return in_session(target, op)


def disable_user(s: Session, username: str, *, why: str = "account disabled") -> User:
    name = normalise_username(username)
    if name == SYSTEM_USERNAME:
        raise UserError("the built-in 'system' account cannot be disabled")
    user = s.scalars(select(User).where(User.username == name)).first()
    if user is None:
        raise UserError(f"no user {name!r}")
    if not user.active:
        raise UserError(f"user {name!r} is already disabled")
    with reason(s, why):
        user.active = False
        user.disabled_at = utcnow()
    return user


#: failed sign-ins that lock an account when the site profile does not say (issue 13)
LOCKOUT_AFTER = 5


def authenticate(
    target: Engine | Session,
    username: str,
    password: str,
    *,
    lockout_after: int | None = LOCKOUT_AFTER,
) -> AuthenticatedUser:
    """Check a username and password; record the sign-in. Raises :class:`AuthError`.

    Every failure is audited (the name tried, the station) and committed before the error is
    raised; ``lockout_after`` failures in a row lock the account until an admin unlocks it
    (:func:`unlock_user`). A locked account is refused even with the right password. None:
    no lockout (the command line's own checks of an admin, say).
    """

    def op(s: Session) -> AuthenticatedUser | str:
        try:
            name = normalise_username(username)
        except UserError:
            name = ""
        user = s.scalars(select(User).where(User.username == name)).first() if name else None
        stored = user.password_hash if user is not None else None
        try:
            HASHER.verify(stored or _dummy_hash(), password)
            ok = stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if user is not None and user.locked_at is not None and user.role is not Role.SYSTEM:
            _failed(s, user, name, "account locked")
            return (
                f"the account {user.username!r} is locked after {user.failed_logins} failed "
                "sign-ins: an admin can unlock it"
            )
        if not ok or user is None:
            if user is not None:
                with acting_as(s, user.id):
                    user.failed_logins = (user.failed_logins or 0) + 1
                    if lockout_after is not None and user.failed_logins >= lockout_after:
                        user.locked_at = utcnow()
                    s.flush()
            _failed(s, user, name or printable(username)[:64], "wrong password")
            if user is not None and user.locked_at is not None:
                return (
                    f"the account {user.username!r} is now locked after {user.failed_logins} "
                    "failed sign-ins: an admin can unlock it"
                )
            return "unknown username or wrong password"
        if not user.active:
            _failed(s, user, name, "account disabled")
            return f"the account {user.username!r} is disabled"
        with acting_as(s, user.id):
            if not user.is_demo and HASHER.check_needs_rehash(stored or ""):
                user.password_hash = hash_password(password)
            user.last_login_at = utcnow()
            if user.failed_logins:
                user.failed_logins = 0
            s.flush()
        return AuthenticatedUser(
            user.id, user.username, user.full_name, user.role, user.credentials or ""
        )

    result = in_session(target, op)
    if isinstance(result, str):
        raise AuthError(result)
    return result


def _failed(s: Session, user: User | None, tried: str, why: str) -> None:
    """Audit a failed sign-in (by the account tried, or the system for an unknown name)."""
    who = user.id if user is not None else system_user_id(s)
    with acting_as(s, who):
        append_entry(
            s,
            action=AuditAction.LOGIN,
            entity="app_user",
            entity_id=None if user is None else user.id,
            field="failed",
            new={"username": tried, "why": why},
        )


def unlock_user(s: Session, username: str, *, why: str) -> User:
    """An admin unlocks an account locked by failed sign-ins (audited: the caller acts as the
    admin, and ``why`` is recorded)."""
    user = s.scalars(select(User).where(User.username == normalise_username(username))).first()
    if user is None:
        raise UserError(f"no user {username!r}")
    if user.locked_at is None and not user.failed_logins:
        raise UserError(f"the account {user.username!r} is not locked")
    if not why.strip():
        raise UserError("say why the account is unlocked")
    with reason(s, why.strip()):
        user.locked_at = None
        user.failed_logins = 0
        s.flush()
    return user


def reset_password(
    s: Session, username: str, password: str, *, why: str, min_length: int = MIN_PASSWORD_LENGTH
) -> User:
    """An admin sets a new password for an account (audited with ``why``; the hash itself is
    redacted in the trail). The password rules apply, with the site's minimum length."""
    user = s.scalars(select(User).where(User.username == normalise_username(username))).first()
    if user is None:
        raise UserError(f"no user {username!r}")
    if user.role is Role.SYSTEM:
        raise UserError("the built-in 'system' account has no password")
    if not why.strip():
        raise UserError("say why the password is reset")
    if len(password) < min_length:
        raise UserError(f"the password must be at least {min_length} characters long")
    check_password_rules(password, user.username)
    with reason(s, why.strip()):
        user.password_hash = hash_password(password)
        s.flush()
    return user


def change_own_password(
    engine: Engine,
    username: str,
    old: str,
    new: str,
    *,
    min_length: int = MIN_PASSWORD_LENGTH,
    lockout_after: int | None = LOCKOUT_AFTER,
) -> None:
    """A user changes their own password: the current one first (a wrong one counts toward the
    lockout like any sign-in), then the rules on the new one; audited as the user."""
    who = authenticate(engine, username, old, lockout_after=lockout_after)
    if new == old:
        raise UserError("the new password must differ from the current one")
    if len(new) < min_length:
        raise UserError(f"the password must be at least {min_length} characters long")
    check_password_rules(new, who.username)

    def op(s: Session) -> None:
        user = s.get(User, who.id)
        assert user is not None
        with acting_as(s, who.id), reason(s, "changed by the user"):
            user.password_hash = hash_password(new)
            s.flush()

    in_session(engine, op)


def ensure_demo_users(target: Engine | Session) -> list[str]:
    """Create the demo accounts (password ``demo``) if missing; return the usernames made.

    Refused in a database that has real (non-demo) users: a known password must never open a
    clinic's records.
    """

    def op(s: Session) -> list[str]:
        real = s.scalars(
            select(User.username).where(User.role != Role.SYSTEM, User.is_demo.is_(False))
        ).first()
        if real is not None:
            raise UserError(
                "this database has real users; demo accounts are only made in a demo database"
            )
        made: list[str] = []
        with acting_as(s, system_user_id(s)):
            for username, full_name, role, creds in DEMO_USERS:
                if s.scalar(select(User.id).where(User.username == username)) is None:
                    create_user(
                        s,
                        username=username,
                        full_name=full_name,
                        role=role,
                        password=DEMO_PASSWORD,
                        credentials=creds,
                        is_demo=True,
                    )
                    made.append(username)
        return made

    return in_session(target, op)
