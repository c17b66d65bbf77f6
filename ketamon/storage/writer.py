"""The single database writer.

One thread owns every write. Readings are queued from the device threads and committed in
batches at least every ``flush_interval_s`` (default 0.1 s, never more than 0.25 s); nurse entries
are callables run in their own transaction and committed at once. Nobody else shares its Session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from devices.readings import Reading
from ketamon.storage.models import VitalReading

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FLUSH_INTERVAL_S = 0.25


@dataclass
class WriterStats:
    readings_committed: int = 0
    commits: int = 0
    max_exposure_s: float = 0.0  # longest a reading waited between submit and commit
    errors: int = 0
    last_error: str = ""


class _Stop:
    pass


class DatabaseWriter:
    def __init__(self, engine: Engine, *, flush_interval_s: float = 0.1, max_batch: int = 5000):
        if not 0 < flush_interval_s <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(f"flush_interval_s must be in (0, {MAX_FLUSH_INTERVAL_S}]")
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.stats = WriterStats()
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

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

    # ---- producers (any thread) -------------------------------------------------------------
    def submit_readings(self, session_id: int, readings: Sequence[Reading]) -> None:
        if readings:
            with self._idle:
                self._pending += 1
            self._q.put((time.monotonic(), session_id, tuple(readings)))

    def submit(self, op: Callable[[Session], T]) -> Future[T]:
        """Run ``op`` in the writer thread in its own transaction, committed at once."""
        fut: Future[T] = Future()
        with self._idle:
            self._pending += 1
        self._q.put((op, fut))
        return fut

    def call(self, op: Callable[[Session], T], timeout: float = 10.0) -> T:
        return self.submit(op).result(timeout)

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
    def _run(self) -> None:
        batch: list[tuple[float, int, tuple[Reading, ...]]] = []
        batch_started = 0.0
        batch_size = 0
        while True:
            timeout = None
            if batch:
                timeout = max(0.0, self.flush_interval_s - (time.monotonic() - batch_started))
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, tuple) and len(item) == 3:
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
            if batch:
                self._flush(batch)
                batch, batch_size = [], 0
            if item is None:
                continue
            if isinstance(item, _Stop):
                return
            op, fut = item
            self._run_op(op, fut)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            if self._pending <= 0:
                self._pending = 0
                self._idle.notify_all()

    def _flush(self, batch: list[tuple[float, int, tuple[Reading, ...]]]) -> None:
        rows = [
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
            }
            for _, sid, readings in batch
            for r in readings
        ]
        try:
            with Session(self.engine) as s, s.begin():
                s.execute(insert(VitalReading), rows)
        except Exception as exc:  # keep the thread alive; the error is reported, not swallowed
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("writing %d readings failed", len(rows))
        else:
            now = time.monotonic()
            self.stats.readings_committed += len(rows)
            self.stats.commits += 1
            self.stats.max_exposure_s = max(self.stats.max_exposure_s, now - batch[0][0])
        finally:
            self._done(len(batch))

    def _run_op(self, op: Callable[[Session], Any], fut: Future[Any]) -> None:
        if not fut.set_running_or_notify_cancel():
            self._done(1)
            return
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                result = op(s)
        except BaseException as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        finally:
            self._done(1)
