"""One chair's acquisition: a supervisor in its own QThread, buffers, alarms, writer hand-off.

Per-sample work stays in the device thread: readings go into the ring buffers and the writer
queue, and the alarm engine is evaluated right there. Only rare events cross into the UI thread,
as typed immutable objects on ``Signal(object)``: alarm events and link status changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import QDeadlineTimer, QObject, QThread, Signal, Slot

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import DoseAware
from devices.readings import Reading, Waveform
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import Transport
from ketamon.acquisition.buffers import TrendBuffers, WaveBuffer
from ketamon.domain.alarms import ActiveAlarm, AlarmEngine, AlarmEvent
from ketamon.domain.thresholds import Priority, ThresholdProfile

log = logging.getLogger(__name__)

ReadingSink = Callable[[Sequence[Reading]], None]


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """What to connect: a factory for the transport and protocol, called in the chair's thread."""

    make: Callable[[], tuple[Transport, DeviceProtocol]]
    description: str


class _Worker(QObject):
    """Lives in the chair's QThread; runs the supervisor's blocking loop there."""

    sig_finished = Signal()

    def __init__(self, chair: ChairAcquisition) -> None:
        super().__init__()  # no parent: moveToThread silently fails otherwise
        self._chair = chair

    @Slot()
    def run(self) -> None:
        try:
            self._chair._run_supervisor()
        except Exception:  # a driver bug must become a visible status, not a dead thread
            log.exception("acquisition for %s failed", self._chair.name)
            self._chair._status(
                StatusEvent(
                    self._chair.name,
                    LinkState.STOPPED,
                    LinkState.STREAMING,
                    "driver error (see log)",
                    self._chair.clock.now(),
                )
            )
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
        self.name = name
        self.monitor = monitor
        self.clock = clock or SystemClock()
        self.buffers = buffers or TrendBuffers()
        self.pleth = WaveBuffer()
        self.alarms = AlarmEngine(profile)
        #: where readings go to be stored (the session model routes them to its session)
        self.sink: ReadingSink | None = None
        self.link_state = LinkState.STOPPED
        self.link_reason = ""
        self._alarm_lock = threading.Lock()  # the engine is also touched by acknowledge()
        self._supervisor: Supervisor | None = None
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._stop_requested = threading.Event()
        self._protocol: DeviceProtocol | None = None
        self._first_dose: datetime | None = None

    # ---- UI thread --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop_requested.clear()
        self._thread = QThread()
        self._thread.setObjectName(f"chair-{self.name}")
        self._worker = _Worker(self)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.sig_finished.connect(self._thread.quit)
        self._thread.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        """Stop the supervisor and wait for the thread; log loudly if it will not stop."""
        self._stop_requested.set()  # before reading _supervisor: see _run_supervisor
        sup, thread = self._supervisor, self._thread
        if sup is not None:
            sup.stop()
        if thread is None:
            return
        thread.quit()
        if not thread.wait(QDeadlineTimer(timeout_ms)):
            log.error("chair %s: acquisition thread did not stop in %d ms", self.name, timeout_ms)
            thread.terminate()
            thread.wait()
        self._thread = None
        self._worker = None

    # The UI reads alarm state here, under the lock the device thread takes to change it.
    def active_alarms(self) -> list[ActiveAlarm]:
        with self._alarm_lock:
            return self.alarms.active()

    def worst_alarm(self) -> Priority | None:
        with self._alarm_lock:
            return self.alarms.worst()

    @property
    def profile(self) -> ThresholdProfile:
        """The threshold profile in force (immutable; swapped whole by set_profile)."""
        return self.alarms.profile

    def set_sink(self, sink: ReadingSink | None) -> None:
        """Send every monitor reading to ``sink`` (called in the chair's thread)."""
        self.sink = sink

    def replace_monitor(self, monitor: MonitorSpec) -> None:
        """Connect another monitor: stop this chair's thread and start it on the new one."""
        was_running = self._thread is not None
        self.stop()
        self.monitor = monitor
        self.link_state, self.link_reason = LinkState.STOPPED, ""
        if was_running:
            self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def set_profile(self, profile: ThresholdProfile) -> None:
        """Use another threshold profile from now on (a per-session override)."""
        with self._alarm_lock:
            self.alarms.profile = profile

    def set_first_dose(self, when: datetime | None) -> None:
        """Readings before ``when`` are pre-dose (the BP-rise baseline comes from them)."""
        with self._alarm_lock:
            self.alarms.first_dose = when
        self._first_dose = when
        proto = self._protocol
        if isinstance(proto, DoseAware):
            proto.set_dose_time(when)

    def acknowledge_all(self) -> list[AlarmEvent]:
        with self._alarm_lock:
            events = self.alarms.acknowledge_all(self.clock.now())
        for e in events:
            self.sig_alarm_changed.emit(e)
        return events

    def acknowledge(self, key: str) -> list[AlarmEvent]:
        with self._alarm_lock:
            events = self.alarms.acknowledge(key, self.clock.now())
        for e in events:
            self.sig_alarm_changed.emit(e)
        return events

    # ---- chair thread -----------------------------------------------------------------------
    def _run_supervisor(self) -> None:
        transport, protocol = self.monitor.make()
        self._protocol = protocol
        if isinstance(protocol, DoseAware):
            protocol.set_dose_time(self._first_dose)
        self._supervisor = Supervisor(
            transport,
            protocol,
            on_readings=self._on_readings,
            on_status=self._status,
            on_waveforms=self._on_waveforms,
            clock=self.clock,
            source=self.name,
        )
        if self._stop_requested.is_set():  # stop() ran before the supervisor existed
            return
        self._supervisor.run()

    def _on_waveforms(self, waves: list[Waveform]) -> None:
        for w in waves:
            if w.parameter == "pleth":
                self.pleth.extend(w.samples)

    def _on_readings(self, readings: list[Reading]) -> None:
        self._process(readings, store=True)

    def _process(self, readings: Sequence[Reading], *, store: bool) -> None:
        # One evaluation per reading, under the lock that guards profile swaps and
        # acknowledgements: it gives both the alarm events and the chart's flags.
        with self._alarm_lock:
            events, flagged = self.alarms.process_flagged(readings)
        self.buffers.extend(readings, flagged)
        if store and self.sink is not None:
            self.sink(readings)
        for e in events:
            self.sig_alarm_changed.emit(e)

    # ---- any thread -------------------------------------------------------------------------
    def inject(self, readings: Sequence[Reading], *, store: bool = True) -> None:
        """Readings that did not come from the monitor (manual entry): same buffers and rules."""
        self._process(readings, store=store)

    def set_condition(
        self, key: str, priority: Priority | None, message: str, *, technical: bool = False
    ) -> None:
        """Raise or clear a condition that does not come from a reading (MOAA/S, technical)."""
        with self._alarm_lock:
            events = self.alarms.set_condition(
                key, priority, message, self.clock.now(), technical=technical
            )
        for e in events:
            self.sig_alarm_changed.emit(e)

    def _status(self, event: StatusEvent) -> None:
        self.link_state, self.link_reason = event.state, event.reason
        self.sig_link_changed.emit(event)
