"""What leaves the database: the export audit, and the durable outbound HL7 v2 queue.

* :func:`record_export` writes an audit entry for an export (who, what, where: the format, the
  paths, the size and the SHA-256 of what was written) in the hash-chained audit trail.
* The queue (``hl7_outbox``, revision 0005) holds each ORU^R01 message from when it is made until
  the interface engine acknowledges it with AA. A message's control id (MSH-10) is fixed when
  it is queued and is unique: queuing the same batch or signature again changes nothing, and a
  message resent after a restart carries the same id, so the engine can drop a duplicate.
  ``hl7_out_cursor`` keeps how far the readings and the record have been scanned.

No Qt here; the sender that drives the queue is :mod:`ketamon.hl7out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from devices.readings import utcnow
from ketamon.storage.audit import acting_as, append_entry
from ketamon.storage.models import AuditAction, Hl7Outbox, Hl7OutCursor

EXPORT_ENTITY = "export"
QUEUED = "queued"
SENT = "sent"


def record_export(
    engine: Engine,
    *,
    user_id: int,
    session_id: int,
    fmt: str,
    paths: Sequence[str],
    size: int,
    sha256: str,
    who: str,
) -> None:
    """Audit one export: by ``user_id`` (``who`` says more: the OS user, the station), of
    ``session_id`` as ``fmt``, to ``paths``."""
    with Session(engine) as s, s.begin(), acting_as(s, user_id):
        append_entry(
            s,
            action=AuditAction.CREATE,
            entity=EXPORT_ENTITY,
            session_id=session_id,
            field=fmt,
            new={"format": fmt, "paths": list(paths), "bytes": size, "sha256": sha256},
            why=f"session {session_id} exported as {fmt} to {', '.join(paths)} ({who})",
        )


# ---- the HL7 queue ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: int
    control_id: str
    kind: str  # readings | signed
    session_id: int
    message: str
    attempts: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: int
    control_id: str
    kind: str
    session_id: int
    state: str
    created_at: datetime
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str
    sent_at: datetime | None
    ack_code: str

    def to_json_dict(self) -> dict[str, Any]:
        def t(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "id": self.id,
            "control_id": self.control_id,
            "kind": self.kind,
            "session_id": self.session_id,
            "state": self.state,
            "created_at": t(self.created_at),
            "attempts": self.attempts,
            "last_attempt_at": t(self.last_attempt_at),
            "next_attempt_at": t(self.next_attempt_at),
            "last_error": self.last_error,
            "sent_at": t(self.sent_at),
            "ack_code": self.ack_code,
        }


def enqueue(
    engine: Engine,
    messages: Sequence[tuple[str, str, int, str]],
    *,
    cursor: dict[str, int] | None = None,
) -> int:
    """Queue ``(control_id, kind, session_id, message)``s (ids already queued are skipped) and
    move the scan cursors, in one transaction; returns how many were new."""
    now = utcnow()
    try:
        return _enqueue(engine, messages, cursor or {}, now)
    except IntegrityError:  # another station queued one of these ids at the same moment
        return _enqueue(engine, messages, cursor or {}, now)


def _enqueue(
    engine: Engine,
    messages: Sequence[tuple[str, str, int, str]],
    cursor: dict[str, int],
    now: datetime,
) -> int:
    with Session(engine) as s, s.begin():
        ids = [m[0] for m in messages]
        have = set()
        for i in range(0, len(ids), 500):
            have |= set(
                s.scalars(
                    select(Hl7Outbox.control_id).where(Hl7Outbox.control_id.in_(ids[i : i + 500]))
                )
            )
        new = [m for m in messages if m[0] not in have]
        for control_id, kind, sid, text in new:
            s.add(
                Hl7Outbox(
                    control_id=control_id,
                    kind=kind,
                    session_id=sid,
                    message=text,
                    state=QUEUED,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    ack_code="",
                )
            )
        for name, value in cursor.items():
            row = s.get(Hl7OutCursor, name)
            if row is None:
                s.add(Hl7OutCursor(name=name, value=value))
            elif value > row.value:
                row.value = value
        s.flush()
        return len(new)


def cursor(engine: Engine, name: str) -> int | None:
    with Session(engine) as s:
        row = s.get(Hl7OutCursor, name)
        return None if row is None else int(row.value)


def due(engine: Engine, now: datetime, limit: int = 50) -> list[QueuedMessage]:
    """Queued messages whose next attempt is due, oldest first."""
    with Session(engine) as s:
        rows = s.scalars(
            select(Hl7Outbox)
            .where(Hl7Outbox.state == QUEUED)
            .where((Hl7Outbox.next_attempt_at.is_(None)) | (Hl7Outbox.next_attempt_at <= now))
            .order_by(Hl7Outbox.id)
            .limit(limit)
        ).all()
        return [
            QueuedMessage(r.id, r.control_id, r.kind, r.session_id, r.message, r.attempts)
            for r in rows
        ]


def claim(engine: Engine, msg_id: int, now: datetime, lease: timedelta) -> bool:
    """Take the message for one attempt (another sender then leaves it alone until the lease
    ends); False when it is already sent or taken."""
    with Session(engine) as s, s.begin():
        done = s.execute(
            update(Hl7Outbox)
            .where(Hl7Outbox.id == msg_id, Hl7Outbox.state == QUEUED)
            .where((Hl7Outbox.next_attempt_at.is_(None)) | (Hl7Outbox.next_attempt_at <= now))
            .values(next_attempt_at=now + lease, last_attempt_at=now)
        )
        return bool(getattr(done, "rowcount", 0))


def mark_sent(engine: Engine, msg_id: int, ack_code: str, now: datetime) -> None:
    with Session(engine) as s, s.begin():
        s.execute(
            update(Hl7Outbox)
            .where(Hl7Outbox.id == msg_id)
            .values(
                state=SENT,
                sent_at=now,
                ack_code=ack_code,
                attempts=Hl7Outbox.attempts + 1,
                last_error="",
                next_attempt_at=None,
            )
        )


def mark_failed(engine: Engine, msg_id: int, why: str, retry_at: datetime) -> None:
    """The attempt failed: the message stays queued, with the reason, until ``retry_at``."""
    with Session(engine) as s, s.begin():
        s.execute(
            update(Hl7Outbox)
            .where(Hl7Outbox.id == msg_id, Hl7Outbox.state == QUEUED)
            .values(
                last_error=why[:2000],
                attempts=Hl7Outbox.attempts + 1,
                next_attempt_at=retry_at,
            )
        )


def queue_rows(engine: Engine, *, include_sent: bool = False) -> list[QueueRow]:
    with Session(engine) as s:
        q = select(Hl7Outbox).order_by(Hl7Outbox.id)
        if not include_sent:
            q = q.where(Hl7Outbox.state == QUEUED)
        return [
            QueueRow(
                r.id,
                r.control_id,
                r.kind,
                r.session_id,
                r.state,
                r.created_at,
                r.attempts,
                r.last_attempt_at,
                r.next_attempt_at,
                r.last_error,
                r.sent_at,
                r.ack_code,
            )
            for r in s.scalars(q)
        ]


def queue_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        rows = s.execute(select(Hl7Outbox.state, func.count()).group_by(Hl7Outbox.state)).all()
    counts = {QUEUED: 0, SENT: 0}
    counts.update({str(state): int(n) for state, n in rows})
    return counts
