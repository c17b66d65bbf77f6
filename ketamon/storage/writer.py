"""The single database writer.

One thread owns every write. Readings are queued from the device threads and committed in
batches at least every ``flush_interval_s`` (default 0.1 s, never more than 0.25 s) with one Core
INSERT per batch (device data: not audited row by row; ``source`` names the monitor). Nurse
entries are callables run in their own ORM Session and transaction, committed at once, under the
user given to :meth:`DatabaseWriter.submit` (or the writer's default user): the audit hooks write
their trail in that same transaction, and refuse a change to audited data with no user. Nobody
else shares the writer's Sessions.

If the database is unreachable for a while (a clinic server restarting), readings are kept in
memory (up to ``max_retained`` readings) and retried with back-off, in order; a batch the database
rejects outright is retried one submission at a time so that only the bad submission is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from devices.readings import Reading
from ketamon.storage.audit import set_user
from ketamon.storage.models import Base

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FLUSH_INTERVAL_S = 0.25
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0

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
    readings_dropped: int = 0  # rejected by the database, or over the retention limit
    retries: int = 0


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
        self.stats = WriterStats()
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

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread is None:
            return
        self._q.put(_Stop())
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("database writer did not stop within %.1f s", timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failing(self) -> str | None:
        """Why readings are being held instead of saved (None: the last write went through)."""
        return self.stats.last_error if self._retained else None

    # ---- producers (any thread) -------------------------------------------------------------
    def submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        if readings:
            with self._idle:
                self._pending += 1
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
                if self._retained:  # one last try; what still fails is reported as lost
                    self._retry_at = 0.0
                    self._flush([])
                    self._drop(self._retained, "writer stopped while the database was unavailable")
                return
            assert isinstance(item, _Op)
            self._run_op(item.op, item.fut, item.user_id)

    def _done(self, n: int) -> None:
        with self._idle:
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
                "entered_by_id": None,
            }
            for _, sid, readings in items
            for r in readings
        ]

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(_READINGS), rows)

    def _error(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"

    def _drop(self, items: list[_Item], why: str) -> None:
        if not items:
            return
        n = sum(len(i[2]) for i in items)
        self.stats.readings_dropped += n
        log.error("%d readings lost: %s", n, why)
        self._done(len(items))
        if items is self._retained:
            self._retained = []

    def _flush(self, batch: list[_Item]) -> None:
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
            exc,
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
        self._done(len(items))
        if self.on_commit is not None:
            last = max(r.host_time for i in items for r in i[2])
            try:
                self.on_commit(CommitInfo(rows, self.stats.readings_committed, last, exposure))
            except Exception:
                log.exception("on_commit callback failed")

    def _run_op(self, op: Callable[[Session], Any], fut: Future[Any], user_id: int | None) -> None:
        if not fut.set_running_or_notify_cancel():
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
