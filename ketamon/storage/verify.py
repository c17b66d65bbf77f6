"""``ketamon audit verify``: is the audit trail intact? (clinical.md §8 item 38.)

:func:`verify_audit` checks, streaming (a server-side cursor on PostgreSQL, so millions of rows
never sit in memory), and reports the first break it finds:

1. the hash chain: every ``audit_entry`` row, in id order, hashes to its ``entry_hash`` and its
   ``prev_hash`` is the previous row's ``entry_hash`` (see :mod:`ketamon.storage.chain`);
2. every ``session_entry`` row has exactly one audit entry (entity ``session_entry``, entity_id
   the entry's id), by the entry's author, in its session, with the same data (compared as
   canonical JSON) and sealing the entry's whole row (``subject_hash``), and no such audit entry
   has lost its session entry;
3. every signature (``signed``/``addendum``/``countersigned`` entry) carries in
   ``content_sha256`` the :func:`ketamon.domain.integrity.canonical_sha256` of its session's
   entries before it.

It only reads. Give it an Engine, or a Connection to check inside that connection's transaction
(the caller's uncommitted changes included).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, SessionEntry
from ketamon.storage.chain import (
    AUDIT_HASHED,
    GENESIS,
    audit_hash_values,
    session_entry_hash,
)
from ketamon.storage.database import (
    DatabaseConfigError,
    DatabaseVersionError,
    describe,
    make_engine,
    normalise_url,
    sqlite_path,
)

SIGNATURE_KINDS = ("signed", "addendum", "countersigned")
BATCH = 20_000

_AUDIT_SQL = f"SELECT {', '.join(AUDIT_HASHED)}, entry_hash FROM audit_entry ORDER BY id"
_ENTRY_COLUMNS = (
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
_ENTRIES_SQL = (
    "SELECT e.id, e.session_id, e.kind, e.at, e.recorded_at, e.author_id, e.authorised_by_id, "
    "e.data, e.ref_id, a.id, a.user_id, a.session_id, a.new_value, a.subject_hash "
    "FROM session_entry e LEFT JOIN audit_entry a "
    "ON a.entity = 'session_entry' AND a.entity_id = e.id ORDER BY e.id, a.id"
)
_ORPHAN_SQL = (
    "SELECT a.id, a.entity_id FROM audit_entry a WHERE a.entity = 'session_entry' "
    "AND NOT EXISTS (SELECT 1 FROM session_entry e WHERE e.id = a.entity_id) "
    "ORDER BY a.id LIMIT 1"
)
_SIGNED_SQL = (
    "SELECT id, session_id, kind, at, author_id, authorised_by_id, data FROM session_entry "
    "WHERE session_id IN (SELECT session_id FROM session_entry WHERE kind IN "
    "('signed', 'addendum', 'countersigned')) ORDER BY session_id, id"
)


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the record does not hold together."""

    table: str  # "audit_entry" or "session_entry"
    id: int
    problem: str
    kind: str | None = None  # the session entry's kind, for a signature

    @property
    def message(self) -> str:
        what = f"{self.table} {self.id}" + (f" ({self.kind})" if self.kind else "")
        return f"{what}: {self.problem}"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.id,
            "kind": self.kind,
            "problem": self.problem,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    audit_rows: int
    session_entries: int
    signatures: int
    first_break: Break | None

    @property
    def intact(self) -> bool:
        return self.first_break is None

    def summary(self) -> str:
        if self.first_break is not None:
            return f"audit: BROKEN at {self.first_break.message}"
        return (
            f"audit: intact ({self.audit_rows} audit rows, {self.session_entries} session "
            f"entries, {self.signatures} signatures)"
        )

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "audit_rows": self.audit_rows,
            "session_entries": self.session_entries,
            "signatures": self.signatures,
            "first_break": None if self.first_break is None else self.first_break.to_json_dict(),
        }


class _Found(Exception):
    def __init__(self, brk: Break) -> None:
        super().__init__(brk.message)
        self.brk = brk


