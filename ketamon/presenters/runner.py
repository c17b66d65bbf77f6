"""The command thread: every command and database read runs here, never on the UI thread.

Jobs are plain callables; each result comes back to the UI thread as a queued signal and
resolves its :class:`Pending`. One thread for the station keeps commands in the order they were
given (the database writer behind it is single-threaded too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QObject, QThread, Signal, Slot

from ketamon.core.session import Refused

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class Pending(Generic[T]):
    """A job given to the command thread; ``on_done`` callbacks run on the UI thread."""

    what: str = ""
    done: bool = False
    result: T | None = None
    #: why it was refused (a rule, a role) or could not be saved; empty when it succeeded
    reasons: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _callbacks: list[Callable[[Pending[T]], None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.done and not self.reasons

    def on_done(self, callback: Callable[[Pending[T]], None]) -> Pending[T]:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)
        return self

    def _resolve(self) -> None:
        self.done = True
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:  # one failing listener must not stop the others
                log.exception("callback for %s failed", self.what or "a command")

    def wait(self, timeout_s: float = 10.0) -> Pending[T]:
        """For tests and shutdown only: process events until resolved (never in a slot)."""
        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while not self.done and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(1)
        if not self.done:
            raise TimeoutError(f"{self.what or 'command'} did not finish in {timeout_s} s")
        return self


@dataclass(frozen=True, eq=False)
class _Job:
    run: Callable[[], Any]
    pending: Pending[Any]


class _Worker(QObject):
    sig_finished = Signal(object, object, object)  # job, result, exception

    @Slot(object)
    def run(self, job: _Job) -> None:
        try:
            result = job.run()
        except BaseException as exc:  # reported to the UI; never kills the thread
            self.sig_finished.emit(job, None, exc)
            return
        self.sig_finished.emit(job, result, None)


class CommandRunner(QObject):
    """Runs jobs in order on its own QThread. Create and use it on the UI thread; jobs may also
    be given from other Qt threads (the chair's acquisition thread)."""

    _sig_run = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("ketamon-commands")
        self._worker = _Worker()  # no parent: moveToThread silently fails otherwise
        self._worker.moveToThread(self._thread)
        self._sig_run.connect(self._worker.run)
        self._worker.sig_finished.connect(self._on_worker_finished)
        self._outstanding = 0
        self._thread.start()

    def submit(self, run: Callable[[], T], what: str = "") -> Pending[T]:
        pending: Pending[T] = Pending(what)
        self._outstanding += 1
        self._sig_run.emit(_Job(run, pending))
        return pending

    @property
    def busy(self) -> bool:
        return self._outstanding > 0

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """For tests and shutdown: run the event loop until every job has reported back."""
        deadline = QDeadlineTimer(int(timeout_s * 1000))
        while self._outstanding and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(1)
        if self._outstanding:
            raise TimeoutError(f"{self._outstanding} command(s) still running after {timeout_s} s")

    @Slot(object, object, object)
    def _on_worker_finished(self, job: _Job, result: Any, exc: BaseException | None) -> None:
        self._outstanding -= 1
        p = job.pending
        if isinstance(exc, Refused):
            p.reasons = exc.reasons
        elif exc is not None:
            log.error("%s failed", p.what or "a command", exc_info=exc)
            p.error = exc
            p.reasons = [
                f"Not saved: {type(exc).__name__}: {exc}. Nothing of it was recorded; try again."
            ]
        else:
            p.result = result
        p._resolve()

    def stop(self, timeout_ms: int = 10_000) -> None:
        """Finish the queued jobs, then stop the thread (bounded; logged if it will not)."""
        self._thread.quit()
        if not self._thread.wait(QDeadlineTimer(timeout_ms)):
            log.error("command thread did not stop in %d ms", timeout_ms)
            self._thread.terminate()
            self._thread.wait()


def chain(first: Pending[Any], *then: Callable[[], Pending[Any]]) -> Pending[Any]:
    """Run ``then`` one after another once ``first`` succeeded; the result is the last one's.
    A refusal stops the chain and is the chain's refusal (what was saved before it stays)."""
    out: Pending[Any] = Pending(first.what)
    steps = list(then)

    def step(p: Pending[Any]) -> None:
        if not p.ok or not steps:
            out.result, out.reasons, out.error = p.result, p.reasons, p.error
            out._resolve()
            return
        steps.pop(0)().on_done(step)

    first.on_done(step)
    return out
