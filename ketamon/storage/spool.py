"""The durable spool: what the database could not take, kept on local disk until it can.

When the database cannot take readings (locked, read-only, full, a PostgreSQL server away) at
shutdown, or for longer than the writer's bound, the writer appends them here instead of losing
them. Each record is one JSON line, written with one ``write`` and ``fsync``-ed (the file and, on
its creation, its folder). The next writer on the same database replays the spool at start (and
after a reconnect): a reading already in the database (same session, parameter, host time and
source) is not inserted twice, so a replay cut short by a crash can simply run again. A spool
whose every record is stored is renamed ``*.replayed-<UTC stamp>`` (kept for the record, never
read again).

A line that is not complete JSON (power cut in the middle of an append) is skipped with a warning
and counted; everything before and after it is replayed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.readings import Quality, Reading

log = logging.getLogger(__name__)

SPOOL_VERSION = 1


class SpoolError(OSError):
    """The spool file cannot be written: the readings it was to keep are not safe."""


def spool_path_for(database_url: str, data_dir: Path) -> Path:
    """The spool of a database: beside a SQLite file, else in ``data_dir`` named by the URL."""
    from ketamon.storage.database import sqlite_path

    path = sqlite_path(database_url)
    if path:
        return Path(path).with_name(Path(path).name + ".spool")
    from sqlalchemy.engine import make_url

    u = make_url(database_url)
    key = f"{u.host}:{u.port}/{u.database}"  # never the password
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return data_dir / f"spool-{digest}.jsonl"


def _reading_row(r: Reading) -> list[Any]:
    return [
        r.parameter,
        r.value,
        r.unit,
        r.mdc,
        r.host_time.isoformat(),
        r.device_time.isoformat() if r.device_time else None,
        r.quality.value,
        r.source,
        r.origin,
        r.channel,
    ]


def _reading_of(row: Sequence[Any]) -> Reading:
    param, value, unit, mdc, host, device, quality, source = row[:8]
    origin, channel = (row[8], row[9]) if len(row) >= 10 else ("", "")  # older spool lines
    return Reading(
        parameter=str(param),
        value=float(value),
        unit=str(unit),
        host_time=datetime.fromisoformat(host),
        mdc=mdc,
        device_time=datetime.fromisoformat(device) if device else None,
        quality=Quality(int(quality)),
        source=str(source),
        origin=str(origin),
        channel=str(channel),
    )


@dataclass(frozen=True, slots=True)
class SpooledReadings:
    session_id: int
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class SpooledEntry:
    """A session entry (link event, alarm event) the core decided but could not record."""

    session_id: int
    kind: str
    at: datetime
    data: dict[str, Any]


Spooled = SpooledReadings | SpooledEntry


class Spool:
    """An append-only, fsynced JSON-lines file. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        #: readings appended by this process (what a shutdown put aside)
        self.readings_spooled = 0
        self.entries_spooled = 0

    # ---- writing -----------------------------------------------------------------------------
    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self._lock:
            new = not self.path.exists()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    view = memoryview(line)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if new:  # the file's name must survive a power cut too
                    dfd = os.open(self.path.parent, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            except OSError as exc:
                raise SpoolError(exc.errno, f"cannot write the spool {self.path}: {exc}") from exc

    def add_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        self._append(
            {
                "v": SPOOL_VERSION,
                "type": "readings",
                "session_id": session_id,
                "readings": [_reading_row(r) for r in readings],
            }
        )
        self.readings_spooled += len(readings)

    def add_entry(self, session_id: int, kind: str, at: datetime, data: dict[str, Any]) -> None:
        self._append(
            {
                "v": SPOOL_VERSION,
                "type": "entry",
                "session_id": session_id,
                "kind": kind,
                "at": at.astimezone(UTC).isoformat(),
                "data": data,
            }
        )
        self.entries_spooled += 1

    # ---- reading back ------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def records(self) -> Iterator[Spooled]:
        """Every complete record, oldest first (damaged lines are logged and skipped)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    rec = json.loads(raw)
                    if rec.get("type") == "readings":
                        yield SpooledReadings(
                            int(rec["session_id"]),
                            tuple(_reading_of(row) for row in rec["readings"]),
                        )
                    elif rec.get("type") == "entry":
                        yield SpooledEntry(
                            int(rec["session_id"]),
                            str(rec["kind"]),
                            datetime.fromisoformat(rec["at"]),
                            dict(rec["data"]),
                        )
                    else:
                        raise ValueError(f"unknown record type {rec.get('type')!r}")
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("spool %s line %d skipped (damaged): %s", self.path, number, exc)

    def pending_readings(self) -> int:
        return sum(len(r.readings) for r in self.records() if isinstance(r, SpooledReadings))

    def retire(self) -> Path | None:
        """Everything in the spool is stored: rename it aside (never read again)."""
        with self._lock:
            if not self.path.exists():
                return None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            done = self.path.with_name(f"{self.path.name}.replayed-{stamp}")
            os.replace(self.path, done)
            return done


# ---- session entries (link and alarm events) ----------------------------------------------------


def _transient(exc: BaseException) -> bool:
    from concurrent.futures import TimeoutError as FutureTimeout

    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError | FutureTimeout | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class EntryRetrier:
    """Link and alarm events of a headless recording: each is retried while the database
    cannot take it (in order, on the one command thread); past ``deadline`` (shutdown) it goes
    to the spool instead. None is dropped silently: ``spooled`` and ``lost`` count them."""

    def __init__(self, spool: Spool, session_id: int, retry_s: float = 0.25) -> None:
        self.spool = spool
        self.session_id = session_id
        self.retry_s = retry_s
        #: monotonic time after which a failing entry is spooled at once (None: keep trying)
        self.deadline: float | None = None
        self.spooled = 0
        self.lost = 0
        self._backlog = False

    def run(self, execute: Any, cmd: Any, at: datetime | None) -> None:
        import time

        delay = self.retry_s
        while True:
            if self._backlog and cmd is not None:  # keep the order: after the spooled ones
                self._to_spool(cmd, at, "earlier entries are waiting in the spool")
                return
            try:
                execute()
                return
            except Exception as exc:
                from ketamon.storage.database import short_error

                if cmd is None or not _transient(exc):
                    log.error("could not record %s: %s", type(cmd).__name__, short_error(exc))
                    if cmd is not None:
                        self.lost += 1
                    return
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self._to_spool(cmd, at, short_error(exc))
                    return
                log.warning(
                    "database busy (%s); retrying %s", short_error(exc), type(cmd).__name__
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _to_spool(self, cmd: Any, at: datetime | None, why: str) -> None:
        from ketamon.core import commands as c
        from ketamon.core.session import alarm_data

        drafts: list[tuple[str, datetime, dict[str, Any]]] = []
        if isinstance(cmd, c.RecordLink) and at is not None:
            drafts.append(("link", at, {"state": cmd.state, "reason": cmd.reason}))
        elif isinstance(cmd, c.RecordAlarmEvents):
            drafts += [("alarm", e.time, alarm_data(e)) for e in cmd.events]
        else:
            log.error("%s cannot be kept in the spool: lost (%s)", type(cmd).__name__, why)
            self.lost += 1
            return
        try:
            for kind, when, data in drafts:
                self.spool.add_entry(self.session_id, kind, when, data)
        except OSError as exc:
            log.error("%s lost: the spool cannot be written (%s)", type(cmd).__name__, exc)
            self.lost += 1
            return
        self._backlog = True
        self.spooled += len(drafts)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    readings: int
    entries: int
    already: int

    def summary(self) -> str:
        return (
            f"stored {self.readings} readings and {self.entries} session entries from the "
            f"spool ({self.already} were already in the database)"
        )


def replay_spool(spool: Spool, engine: Any) -> ReplayResult:
    """Everything in the spool into the database, idempotently; then the spool is retired.

    Readings already stored (same session, parameter, time and source) and entries already
    recorded (same session, kind, time and data) are skipped. Raises the database's error when
    it still cannot take them (the spool stays as it is).
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from ketamon.core.ports import EntryDraft
    from ketamon.domain.record import EntryKind
    from ketamon.storage.models import SessionEntryRow
    from ketamon.storage.repository import SqlSessionRepository
    from ketamon.storage.writer import replay_readings

    readings, _ = replay_readings(engine, spool)
    total = sum(len(r.readings) for r in spool.records() if isinstance(r, SpooledReadings))
    repo = SqlSessionRepository(engine)
    actor = repo.system_actor()
    entries = already = 0
    for rec in spool.records():
        if not isinstance(rec, SpooledEntry):
            continue
        with Session(engine) as s:
            rows = s.scalars(
                select(SessionEntryRow).where(
                    SessionEntryRow.session_id == rec.session_id,
                    SessionEntryRow.kind == rec.kind,
                )
            ).all()
            stored = any(
                r.at.timestamp() == rec.at.timestamp() and json.loads(r.data) == rec.data
                for r in rows
            )
        if stored:
            already += 1
            continue
        repo.append(rec.session_id, [EntryDraft(EntryKind(rec.kind), rec.at, rec.data)], actor)
        entries += 1
    spool.retire()
    return ReplayResult(readings, entries, already + total - readings)
