"""The append-only audit trail, written by the ORM itself in the same transaction as the change.

How a change gets its audit entry:

* The writer (or any caller) puts the acting user's id in ``session.info["user_id"]`` (see
  :func:`acting_as`). A flush that creates, changes or deletes an audited object without one
  fails with :class:`MissingUserError` — nothing is written.
* ``before_flush`` checks the rules: audit rows are never changed or deleted; event logs
  (``__insert_only__``) are only added to; replacing a recorded (non-NULL) value needs a reason
  (:func:`reason`), except for a model's ``__audit_workflow__`` fields; a delete always needs one.
  It also fetches the stored value of any changed attribute that was not loaded, so the entry
  shows the true old value.
* ``after_flush`` (primary keys are known, history still intact) inserts one entry per created
  or deleted object (the whole row as JSON) and one per changed field (old → new as JSON).
* ORM bulk ``insert()/update()/delete()`` statements on audited models are refused, since they
  would bypass the trail. (The writer inserts monitor readings with Core: device data, not edits.)

Tamper-evident: every entry is hash-chained to the one before it (and an audited session entry
is sealed in its entry), written only through :func:`ketamon.storage.chain.insert_chained`;
adding an :class:`AuditEntry` object to a Session is refused. ``ketamon audit verify`` checks it.

Append-only, three times over: this module offers no function that updates or deletes an entry;
the mapper refuses to; and the migrations install database triggers that abort any UPDATE or
DELETE on ``audit_entry`` whatever the client.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.attributes import History

from ketamon.storage.chain import SEALED_TABLES, insert_chained, session_entry_hash
from ketamon.storage.models import (
    AuditAction,
    AuditEntry,
    Base,
    ObservationItem,
    TreatmentSession,
    utcnow,
)

USER_KEY = "user_id"
REASON_KEY = "audit_reason"
_OLD_KEY = "_audit_old_values"
REDACTED = "<redacted>"


class AuditError(RuntimeError):
    """A write that would break the audit rules; nothing was written."""


class MissingUserError(AuditError):
    """Audited data was written without naming the user who made the change."""


class AuditReasonRequired(AuditError):
    """A recorded value was replaced (or a row deleted) without a reason."""


class AuditImmutableError(AuditError):
    """Someone tried to change or delete an audit entry (or an insert-only event)."""


# ---- how callers name the user and the reason -------------------------------------------------


def set_user(s: Session, user_id: int | None) -> None:
    if user_id is None:
        s.info.pop(USER_KEY, None)
    else:
        s.info[USER_KEY] = int(user_id)


def current_user_id(s: Session) -> int:
    """The acting user of this Session, or :class:`MissingUserError`."""
    uid = s.info.get(USER_KEY)
    if uid is None:
        raise MissingUserError(
            "no user for this write: every change to session data must name its user "
            "(writer.submit(op, user_id=…) or audit.acting_as(session, user_id))"
        )
    return int(uid)


@contextmanager
def acting_as(s: Session, user_id: int) -> Iterator[Session]:
    """Attribute every change made inside the block to ``user_id`` (flushes on leaving it)."""
    before = s.info.get(USER_KEY)
    set_user(s, user_id)
    try:
        yield s
        s.flush()
    finally:
        set_user(s, before)


@contextmanager
def reason(s: Session, why: str) -> Iterator[Session]:
    """Give a reason for the changes flushed inside the block (flushes on leaving it)."""
    why = why.strip()
    if not why:
        raise AuditReasonRequired("a reason must not be empty")
    before = s.info.get(REASON_KEY)
    s.info[REASON_KEY] = why
    try:
        yield s
        s.flush()
    finally:
        if before is None:
            s.info.pop(REASON_KEY, None)
        else:
            s.info[REASON_KEY] = before


def append_entry(
    s: Session,
    *,
    action: AuditAction,
    entity: str,
    entity_id: int | None = None,
    session_id: int | None = None,
    field: str | None = None,
    old: Any = None,
    new: Any = None,
    why: str | None = None,
) -> None:
    """Add an entry for an event that is not a row change (a login, a resumed session), or for
    a row its writer audits itself (a session entry: its whole row is sealed in the entry's
    ``subject_hash``). Pending changes are flushed first, so the entries keep their order; the
    entry is written at once, chained (see :mod:`ketamon.storage.chain`)."""
    user_id = current_user_id(s)
    s.flush()
    row: dict[str, Any] = {
        "at": utcnow(),
        "utc_offset_s": _utc_offset_s(),
        "user_id": user_id,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "session_id": session_id,
        "field": field,
        "old_value": None if old is None else to_json(old),
        "new_value": None if new is None else to_json(new),
        "reason": why or s.info.get(REASON_KEY),
        "station": _station(),
        "subject_hash": _subject_hash(s, entity, entity_id),
    }
    insert_chained(s.connection(), [row])


def _subject_hash(s: Session, entity: str, entity_id: int | None) -> str | None:
    """The seal of an append-only row the entry records (see chain.SEALED_TABLES)."""
    if entity not in SEALED_TABLES or entity_id is None:
        return None
    for mapper in Base.registry.mappers:
        if mapper.local_table.name == entity:  # type: ignore[attr-defined]
            obj = s.get(mapper.class_, entity_id)
            if obj is None:
                raise AuditError(f"no {entity} row {entity_id} to audit")
            values = {k: getattr(obj, k) for k in _column_keys(obj)}
            return session_entry_hash(values)
    raise AuditError(f"no model for the sealed table {entity}")


# ---- value encoding ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_json(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, sort_keys=True, default=str)


_STATION: str | None = None


def _station() -> str:
    global _STATION
    if _STATION is None:
        try:
            _STATION = socket.gethostname()[:200]
        except OSError:
            _STATION = ""
    return _STATION


def _utc_offset_s() -> int:
    off = datetime.now().astimezone().utcoffset()
    return int(off.total_seconds()) if off is not None else 0


# ---- the flush hooks --------------------------------------------------------------------------


def _column_keys(obj: Base) -> list[str]:
    return [a.key for a in inspect(obj).mapper.column_attrs]


def _history(obj: Base, key: str) -> History:
    return inspect(obj).attrs[key].history


def _changed_keys(obj: Base) -> list[str]:
    return [k for k in _column_keys(obj) if _history(obj, k).has_changes()]


def _table(obj: Base) -> str:
    return str(type(obj).__tablename__)


def _before_flush(s: Session, _ctx: UOWTransaction, _instances: Any) -> None:
    stash: dict[tuple[int, str], Any] = {}
    s.info[_OLD_KEY] = stash
    has_reason = bool(s.info.get(REASON_KEY))
    for obj in s.new:
        if isinstance(obj, Base) and type(obj).__audit__:
            current_user_id(s)
    for obj in s.deleted:
        if not isinstance(obj, Base):
            continue
        cls = type(obj)
        if isinstance(obj, AuditEntry):
            raise AuditImmutableError("audit entries cannot be deleted")
        if cls.__insert_only__:
            raise AuditImmutableError(f"{_table(obj)} is an event log: rows cannot be deleted")
        if cls.__audit__:
            current_user_id(s)
            if not has_reason:
                raise AuditReasonRequired(f"deleting a {_table(obj)} row needs a reason")
    for obj in s.dirty:
        if not isinstance(obj, Base) or not s.is_modified(obj, include_collections=False):
            continue
        cls = type(obj)
        if isinstance(obj, AuditEntry):
            raise AuditImmutableError("audit entries cannot be changed")
        if cls.__insert_only__:
            raise AuditImmutableError(f"{_table(obj)} is an event log: rows cannot be changed")
        if not cls.__audit__:
            continue
        current_user_id(s)
        for key in _changed_keys(obj):
            hist = _history(obj, key)
            if hist.deleted:
                old = hist.deleted[0]
            else:  # not loaded before it was set: read what is stored
                old = _stored_value(s.connection(), obj, key)
                stash[(id(obj), key)] = old
            new = hist.added[0] if hist.added else None
            if (
                old is not None
                and old != new
                and key not in cls.__audit_workflow__
                and not has_reason
            ):
                raise AuditReasonRequired(
                    f"changing {_table(obj)}.{key} from {to_json(old)} to {to_json(new)} "
                    "needs a reason"
                )


def _stored_value(conn: Connection, obj: Base, key: str) -> Any:
    mapper = inspect(obj).mapper
    ident = inspect(obj).identity
    if ident is None:
        return None
    pk = mapper.primary_key
    col = mapper.columns[key]
    stmt = select(col).where(*(c == v for c, v in zip(pk, ident, strict=True)))
    return conn.execute(stmt).scalar()


def _session_id_of(conn: Connection, obj: Base) -> int | None:
    values = inspect(obj).dict
    if isinstance(obj, TreatmentSession):
        return values.get("id")
    sid = values.get("session_id")
    if sid is not None:
        return int(sid)
    if isinstance(obj, ObservationItem):
        parent = values.get("observation")
        if parent is not None and inspect(parent).dict.get("session_id") is not None:
            return int(inspect(parent).dict["session_id"])
        oid = values.get("observation_id")
        if oid is not None:
            from ketamon.storage.models import Observation

            found = conn.execute(select(Observation.session_id).where(Observation.id == oid))
            value = found.scalar()
            return None if value is None else int(value)
    return None


def _row_json(obj: Base) -> str:
    values = inspect(obj).dict
    redact = type(obj).__audit_redact__
    row = {
        k: (REDACTED if k in redact and values.get(k) is not None else _plain(values.get(k)))
        for k in _column_keys(obj)
    }
    return json.dumps(row, ensure_ascii=False, sort_keys=True, default=str)


def _entity_id(obj: Base) -> int | None:
    state = inspect(obj)
    mapper = state.mapper
    # (not state.identity: a new object gets that only when the flush has finished)
    keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
    values = [state.dict.get(k) for k in keys]
    if len(values) == 1 and isinstance(values[0], int):
        return int(values[0])
    return None


def _after_flush(s: Session, _ctx: UOWTransaction) -> None:
    stash: dict[tuple[int, str], Any] = s.info.pop(_OLD_KEY, {})
    audited = [
        (action, obj)
        for action, objs in (
            (AuditAction.CREATE, s.new),
            (AuditAction.UPDATE, s.dirty),
            (AuditAction.DELETE, s.deleted),
        )
        for obj in objs
        if isinstance(obj, Base) and type(obj).__audit__
    ]
    if not audited:
        return
    conn = s.connection()
    base = {
        "at": utcnow(),
        "utc_offset_s": _utc_offset_s(),
        "user_id": current_user_id(s),
        "reason": s.info.get(REASON_KEY),
        "station": _station(),
    }
    rows: list[dict[str, Any]] = []
    for action, obj in audited:
        common = {
            **base,
            "action": action,
            "entity": _table(obj),
            "entity_id": _entity_id(obj),
            "session_id": _session_id_of(conn, obj),
        }
        if action is AuditAction.CREATE:
            rows.append({**common, "field": None, "old_value": None, "new_value": _row_json(obj)})
        elif action is AuditAction.DELETE:
            rows.append({**common, "field": None, "old_value": _row_json(obj), "new_value": None})
        else:
            redact = type(obj).__audit_redact__
            for key in _changed_keys(obj):
                hist = _history(obj, key)
                old = hist.deleted[0] if hist.deleted else stash.get((id(obj), key))
                new = hist.added[0] if hist.added else None
                if old == new:
                    continue
                if key in redact:
                    old_s = None if old is None else to_json(REDACTED)
                    new_s = None if new is None else to_json(REDACTED)
                else:
                    old_s, new_s = to_json(old), to_json(new)
                rows.append({**common, "field": key, "old_value": old_s, "new_value": new_s})
    insert_chained(conn, rows)


def _guard_bulk(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    for mapper in state.all_mappers:
        cls = mapper.class_
        if cls is AuditEntry:
            if state.is_insert:
                raise AuditError(_CHAINED_ONLY)
            raise AuditImmutableError("audit entries cannot be changed or deleted")
        if issubclass(cls, Base) and (cls.__audit__ or cls.__insert_only__):
            if state.is_insert and cls.__insert_only__:
                continue
            raise AuditError(
                f"bulk {'insert' if state.is_insert else 'update/delete'} on "
                f"{cls.__tablename__} would bypass the audit trail; change objects instead"
            )


def _refuse(_mapper: Any, _conn: Connection, _target: Any) -> None:
    raise AuditImmutableError("audit entries cannot be changed or deleted")


_CHAINED_ONLY = (
    "audit entries are written by audit.append_entry (hash-chained), not added as objects"
)


def _refuse_insert(_mapper: Any, _conn: Connection, _target: Any) -> None:
    raise AuditError(_CHAINED_ONLY)


event.listen(Session, "before_flush", _before_flush)
event.listen(Session, "after_flush", _after_flush)
event.listen(Session, "do_orm_execute", _guard_bulk)
event.listen(AuditEntry, "before_insert", _refuse_insert)
event.listen(AuditEntry, "before_update", _refuse)
event.listen(AuditEntry, "before_delete", _refuse)
