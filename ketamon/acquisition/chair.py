"""One chair's acquisition in the app: the Qt-free :class:`~ketamon.acquisition.pipeline.
ChairPipeline` run in its own QThread.

Per-sample work stays in the device thread (see the pipeline). Only rare events cross into the UI
thread, as typed immutable objects on ``Signal(object)``: alarm events and link status changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from PySide6.QtCore import QDeadlineTimer, QObject, QThread, Signal, Slot

from devices.clock import Clock
from devices.readings import Reading
from devices.supervisor import LinkState
from ketamon.acquisition.buffers import TrendBuffers, WaveBuffer
from ketamon.acquisition.pipeline import ChairPipeline, MonitorSpec, ReadingSink
from ketamon.domain.alarms import ActiveAlarm, AlarmEngine, AlarmEvent
from ketamon.domain.thresholds import Priority, ThresholdProfile

__all__ = ["ChairAcquisition", "MonitorSpec", "ReadingSink"]

log = logging.getLogger(__name__)


class _Worker(QObject):
    """Lives in the chair's QThread; runs the pipeline's blocking loop there."""

    sig_finished = Signal()

    def __init__(self, pipeline: ChairPipeline) -> None:
        super().__init__()  # no parent: moveToThread silently fails otherwise
        self._pipeline = pipeline

    @Slot()
    def run(self) -> None:
        try:
            self._pipeline.run()
        except Exception:  # reported as a "driver error" link status by the pipeline
            log.exception("acquisition for %s failed", self._pipeline.name)
        finally:
            self.sig_finished.emit()


class ChairAcquisition(QObject):
    """Acquisition for one chair. Create in the UI thread; call :meth:`start` and :meth:`stop`."""

    sig_alarm_changed = Signal(object)  # AlarmEvent
    sig_link_changed = Signal(object)  # StatusEvent

    def __init__(
        self,
        name: str,
        monitor: MonitorSpec,
        profile: ThresholdProfile,
        *,
        clock: Clock | None = None,
        buffers: TrendBuffers | None = None,
    ) -> None:
        super().__init__()
        self.pipeline = ChairPipeline(
            name,
            monitor,
            profile,
            clock=clock,
            buffers=buffers,
            on_alarm=self.sig_alarm_changed.emit,
            on_link=self.sig_link_changed.emit,
        )
        self.name = name
        self.clock = self.pipeline.clock
        self.buffers = self.pipeline.buffers
        self.pleth: WaveBuffer = self.pipeline.pleth
        self.alarms: AlarmEngine = self.pipeline.alarms
        self._thread: QThread | None = None
        self._worker: _Worker | None = None

    # ---- delegated state ----------------------------------------------------------------------
    @property
    def monitor(self) -> MonitorSpec:
        return self.pipeline.monitor

    @property
    def sink(self) -> ReadingSink | None:
        return self.pipeline.on_readings

    @property
    def link_state(self) -> LinkState:
        return self.pipeline.link_state

    @property
    def link_reason(self) -> str:
        return self.pipeline.link_reason

    @property
    def profile(self) -> ThresholdProfile:
        """The threshold profile in force (immutable; swapped whole by set_profile)."""
        return self.pipeline.profile

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    # ---- UI thread ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.pipeline.clear_stop()  # before the thread exists: a stop() from now on holds
        self._thread = QThread()
        self._thread.setObjectName(f"chair-{self.name}")
        self._worker = _Worker(self.pipeline)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.sig_finished.connect(self._thread.quit)
        self._thread.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop the pipeline and wait for the thread; log loudly if it will not stop."""
        self.pipeline.stop()
        thread = self._thread
        if thread is None:
            return
        thread.requestInterruption()
        thread.quit()
        if not thread.wait(QDeadlineTimer(timeout_ms)):
            log.error("chair %s: acquisition thread did not stop in %d ms", self.name, timeout_ms)
            thread.terminate()
            thread.wait()
        self._thread = None
        self._worker = None

    def set_sink(self, sink: ReadingSink | None) -> None:
        """Send every monitor reading to ``sink`` (called in the chair's thread)."""
        self.pipeline.on_readings = sink

    def replace_monitor(self, monitor: MonitorSpec) -> None:
        """Connect another monitor: stop this chair's thread and start it on the new one."""
        was_running = self._thread is not None
        self.stop()
        self.pipeline.replace_monitor(monitor)
        if was_running:
            self.start()

    # ---- any thread ---------------------------------------------------------------------------
    def active_alarms(self) -> list[ActiveAlarm]:
        return self.pipeline.active_alarms()

    def worst_alarm(self) -> Priority | None:
        return self.pipeline.worst_alarm()

    def set_profile(self, profile: ThresholdProfile) -> None:
        self.pipeline.set_profile(profile)

    def set_first_dose(self, when: datetime | None) -> None:
        self.pipeline.set_first_dose(when)

    def inject(self, readings: Sequence[Reading], *, store: bool = True) -> None:
        """Readings that did not come from the monitor (manual entry): same buffers and rules."""
        self.pipeline.inject(readings, store=store)

    def tick(
        self,
        now: datetime | None = None,
        *,
        session_active: bool,
        first_dose: datetime | None,
        nibp_interval_min: float,
    ) -> list[AlarmEvent]:
        """Evaluate the technical alarms (see :meth:`ChairPipeline.tick`); about once a second."""
        return self.pipeline.tick(
            now,
            session_active=session_active,
            first_dose=first_dose,
            nibp_interval_min=nibp_interval_min,
        )

    def storage_failed(self, message: str = "") -> None:
        """Readings cannot be saved (held for a retry): a medium technical alarm."""
        self.pipeline.storage_failed(message)

    def storage_ok(self) -> None:
        self.pipeline.storage_ok()
