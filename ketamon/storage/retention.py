"""Retention (clinical.md §8 item 47): nothing is deleted before its retention period ends;
after it, ``ketamon purge --before DATE`` deletes whole sessions, audited, leaving tombstones.

A session may be purged when it started before ``before`` and ``before`` is no later than today
minus the site's retention period (6 years by default). Purging a session deletes everything
recorded with it (readings, pleth, observations, doses, alarms, link events, staff, profile,
session entries and their audit rows, queued HL7 messages) and the patient when no session of
theirs is left. One transaction: all of it or nothing.

The audit trail is a hash chain (:mod:`ketamon.storage.chain`). Deleting rows from it breaks
the chain where each run of deleted rows was, so each run leaves an ``audit_gap`` tombstone (the
hash before the run and the hash at its end, which the next kept row points to), and the purge
records itself as an audit row carrying the SHA-256 of its tombstones. ``audit verify`` accepts a
break exactly where a tombstone says so and checks the tombstones against that hash.

The append-only triggers are lifted for the purge's own transaction only (SQLite: dropped and
put back as they were; PostgreSQL: disabled and enabled again, which needs the tables' owner).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
)

from ketamon.storage.audit import _station, _utc_offset_s
from ketamon.storage.chain import insert_chained, lock_chain
from ketamon.storage.models import AuditAction, AuditGap, Base

#: tables whose rows are append-only (triggers refuse UPDATE and DELETE)
APPEND_ONLY = ("audit_entry", "session_entry")


class RetentionError(ValueError):
    """A purge refused: what is wrong, in words."""


@dataclass(frozen=True, slots=True)
class Gap:
    after_id: int | None
    next_id: int
    rows: int
    first_prev_hash: str
    last_entry_hash: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "after_id": self.after_id,
            "next_id": self.next_id,
            "rows": self.rows,
            "first_prev_hash": self.first_prev_hash,
            "last_entry_hash": self.last_entry_hash,
        }


def gaps_sha256(gaps: Sequence[Gap] | Sequence[dict[str, Any]]) -> str:
    """The SHA-256 a purge's audit row carries of its tombstones (canonical JSON, by next_id)."""
    items = [g.to_json_dict() if isinstance(g, Gap) else dict(g) for g in gaps]
    items.sort(key=lambda g: int(g["next_id"]))
    blob = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PurgeReport:
    before: date
    retention_end: date
    sessions: list[int]
    patients: list[int]
    rows: dict[str, int] = field(default_factory=dict)  # table → rows deleted
    audit_rows: int = 0
    gaps: int = 0
    purge_audit_id: int | None = None
    dry_run: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.isoformat(),
            "retention_end": self.retention_end.isoformat(),
            "sessions": self.sessions,
            "patients": self.patients,
            "rows": self.rows,
            "audit_rows": self.audit_rows,
            "gaps": self.gaps,
            "purge_audit_id": self.purge_audit_id,
            "dry_run": self.dry_run,
        }


