"""The audit trail's hash chain (tamper evidence, clinical.md §8 item 38).

Every ``audit_entry`` row carries ``entry_hash`` = SHA-256 (hex) of the canonical JSON of all its
other columns — ``id``, ``at`` (UTC ISO 8601 with microseconds), ``utc_offset_s``, ``user_id``,
``action``, ``entity``, ``entity_id``, ``session_id``, ``field``, ``old_value``, ``new_value``,
``reason``, ``station``, ``prev_hash`` and ``subject_hash`` — and ``prev_hash`` = the
``entry_hash`` of the row before it in id order (:data:`GENESIS` for the first). Changing any
stored value, or removing or inserting a row, breaks the chain at that row.

``subject_hash`` seals the row an audit entry records when that row is itself append-only:
the audit entry of a ``session_entry`` carries the SHA-256 of that entry's whole row
(:func:`session_entry_hash`), so a change to any column of a session entry (its kind, time,
author, data, ...) shows too. Other audit entries have NULL there.

Writing (:func:`insert_chained`) must read the chain's tail and insert after it atomically, even
with several stations and ``ketamon record`` writing one database at once:

* PostgreSQL: ``pg_advisory_xact_lock(AUDIT_LOCK_KEY)`` first, then read the tail; the lock is
  held until the transaction ends, so the next writer's tail read (a new snapshot in READ
  COMMITTED) sees this row. Ids come from the table's sequence, drawn under the lock, so they
  are above the tail.
* SQLite: a no-op write (``DELETE FROM audit_entry WHERE 0``, which deletes nothing and fires
  no trigger) takes the database's write lock before the tail is read — pysqlite runs plain
  SELECTs outside a transaction, so without it two connections could read the same tail. Once
  the lock is held, no other connection can commit until this transaction ends. Ids are the
  tail's id + 1, …; as a second guard, two rows chained after the same tail would collide on
  the primary key, so a fork cannot be committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Connection

from ketamon.storage.models import Base

#: prev_hash of the first audit row
GENESIS = "0" * 64
#: pg_advisory_xact_lock key held while appending to the chain ("kaudit" in ASCII; the schema
#: upgrade uses another key)
AUDIT_LOCK_KEY = 0x6B6175646974

#: the columns an audit row's entry_hash covers (all but entry_hash)
AUDIT_HASHED = (
    "id",
    "at",
    "utc_offset_s",
    "user_id",
    "action",
    "entity",
    "entity_id",
    "session_id",
    "field",
    "old_value",
    "new_value",
    "reason",
    "station",
    "prev_hash",
    "subject_hash",
)
#: the columns of a session_entry row its audit entry's subject_hash covers (all of them)
SESSION_ENTRY_HASHED = (
    "id",
    "session_id",
    "kind",
    "at",
    "recorded_at",
    "author_id",
    "authorised_by_id",
    "data",
    "ref_id",
)
#: tables whose rows are sealed into their audit entry (append-only ones)
SEALED_TABLES = frozenset({"session_entry"})


def utc_iso(value: Any) -> Any:
    """A stored time as UTC ISO 8601 with microseconds (SQLite gives text, PostgreSQL a
    datetime); a value that is not a time is returned as it is (and so fails to match)."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            # SQLAlchemy's SQLite form "YYYY-MM-DD HH:MM:SS.ffffff" (UTC): the fast path for
            # millions of rows, the same result as parsing it (and one-to-one on any text)
            return f"{value[:10]}T{value[11:]}+00:00"
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):  # SQLite can hold a BLOB anywhere
        return {"blob": value.hex()}
    return value


_SIMPLE = frozenset({int, str, float, type(None)})
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
).encode


def _digest_values(columns: Sequence[str], values: Sequence[Any], times: Sequence[int]) -> str:
    vals = list(values)
    for i in times:
        vals[i] = utc_iso(vals[i])
    for i, v in enumerate(vals):
        if type(v) not in _SIMPLE:
            vals[i] = _plain(v)
    blob = _encode(dict(zip(columns, vals, strict=True)))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


_AUDIT_TIMES = (AUDIT_HASHED.index("at"),)
_ENTRY_TIMES = (SESSION_ENTRY_HASHED.index("at"), SESSION_ENTRY_HASHED.index("recorded_at"))


def audit_hash_values(values: Sequence[Any]) -> str:
    """entry_hash from the values of :data:`AUDIT_HASHED`, in that order (the verifier's path)."""
    return _digest_values(AUDIT_HASHED, values, _AUDIT_TIMES)


def audit_hash(row: Mapping[Any, Any]) -> str:
    """entry_hash of an audit row (a mapping of its columns, as written or as read back)."""
    return audit_hash_values([row.get(c) for c in AUDIT_HASHED])


def session_entry_hash(row: Mapping[Any, Any]) -> str:
    """subject_hash for a session_entry row (``data`` as the stored text)."""
    return _digest_values(
        SESSION_ENTRY_HASHED, [row.get(c) for c in SESSION_ENTRY_HASHED], _ENTRY_TIMES
    )


def lock_chain(conn: Connection) -> None:
    """Hold the chain's lock until this transaction ends (see the module docstring)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})")
    else:
        conn.exec_driver_sql("DELETE FROM audit_entry WHERE 0")


def chain_tail(conn: Connection) -> tuple[int, str | None]:
    """(id, entry_hash) of the last audit row, or (0, GENESIS) for an empty trail."""
    row = conn.execute(
        text("SELECT id, entry_hash FROM audit_entry ORDER BY id DESC LIMIT 1")
    ).first()
    return (0, GENESIS) if row is None else (int(row[0]), row[1])


def _new_ids(conn: Connection, tail_id: int, n: int) -> list[int]:
    if conn.dialect.name == "postgresql":
        got = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('audit_entry', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        ).scalars()
        return sorted(int(i) for i in got)
    return list(range(tail_id + 1, tail_id + 1 + n))


def insert_chained(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Append ``rows`` (audit_entry columns without id and hashes) to the chain, in order, in
    the connection's transaction; returns their ids."""
    if not rows:
        return []
    lock_chain(conn)
    tail_id, prev = chain_tail(conn)
    ids = _new_ids(conn, tail_id, len(rows))
    chained: list[dict[str, Any]] = []
    for new_id, row in zip(ids, rows, strict=True):
        full = {**row, "id": new_id, "prev_hash": prev}
        full.setdefault("subject_hash", None)
        full["entry_hash"] = prev = audit_hash(full)
        chained.append(full)
    conn.execute(insert(Base.metadata.tables["audit_entry"]), chained)
    return ids
