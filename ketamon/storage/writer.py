"""The single database writer.

One thread owns every write. Readings are queued from the device threads and committed in
batches at least every ``flush_interval_s`` (default 0.1 s, never more than 0.25 s) with one Core
INSERT per batch (device data: not audited row by row; ``source`` names the monitor). Nurse
entries are callables run in their own ORM Session and transaction, committed at once, under the
user given to :meth:`DatabaseWriter.submit` (or the writer's default user): the audit hooks write
their trail in that same transaction, and refuse a change to audited data with no user. Nobody
else shares the writer's Sessions.

If the database is unreachable for a while (a clinic server restarting), readings are kept in
memory and retried with back-off, in order; a batch the database rejects outright is retried one
submission at a time so that only the bad submission is lost (and counted).

With a :class:`~ketamon.storage.spool.Spool`, nothing is dropped for want of a database: readings
held longer than ``spool_after_s`` (or more than ``max_retained`` of them), and whatever is still
held when the writer stops while the database is failing, are appended to the spool file
(fsynced) and replayed, idempotently, when the database takes writes again (and at the next
start, :func:`replay_spool`). Only a spool that cannot be written either loses readings, and the
loss is logged and counted in ``stats.readings_dropped``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from devices.readings import Reading
from ketamon.storage.audit import set_user
from ketamon.storage.database import short_error
from ketamon.storage.models import Base
from ketamon.storage.spool import Spool, SpooledReadings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FLUSH_INTERVAL_S = 0.25
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
#: SQLite: how long one attempt at a batch of readings waits on a lock (they are retried)
INSERT_BUSY_TIMEOUT_MS = 1000

_READINGS = Base.metadata.tables["vital_reading"]

#: (submitted at (monotonic), session id, readings)
_Item = tuple[float, int, tuple[Reading, ...]]


@dataclass
class WriterStats:
    readings_committed: int = 0
    commits: int = 0
    max_exposure_s: float = 0.0  # longest a reading waited between submit and commit
    errors: int = 0
    last_error: str = ""
    readings_dropped: int = 0  # rejected by the database, or neither stored nor spooled
    retries: int = 0
    readings_spooled: int = 0  # put in the spool file (not lost: replayed later)
    readings_replayed: int = 0  # taken from the spool into the database


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """Passed to ``on_commit`` (in the writer thread) after each batch of readings commits."""

    rows: int
    total: int
    last_host_time: datetime
    exposure_s: float


class _Stop:
    pass


@dataclass(frozen=True, slots=True)
class _Op:
    op: Callable[[Session], Any]
    fut: Future[Any]
    user_id: int | None


def _transient(exc: BaseException) -> bool:
    """A connection problem worth retrying (not a row the database rejects)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class DatabaseWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        flush_interval_s: float = 0.1,
        max_batch: int = 5000,
        user_id: int | None = None,
        on_commit: Callable[[CommitInfo], None] | None = None,
        max_retained: int = 500_000,
        spool: Spool | None = None,
        spool_after_s: float = 30.0,
    ):
        if not 0 < flush_interval_s <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(f"flush_interval_s must be in (0, {MAX_FLUSH_INTERVAL_S}]")
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        #: the user of operations submitted without one (the signed-in user of this station)
        self.user_id = user_id
        self.on_commit = on_commit
        self.max_retained = max_retained
        self.spool = spool
        #: readings held in memory longer than this go to the spool (when there is one)
        self.spool_after_s = spool_after_s
        self.stats = WriterStats()
        self._queued_readings = 0  # submitted, not yet committed, spooled or dropped
        self._spooled_here = 0  # readings_spooled at the last replay
        self._hurry = False
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self._retained: list[_Item] = []
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST_S

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> DatabaseWriter:
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()
        return self

    def hurry(self) -> None:
        """Shutting down: while the database is failing, wait on it no more (what is held goes
        to the spool, operations fail at once). Safe from any thread."""
        self._hurry = True

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued (or, while the database fails, spool it), then end the
        thread."""
        if self._thread is None:
            return
        self._hurry = True
        self._q.put(_Stop())
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("database writer did not stop within %.1f s", timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def unsaved(self) -> int:
        """Readings submitted and neither committed nor spooled yet (what a kill would lose)."""
        with self._idle:
            return self._queued_readings

    @property
    def failing(self) -> str | None:
        """Why readings are being held instead of saved (None: the last write went through)."""
        return self.stats.last_error if self._retained else None

    # ---- producers (any thread) -------------------------------------------------------------
    def submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        if readings:
            with self._idle:
                self._pending += 1
                self._queued_readings += len(readings)
            self._q.put((time.monotonic(), session_id, tuple(readings)))

    def submit(self, op: Callable[[Session], T], *, user_id: int | None = None) -> Future[T]:
        """Run ``op`` in the writer thread in its own transaction, committed at once.

        Changes to audited data are attributed to ``user_id`` (default: the writer's user);
        without either, they fail with :class:`~ketamon.storage.audit.MissingUserError`.
        """
        fut: Future[T] = Future()
        with self._idle:
            self._pending += 1
        self._q.put(_Op(op, fut, self.user_id if user_id is None else user_id))
        return fut

    def call(
        self, op: Callable[[Session], T], timeout: float = 10.0, *, user_id: int | None = None
    ) -> T:
        return self.submit(op, user_id=user_id).result(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ---- the writer thread ------------------------------------------------------------------
    def _timeout(self, batch: list[_Item], batch_started: float) -> float | None:
        now = time.monotonic()
        timeout = None
        if batch:
            timeout = max(0.0, self.flush_interval_s - (now - batch_started))
        if self._retained:
            wait = max(0.0, self._retry_at - now)
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout

    def _run(self) -> None:
        batch: list[_Item] = []
        batch_started = 0.0
        batch_size = 0
        while True:
            try:
                item = self._q.get(timeout=self._timeout(batch, batch_started))
            except queue.Empty:
                item = None
            if isinstance(item, tuple):
                if not batch:
                    batch_started = time.monotonic()
                batch.append(item)
                batch_size += len(item[2])
                if batch_size < self.max_batch and (
                    time.monotonic() - batch_started < self.flush_interval_s
                ):
                    continue
                self._flush(batch)
                batch, batch_size = [], 0
                continue
            if batch or (self._retained and time.monotonic() >= self._retry_at):
                self._flush(batch)
                batch, batch_size = [], 0
            if item is None:
                continue
            if isinstance(item, _Stop):
                if self._retained:  # the database is failing: no waiting on it at shutdown
                    self._put_aside(self._retained, "writer stopped while the database failed")
                return
            assert isinstance(item, _Op)
            self._run_op(item.op, item.fut, item.user_id)

    def _done(self, n: int, readings: int = 0) -> None:
        with self._idle:
            self._queued_readings = max(0, self._queued_readings - readings)
            self._pending -= n
            if self._pending <= 0:
                self._pending = 0
                self._idle.notify_all()

    @staticmethod
    def _rows(items: Sequence[_Item]) -> list[dict[str, Any]]:
        return [
            {
                "session_id": sid,
                "parameter": r.parameter,
                "value": r.value,
                "unit": r.unit,
                "mdc": r.mdc,
                "host_time": r.host_time,
                "device_time": r.device_time,
                "quality": r.quality.value,
                "source": r.source,
                "origin": r.origin[:32],
                "channel": r.channel[:32],
                "entered_by_id": None,
            }
            for _, sid, readings in items
            for r in readings
        ]

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # readings are retried: wait at most 1 s per attempt on a locked file
                conn.exec_driver_sql(f"PRAGMA busy_timeout={INSERT_BUSY_TIMEOUT_MS}")
            try:
                conn.execute(insert(_READINGS), rows)
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA busy_timeout=5000")

    def _error(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self.stats.last_error = short_error(exc)

    def _drop(self, items: list[_Item], why: str) -> None:
        if not items:
            return
        n = sum(len(i[2]) for i in items)
        self.stats.readings_dropped += n
        log.error("%d readings lost: %s", n, why)
        self._done(len(items), n)
        if items is self._retained:
            self._retained = []

    def _put_aside(self, items: list[_Item], why: str) -> None:
        """Readings the database cannot take now: to the spool (or, without one, lost)."""
        if not items:
            return
        if items is self._retained:
            self._retained = []
        if self.spool is None:
            self._drop(items, why)
            return
        done = 0
        try:
            for item in items:
                self.spool.add_readings(item[1], item[2])
                self.stats.readings_spooled += len(item[2])
                self._done(1, len(item[2]))
                done += 1
        except OSError as exc:
            log.error("the spool cannot be written (%s)", exc)
            self._drop(items[done:], f"{why}; and the spool cannot be written")
            return
        n = sum(len(i[2]) for i in items)
        log.warning("%d readings put in the spool %s: %s", n, self.spool.path, why)

    def _flush(self, batch: list[_Item]) -> None:
        if self._hurry and self._retained and self.spool is not None:
            self._put_aside(self._retained + batch, "stopping while the database fails")
            return
        if self._retained and time.monotonic() < self._retry_at:  # still backing off
            self._retain_more(batch)
            return
        items = self._retained + batch if self._retained else batch
        self._retained = []
        if not items:
            return
        try:
            self._insert(self._rows(items))
        except Exception as exc:
            self._error(exc)
            if _transient(exc):
                self._retain(items, exc)
            elif len(items) > 1:  # find the bad submission; commit the rest
                log.warning("a batch of readings was rejected (%s); retrying one by one", exc)
                for one in items:
                    self._flush_one(one)
            else:
                self._drop(items, f"rejected by the database: {exc}")
            return
        self._committed(items)

    def _flush_one(self, item: _Item) -> None:
        try:
            self._insert(self._rows([item]))
        except Exception as exc:
            self._error(exc)
            if _transient(exc):
                self._retain([item], exc)
            else:
                self._drop([item], f"rejected by the database: {exc}")
            return
        self._committed([item])

    def _retain_more(self, items: list[_Item]) -> int:
        self._retained.extend(items)
        n = sum(len(i[2]) for i in self._retained)
        if self.spool is not None and self._retained:
            held_s = time.monotonic() - self._retained[0][0]
            if held_s > self.spool_after_s or n > self.max_retained:
                self._put_aside(
                    self._retained, f"the database has not taken them for {held_s:.0f} s"
                )
                return 0
        while n > self.max_retained and len(self._retained) > 1:
            oldest = self._retained.pop(0)
            n -= len(oldest[2])
            self._drop([oldest], "too many readings waiting for the database")
        return n

    def _retain(self, items: list[_Item], exc: BaseException) -> None:
        n = self._retain_more(items)
        self.stats.retries += 1
        self._retry_at = time.monotonic() + self._retry_delay
        log.warning(
            "database unavailable (%s); keeping %d readings, retrying in %.2f s",
            short_error(exc),
            n,
            self._retry_delay,
        )
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def _committed(self, items: list[_Item]) -> None:
        now = time.monotonic()
        rows = sum(len(i[2]) for i in items)
        exposure = now - min(i[0] for i in items)
        self._retry_delay = RETRY_FIRST_S
        self.stats.readings_committed += rows
        self.stats.commits += 1
        self.stats.max_exposure_s = max(self.stats.max_exposure_s, exposure)
        self._done(len(items), rows)
        if self.on_commit is not None:
            last = max(r.host_time for i in items for r in i[2])
            try:
                self.on_commit(CommitInfo(rows, self.stats.readings_committed, last, exposure))
            except Exception:
                log.exception("on_commit callback failed")
        if self._spooled_here < self.stats.readings_spooled:  # reconnected: take them back
            self._spooled_here = self.stats.readings_spooled
            self._replay()

    def _replay(self) -> None:
        """Readings from the spool into the database (idempotent); entries wait for the next
        start, where the session repository replays them (:func:`replay_spool`)."""
        if self.spool is None:
            return
        try:
            n, left = replay_readings(self.engine, self.spool)
        except Exception as exc:  # still failing: the spool keeps them for later
            log.warning("spool replay postponed: %s", short_error(exc))
            return
        self.stats.readings_replayed += n
        if not left:
            self.spool.retire()

    def _run_op(self, op: Callable[[Session], Any], fut: Future[Any], user_id: int | None) -> None:
        if not fut.set_running_or_notify_cancel():
            self._done(1)
            return
        if self._hurry and self._retained:
            fut.set_exception(TimeoutError("the database is unavailable and ketamon is stopping"))
            self._done(1)
            return
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                set_user(s, user_id)
                result = op(s)
        except BaseException as exc:
            self._error(exc)
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        finally:
            self._done(1)


def replay_readings(engine: Engine, spool: Spool) -> tuple[int, int]:
    """Insert the spool's readings that the database does not hold yet; one transaction per
    record. Returns (readings inserted, entry records still waiting in the spool)."""
    from sqlalchemy import and_, select

    inserted = entries = 0
    for rec in spool.records():
        if not isinstance(rec, SpooledReadings):
            entries += 1
            continue
        times = [r.host_time for r in rec.readings]
        with engine.begin() as conn:
            have = {
                (p, t.timestamp() if t.tzinfo else t.replace(tzinfo=UTC).timestamp(), src)
                for p, t, src in conn.execute(
                    select(_READINGS.c.parameter, _READINGS.c.host_time, _READINGS.c.source).where(
                        and_(
                            _READINGS.c.session_id == rec.session_id,
                            _READINGS.c.host_time >= min(times),
                            _READINGS.c.host_time <= max(times),
                        )
                    )
                )
            }
            new = [
                r
                for r in rec.readings
                if (r.parameter, r.host_time.timestamp(), r.source) not in have
            ]
            if new:
                conn.execute(
                    insert(_READINGS), DatabaseWriter._rows([(0.0, rec.session_id, tuple(new))])
                )
        inserted += len(new)
    return inserted, entries