def retention_end(today: date, years: int) -> date:
    """Sessions started before this day are past a retention period of ``years``."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def _session_tables() -> list[tuple[Table, str]]:
    """(table, how it names its session) for every table holding session data, children first.

    A table with a ``session_id`` column names it directly; one whose foreign key points at such
    a table (observation items, say) is deleted through it.
    """
    md = Base.metadata
    direct = {
        t.name
        for t in md.tables.values()
        if "session_id" in t.c and t.name not in ("audit_entry", "treatment_session")
    }
    out: list[tuple[Table, str]] = []
    for t in reversed(md.sorted_tables):
        if t.name in direct:
            out.append((t, "session_id"))
            continue
        for fk in t.foreign_keys:
            if fk.column.table.name in direct:
                out.append((t, f"{fk.parent.name}->{fk.column.table.name}"))
                break
    return out


def _lift_triggers(conn: Connection) -> list[str]:
    """Lift the append-only triggers for this transaction; returns what puts them back."""
    if conn.dialect.name == "postgresql":
        for t in APPEND_ONLY:
            conn.exec_driver_sql(f"ALTER TABLE {t} DISABLE TRIGGER USER")
        return [f"ALTER TABLE {t} ENABLE TRIGGER USER" for t in APPEND_ONLY]
    names = ", ".join(f"'{t}'" for t in APPEND_ONLY)
    rows = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({names})"
    ).fetchall()
    for name, _ in rows:
        conn.exec_driver_sql(f"DROP TRIGGER {name}")
    return [str(sql) for _, sql in rows]


def _gaps(conn: Connection, doomed: set[int]) -> tuple[list[Gap], int]:
    """The runs of ``doomed`` audit ids in the chain, as tombstones; and the rows in a run at
    the chain's end (which need none: the purge's own row follows the last kept row)."""
    first = min(doomed)
    prev = conn.execute(
        text("SELECT id, entry_hash FROM audit_entry WHERE id < :i ORDER BY id DESC LIMIT 1"),
        {"i": first},
    ).first()
    after_id: int | None = None if prev is None else int(prev[0])
    gaps: list[Gap] = []
    run: list[tuple[int, str, str]] = []  # (id, prev_hash, entry_hash) of the current run
    rows = conn.execute(
        text("SELECT id, prev_hash, entry_hash FROM audit_entry WHERE id >= :i ORDER BY id"),
        {"i": first},
    )
    for rid, prev_hash, entry_hash in rows:
        rid = int(rid)
        if rid in doomed:
            run.append((rid, str(prev_hash), str(entry_hash)))
            continue
        if run:
            gaps.append(Gap(after_id, rid, len(run), run[0][1], run[-1][2]))
            run = []
        after_id = rid
    return gaps, len(run)


def purge(
    engine: Engine,
    before: date,
    *,
    user_id: int,
    today: date | None = None,
    retention_years: int = 6,
    reason: str = "",
    dry_run: bool = False,
) -> PurgeReport:
    """Delete the sessions started before ``before`` (see the module docstring).

    ``user_id`` is the admin doing it (the caller checks the role). Refused with
    :class:`RetentionError` when ``before`` lies after the end of retention.
    """
    today = today or datetime.now(UTC).date()
    end = retention_end(today, retention_years)
    if before > end:
        raise RetentionError(
            f"the retention period is {retention_years} years: records from {end.isoformat()} "
            f"on must be kept until then; purge --before {end.isoformat()} at the latest "
            f"(not {before.isoformat()})"
        )
    cutoff = datetime(before.year, before.month, before.day, tzinfo=UTC)
    md = Base.metadata
    ts, patient = md.tables["treatment_session"], md.tables["patient"]
    audit = md.tables["audit_entry"]
    with engine.begin() as conn:
        lock_chain(conn)  # no other audit row while the chain is cut and sealed
        sessions = [
            int(i)
            for i in conn.execute(
                select(ts.c.id).where(ts.c.started_at < cutoff).order_by(ts.c.id)
            ).scalars()
        ]
        if not sessions:
            return PurgeReport(before, end, [], [], dry_run=dry_run)
        sids: BindParameter[Any] = bindparam("sids", expanding=True)
        patients = [
            int(p)
            for p in conn.execute(
                select(patient.c.id)
                .where(patient.c.id.in_(select(ts.c.patient_id).where(ts.c.id.in_(sessions))))
                .where(~patient.c.id.in_(select(ts.c.patient_id).where(ts.c.id.not_in(sessions))))
                .order_by(patient.c.id)
            ).scalars()
        ]
        doomed_audit = {
            int(i)
            for i in conn.execute(
                select(audit.c.id).where(
                    audit.c.session_id.in_(sessions)
                    | ((audit.c.entity == "treatment_session") & audit.c.entity_id.in_(sessions))
                    | ((audit.c.entity == "patient") & audit.c.entity_id.in_(patients or [-1]))
                )
            ).scalars()
        }
        counts: dict[str, int] = {}
        for table, how in _session_tables():
            if how == "session_id":
                q = select(table.c.session_id).where(table.c.session_id.in_(sessions))
            else:
                col, parent = how.split("->")
                pt = md.tables[parent]
                q = select(table.c[col]).where(
                    table.c[col].in_(select(pt.c.id).where(pt.c.session_id.in_(sessions)))
                )
            counts[table.name] = int(
                conn.execute(select(func.count()).select_from(q.subquery())).scalar() or 0
            )
        counts["treatment_session"] = len(sessions)
        counts["patient"] = len(patients)
        gaps, tail = _gaps(conn, doomed_audit) if doomed_audit else ([], 0)
        if dry_run:
            return PurgeReport(
                before, end, sessions, patients, counts, len(doomed_audit), len(gaps), None, True
            )
        restore = _lift_triggers(conn)
        for table, how in _session_tables():
            if how == "session_id":
                conn.execute(delete(table).where(table.c.session_id.in_(sids)), {"sids": sessions})
            else:
                col, parent = how.split("->")
                pt = md.tables[parent]
                conn.execute(
                    delete(table).where(
                        table.c[col].in_(select(pt.c.id).where(pt.c.session_id.in_(sids)))
                    ),
                    {"sids": sessions},
                )
        conn.execute(delete(ts).where(ts.c.id.in_(sids)), {"sids": sessions})
        if patients:
            conn.execute(delete(patient).where(patient.c.id.in_(patients)))
        doomed_list = sorted(doomed_audit)
        for i in range(0, len(doomed_list), 500):
            part = doomed_list[i : i + 500]
            conn.execute(delete(audit).where(audit.c.id.in_(part)))
        for statement in restore:
            conn.exec_driver_sql(statement)
        summary = {
            "before": before.isoformat(),
            "retention_years": retention_years,
            "sessions": sessions,
            "patients": patients,
            "rows": counts,
            "audit_rows": len(doomed_audit),
            "tail_rows": tail,
            "gaps": len(gaps),
            "gaps_sha256": gaps_sha256(gaps),
        }
        (purge_id,) = insert_chained(
            conn,
            [
                {
                    "at": datetime.now(UTC),
                    "utc_offset_s": _utc_offset_s(),
                    "user_id": user_id,
                    "action": AuditAction.DELETE,
                    "entity": "purge",
                    "entity_id": None,
                    "session_id": None,
                    "field": None,
                    "old_value": None,
                    "new_value": json.dumps(summary, sort_keys=True, separators=(",", ":")),
                    "reason": reason or f"retention period ended ({retention_years} years)",
                    "station": _station(),
                }
            ],
        )
        if gaps:
            conn.execute(
                AuditGap.__table__.insert(),  # type: ignore[attr-defined]
                [{"purge_audit_id": purge_id, **g.to_json_dict()} for g in gaps],
            )
    return PurgeReport(
        before, end, sessions, patients, counts, len(doomed_audit), len(gaps), purge_id
    )


__all__ = ["Gap", "PurgeReport", "RetentionError", "gaps_sha256", "purge", "retention_end"]