@contextmanager
def _connection(target: Engine | Connection) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
        return
    with target.connect() as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def _stream(conn: Connection, sql: str) -> Iterator[Row[Any]]:
    # (per statement: Connection.execution_options() would change the caller's connection)
    result = conn.execute(text(sql), execution_options={"yield_per": BATCH})
    try:
        for part in result.partitions(BATCH):
            yield from part
    finally:
        result.close()


def _canonical_data(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _gaps(conn: Connection) -> dict[int, dict[str, Any]]:
    """The purge tombstones (``audit_gap``), by the id of the kept row after each gap."""
    if not inspect(conn).has_table("audit_gap"):  # a database from before revision 0006
        return {}
    rows = conn.execute(
        text(
            "SELECT purge_audit_id, after_id, next_id, rows, first_prev_hash, "
            "last_entry_hash FROM audit_gap ORDER BY next_id"
        )
    ).all()
    return {int(r[2]): dict(r._mapping) for r in rows}


def _check_chain(conn: Connection) -> int:
    expected, prev_id, n = GENESIS, None, 0
    prev_at = AUDIT_HASHED.index("prev_hash")
    gaps = _gaps(conn)
    purges: dict[int, str | None] = {}  # purge audit row → its new_value
    entity_at, new_at = AUDIT_HASHED.index("entity"), AUDIT_HASHED.index("new_value")
    for row in _stream(conn, _AUDIT_SQL):
        rid = row[0]
        n += 1
        if row[prev_at] != expected:
            gap = gaps.get(rid)
            if (
                gap is None
                or gap["first_prev_hash"] != expected
                or gap["last_entry_hash"] != row[prev_at]
                or gap["after_id"] != prev_id
            ):
                after = "the chain's start" if prev_id is None else f"audit_entry {prev_id}"
                raise _Found(Break("audit_entry", rid, f"prev_hash does not match {after}"))
        stored = row[-1]  # entry_hash, after the hashed columns
        if stored is None or audit_hash_values(row[:-1]) != stored:
            raise _Found(Break("audit_entry", rid, "entry_hash does not match its content"))
        if row[entity_at] == "purge":
            purges[rid] = row[new_at]
        expected, prev_id = stored, rid
    _check_purges(purges, gaps)
    return n


def _check_purges(purges: Mapping[int, str | None], gaps: Mapping[int, dict[str, Any]]) -> None:
    """Each purge's tombstones hash to what its audit row recorded, and none is unclaimed."""
    from ketamon.storage.retention import gaps_sha256

    by_purge: dict[int, list[dict[str, Any]]] = {}
    for g in gaps.values():
        by_purge.setdefault(int(g["purge_audit_id"]), []).append(g)
    for pid in sorted(set(by_purge) - set(purges)):
        raise _Found(Break("audit_gap", pid, "tombstones name a purge the audit trail lacks"))
    for pid, value in purges.items():
        try:
            claimed = json.loads(value or "{}").get("gaps_sha256")
        except (ValueError, AttributeError):
            claimed = None
        mine = [
            {
                k: g[k]
                for k in ("after_id", "next_id", "rows", "first_prev_hash", "last_entry_hash")
            }
            for g in by_purge.get(pid, [])
        ]
        if claimed != gaps_sha256(mine):
            raise _Found(
                Break("audit_entry", pid, "the purge's tombstones (audit_gap) do not match it")
            )


def _check_entries(conn: Connection) -> int:
    n = 0
    current: int | None = None
    for row in _stream(conn, _ENTRIES_SQL):
        eid = row[0]
        if eid == current:  # a second audit entry for the same session entry
            raise _Found(
                Break("session_entry", eid, f"has a second audit entry (audit_entry {row[9]})")
            )
        current = eid
        n += 1
        _check_entry(row)
    orphan = conn.execute(text(_ORPHAN_SQL)).first()
    if orphan is not None:
        raise _Found(Break("audit_entry", orphan[0], f"its session_entry {orphan[1]} is missing"))
    return n


def _check_entry(row: Row[Any]) -> None:
    eid, audit_id = row[0], row[9]
    if audit_id is None:
        raise _Found(Break("session_entry", eid, "has no audit entry"))
    a_user, a_session, a_new, a_seal = row[10], row[11], row[12], row[13]
    data = _canonical_data(row[7])
    if data is None or data != _canonical_data(a_new):
        raise _Found(
            Break(
                "session_entry", eid, f"data differs from its audit copy (audit_entry {audit_id})"
            )
        )
    if row[5] != a_user:
        raise _Found(
            Break("session_entry", eid, f"author differs from its audit entry ({audit_id})")
        )
    if row[1] != a_session:
        raise _Found(
            Break("session_entry", eid, f"session differs from its audit entry ({audit_id})")
        )
    entry = dict(zip(_ENTRY_COLUMNS, row[:9], strict=True))
    if a_seal is None or session_entry_hash(entry) != a_seal:
        raise _Found(
            Break(
                "session_entry",
                eid,
                f"row does not match its seal in audit_entry {audit_id} "
                "(kind, time, author, data or reference changed)",
            )
        )


def _when(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"not a time: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _domain_entry(m: Mapping[Any, Any]) -> SessionEntry:
    data = json.loads(m["data"])
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    return SessionEntry(
        id=int(m["id"]),
        session_id=int(m["session_id"]),
        kind=EntryKind(m["kind"]),
        at=_when(m["at"]),
        author_id=m["author_id"],
        author="",
        data=data,
        authorised_by_id=m["authorised_by_id"],
    )


def _check_signatures(conn: Connection) -> int:
    n = 0
    session: int | None = None
    before: list[SessionEntry] = []
    for row in _stream(conn, _SIGNED_SQL):
        m = row._mapping
        if m["session_id"] != session:
            session, before = m["session_id"], []
        try:
            entry = _domain_entry(m)
        except (ValueError, TypeError) as exc:
            raise _Found(
                Break("session_entry", m["id"], f"cannot be read ({exc})", m["kind"])
            ) from exc
        if m["kind"] in SIGNATURE_KINDS:
            n += 1
            claimed = entry.data.get("content_sha256")
            if not isinstance(claimed, str) or claimed != canonical_sha256(before):
                raise _Found(
                    Break(
                        "session_entry",
                        entry.id,
                        "content hash does not match the signed entries",
                        m["kind"],
                    )
                )
        before.append(entry)
    return n


def _count(conn: Connection, sql: str) -> int:
    return int(conn.execute(text(sql)).scalar() or 0)


def verify_audit(target: Engine | Connection) -> VerifyReport:
    """Check the audit chain, the session entries against their audit copies and the
    signatures (see the module docstring); stops at the first break."""
    with _connection(target) as conn:
        try:
            audits = _check_chain(conn)
            entries = _check_entries(conn)
            signatures = _check_signatures(conn)
        except _Found as found:
            return VerifyReport(
                audit_rows=_count(conn, "SELECT count(*) FROM audit_entry"),
                session_entries=_count(conn, "SELECT count(*) FROM session_entry"),
                signatures=_count(
                    conn,
                    "SELECT count(*) FROM session_entry "
                    "WHERE kind IN ('signed', 'addendum', 'countersigned')",
                ),
                first_break=found.brk,
            )
        return VerifyReport(audits, entries, signatures, None)


def open_for_verify(url: str) -> Engine:
    """An engine on an existing ketamon database at this ketamon's schema revision. Unlike
    ``open_database`` it never creates or upgrades one: an upgrade would seal the trail as it
    stands, so a database from an older ketamon must be opened by the app first."""
    from ketamon.storage.migrate import HEAD

    url = normalise_url(url)
    where = describe(url)
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None or not os.path.isfile(path):
            raise DatabaseConfigError(f"no database at {where}")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError) as exc:
        engine.dispose()
        raise DatabaseConfigError(
            f"cannot read a ketamon database at {where}: {exc.orig}"
        ) from exc
    if revision != HEAD:
        engine.dispose()
        raise DatabaseVersionError(
            f"database at {where} is at schema revision {revision}, this ketamon verifies "
            f"revision {HEAD}: open it with this ketamon first (or use a matching ketamon)"
        )
    return engine
