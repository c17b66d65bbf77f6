"""Break-glass (clinical.md §8 item 44): an emergency sign-in with a typed reason.

A clinician who must act beyond their role in an emergency (a nurse who must stop an infusion
or discharge-override while no physician is reachable) signs in with their own password and a
reason. They get physician rights until the site's ``break_glass_min`` runs out. The sign-in is
stored in ``emergency_access`` (audited) and stays on the review board, flagged, until an admin
reviews it with a note (:func:`review_emergency`, audited too).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ketamon.storage.audit import acting_as, reason
from ketamon.storage.database import in_session
from ketamon.storage.models import EmergencyAccess, Role, User, utcnow
from ketamon.storage.users import AuthenticatedUser, AuthError, UserError, authenticate

#: the shortest reason accepted (a word or two is not a reason)
MIN_REASON = 10


@dataclass(frozen=True, slots=True)
class Emergency:
    id: int
    user_id: int
    username: str
    full_name: str
    role: str  # the user's own role
    reason: str
    station: str
    started_at: datetime
    expires_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str

    @property
    def reviewed(self) -> bool:
        return self.reviewed_at is not None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "full_name": self.full_name,
            "role": self.role,
            "reason": self.reason,
            "station": self.station,
            "started_at": self.started_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "reviewed_by": self.reviewed_by,
            "reviewed_at": None if self.reviewed_at is None else self.reviewed_at.isoformat(),
            "review_note": self.review_note,
        }


def _station() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


def start_emergency(
    engine: Engine,
    username: str,
    password: str,
    why: str,
    *,
    minutes: float,
    now: datetime | None = None,
    lockout_after: int | None = None,
) -> tuple[AuthenticatedUser, Emergency]:
    """Check the password (failures count toward the lockout like any sign-in), then record
    the emergency access. Raises :class:`AuthError` (wrong password, locked) or
    :class:`UserError` (no reason, a role that cannot act clinically)."""
    text = " ".join(why.split())
    if len(text) < MIN_REASON:
        raise UserError(
            f"emergency access needs a reason of at least {MIN_REASON} characters "
            "(what is happening and why a physician cannot sign in)"
        )
    who = authenticate(engine, username, password, lockout_after=lockout_after)
    if who.role not in (Role.NURSE, Role.PHYSICIAN):
        raise AuthError(
            f"emergency access is for clinical staff; {who.username} is a {who.role.value}"
        )
    start = now or utcnow()

    def op(s: Session) -> Emergency:
        with acting_as(s, who.id), reason(s, f"emergency access: {text}"):
            row = EmergencyAccess(
                user_id=who.id,
                reason=text,
                station=_station(),
                started_at=start,
                expires_at=start + timedelta(minutes=minutes),
            )
            s.add(row)
            s.flush()
            return _emergency(s, row)

    return who, in_session(engine, op)


def _emergency(s: Session, row: EmergencyAccess) -> Emergency:
    user = s.get(User, row.user_id)
    reviewer = s.get(User, row.reviewed_by_id) if row.reviewed_by_id is not None else None
    assert user is not None
    return Emergency(
        row.id,
        row.user_id,
        user.username,
        user.full_name,
        user.role.value,
        row.reason,
        row.station,
        row.started_at,
        row.expires_at,
        None if reviewer is None else reviewer.full_name,
        row.reviewed_at,
        row.review_note or "",
    )


def emergencies(target: Engine | Session, *, open_only: bool = False) -> list[Emergency]:
    """Every emergency access, newest first (``open_only``: those not reviewed yet)."""

    def op(s: Session) -> list[Emergency]:
        q = select(EmergencyAccess).order_by(EmergencyAccess.started_at.desc())
        if open_only:
            q = q.where(EmergencyAccess.reviewed_at.is_(None))
        return [_emergency(s, r) for r in s.scalars(q)]

    return in_session(target, op)


def review_emergency(s: Session, access_id: int, note: str, *, admin_id: int) -> Emergency:
    """An admin reviews an emergency access (the note says what they found); audited."""
    admin = s.get(User, admin_id)
    if admin is None or admin.role is not Role.ADMIN:
        raise UserError("only an admin reviews emergency access")
    row = s.get(EmergencyAccess, access_id)
    if row is None:
        raise UserError(f"no emergency access {access_id}")
    if row.reviewed_at is not None:
        raise UserError(f"emergency access {access_id} was reviewed already")
    text = " ".join(note.split())
    if not text:
        raise UserError("write what the review found")
    with acting_as(s, admin_id), reason(s, f"emergency access reviewed: {text}"):
        row.reviewed_by_id = admin_id
        row.reviewed_at = utcnow()
        row.review_note = text
        s.flush()
    return _emergency(s, row)


__all__ = ["Emergency", "emergencies", "review_emergency", "start_emergency"]
