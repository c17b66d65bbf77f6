"""One chair's acquisition pipeline, without Qt: supervisor → protocol → alarm engine → buffers
and the storage sink.

The same object runs in the app (inside the QThread of :class:`~ketamon.acquisition.chair.
ChairAcquisition`) and in ``ketamon record``. :meth:`ChairPipeline.run` blocks in the calling
thread until :meth:`ChairPipeline.stop`; per-sample work stays in that thread: readings go into
the ring buffers and the sink, and the alarm engine is evaluated right there. Rare events leave
through callbacks, called in the thread where they happen: ``on_alarm`` (an
:class:`~ketamon.domain.alarms.AlarmEvent`) and ``on_link`` (a
:class:`~devices.supervisor.StatusEvent`).

Technical alarms (clinical requirement 22) are evaluated by :meth:`ChairPipeline.tick`, which the
owner calls about once a second; the decisions are in :mod:`ketamon.domain.technical`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import DoseAware
from devices.readings import Quality, Reading, Waveform
from devices.supervisor import LinkState, StatusEvent, Supervisor
from devices.transports import TcpListenTransport, Transport
from ketamon.acquisition.buffers import TrendBuffers, WaveBuffer
from ketamon.domain import technical
from ketamon.domain.alarms import ActiveAlarm, AlarmEngine, AlarmEvent
from ketamon.domain.plausibility import Artifact, Plausibility, parse_plausibility
from ketamon.domain.sources import SourceSelector
from ketamon.domain.technical import TechnicalFlag
from ketamon.domain.thresholds import Priority, ThresholdProfile

log = logging.getLogger(__name__)

#: (first, maximum) seconds between reconnect attempts after a link is lost
RECONNECT_BACKOFF_S = (0.2, 1.0)
#: the technical condition that shows implausible readings to the nurse
TECH_ARTIFACT = "tech_artifact"

_PLAUSIBILITY: Plausibility | None = None


def default_plausibility() -> Plausibility:
    """The shipped plausible ranges (read once)."""
    global _PLAUSIBILITY
    if _PLAUSIBILITY is None:
        from ketamon.resources import read_text

        _PLAUSIBILITY = parse_plausibility(
            read_text("plausibility.toml"), "resources/plausibility.toml"
        )
    return _PLAUSIBILITY


ReadingSink = Callable[[Sequence[Reading]], None]
AlarmCallback = Callable[[AlarmEvent], None]
LinkCallback = Callable[[StatusEvent], None]
#: (wall-clock seconds, monotonic seconds) of the host, for the clock-jump check
HostClock = Callable[[], tuple[float, float]]


def host_clock() -> tuple[float, float]:
    return time.time(), time.monotonic()


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """What to connect: a factory for the transport and protocol, called in the run thread."""

    make: Callable[[], tuple[Transport, DeviceProtocol]]
    description: str


class ChairPipeline:
    """Acquisition for one chair. :meth:`run` blocks until :meth:`stop` (from any thread).

    The alarm engine is touched by the run thread (readings) and by others (acknowledgements,
    conditions, ticks); every access goes through one lock, which the read methods take too.
    """

    def __init__(
        self,
        name: str,
        monitor: MonitorSpec,
        profile: ThresholdProfile,
        *,
        clock: Clock | None = None,
        buffers: TrendBuffers | None = None,
        on_readings: ReadingSink | None = None,
        on_alarm: AlarmCallback | None = None,
        on_link: LinkCallback | None = None,
        host_clock: HostClock = host_clock,
        link_low_after_s: float = technical.LINK_LOST_LOW_S,
        link_medium_after_s: float = technical.LINK_LOST_MEDIUM_S,
        plausibility: Plausibility | None = None,
    ) -> None:
        self.name = name
        self.monitor = monitor
        self.clock = clock or SystemClock()
        self.buffers = buffers or TrendBuffers()
        self.pleth = WaveBuffer()
        self.alarms = AlarmEngine(profile)
        #: picks the primary source per parameter for the chart and thresholds (site [sources])
        self.sources = SourceSelector()
        #: plausible range per parameter (resources/plausibility.toml)
        self.plausibility = plausibility or default_plausibility()
        #: the latest implausible readings with why (newest last), for the chair's screen
        self.artifacts: deque[Artifact] = deque(maxlen=50)
        self._artifacts: dict[str, str] = {}  # parameter -> why, while its artifact stands
        #: where readings go to be stored (called in the run thread)
        self.on_readings = on_readings
        self.on_alarm = on_alarm
        self.on_link = on_link
        #: where waveform blocks (the pleth) go to be stored (called in the run thread)
        self.on_waveforms: Callable[[list[Waveform]], None] | None = None
        self.link_state = LinkState.STOPPED
        self.link_reason = ""
        self.link_low_after_s = link_low_after_s
        self.link_medium_after_s = link_medium_after_s
        self._host_clock = host_clock
        self._alarm_lock = threading.Lock()
        self._lock = threading.Lock()  # the supervisor, the monitor spec and the stop request
        self._supervisor: Supervisor | None = None
        self._stop = threading.Event()
        self._replace = False
        self._running = False
        self._protocol: DeviceProtocol | None = None
        self._first_dose: datetime | None = None
        #: since when the link has not been streaming (None: streaming, or not running)
        self._link_down_since: datetime | None = None
        self._clock_watch = technical.ClockWatch()
        self._storage_error: str | None = None

    # ---- the run thread -----------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> None:
        """Connect and acquire until :meth:`stop` (or ``max_seconds`` of wall time).

        A driver exception is reported as a STOPPED link status ("driver error") and re-raised.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self._running = True
        self._link_down_since = self.clock.now()  # not streaming yet
        try:
            while not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                with self._lock:
                    spec, self._replace = self.monitor, False
                transport, protocol = spec.make()
                sup = self._make_supervisor(transport, protocol)
                with self._lock:
                    if self._stop.is_set():  # stop() ran before the supervisor existed
                        break
                    self._supervisor = sup
                try:
                    sup.run(max_seconds=left)
                finally:
                    with self._lock:
                        self._supervisor = None
                    if isinstance(transport, TcpListenTransport):
                        transport.shutdown()  # close() only drops the sender; stop listening
                with self._lock:
                    if not self._replace:
                        break
        except Exception:
            self._status(
                StatusEvent(
                    self.name,
                    LinkState.STOPPED,
                    self.link_state,
                    "driver error (see log)",
                    self.clock.now(),
                )
            )
            raise
        finally:
            self._running = False

    def _make_supervisor(self, transport: Transport, protocol: DeviceProtocol) -> Supervisor:
        self._protocol = protocol
        if isinstance(protocol, DoseAware):
            protocol.set_dose_time(self._first_dose)
        return Supervisor(
            transport,
            protocol,
            on_readings=self._on_readings,
            on_status=self._status,
            on_waveforms=self._on_waveforms,
            clock=self.clock,
            source=self.name,
            # a pulled cable is retried at least every second: readings resume <= 2 s after
            # the replug (the supervisor's own cap, 8 s, was too slow at the chair)
            backoff_s=RECONNECT_BACKOFF_S,
        )

    def _on_waveforms(self, waves: list[Waveform]) -> None:
        for w in waves:
            if w.parameter == "pleth":
                self.pleth.extend(w.samples)
        sink = self.on_waveforms
        if sink is not None:
            sink(waves)

    def _on_readings(self, readings: list[Reading]) -> None:
        self._process(readings, store=True)

    def _process(self, readings: Sequence[Reading], *, store: bool) -> None:
        # Every reading is stored; only the primary source of each parameter (site [sources])
        # reaches the chart and the thresholds.
        readings = self._plausible(readings)
        primary, _others = self.sources.split(readings)
        # One evaluation per reading, under the lock that guards profile swaps and
        # acknowledgements: it gives both the alarm events and the chart's flags.
        with self._alarm_lock:
            events, flagged = self.alarms.process_flagged(primary)
        self.buffers.extend(primary, flagged)
        sink = self.on_readings
        if store and sink is not None:
            sink(readings)
        self._emit(events)

    def _plausible(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        """Implausible monitor values (out of range, diastolic ≥ systolic) flagged invalid:
        stored so, never charted or flagged as real, and shown as an artifact notice."""
        if not readings:
            return readings
        checked, artifacts = self.plausibility.check(
            [r for r in readings if not r.quality & Quality.MANUAL]
        )
        if len(checked) != len(readings):  # manual values are checked by their form
            manual = iter(r for r in readings if r.quality & Quality.MANUAL)
            auto = iter(checked)
            checked = [
                next(manual) if r.quality & Quality.MANUAL else next(auto) for r in readings
            ]
        bad = {a.reading.parameter: a.reason for a in artifacts}
        cleared = {r.parameter for r in checked if r.valid and r.parameter in self._artifacts}
        if not bad and not cleared:
            return checked
        for a in artifacts:
            self.artifacts.append(a)
            log.warning("chair %s: artifact: %s", self.name, a.reason)
        for p in cleared - set(bad):
            del self._artifacts[p]
        self._artifacts.update(bad)
        when = max(r.host_time for r in checked)
        msg = "; ".join(sorted(set(self._artifacts.values())))
        flag = TechnicalFlag(
            TECH_ARTIFACT,
            Priority.LOW if self._artifacts else None,
            f"Artifact (not used): {msg}" if msg else "",
        )
        self._apply([flag], when)
        return checked

    def _status(self, event: StatusEvent) -> None:
        self.link_state, self.link_reason = event.state, event.reason
        if event.state is LinkState.STREAMING:
            self._link_down_since = None
        elif event.state is LinkState.STOPPED and self._stop.is_set():
            self._link_down_since = None  # stopped on purpose: nothing to flag
        elif self._link_down_since is None:
            self._link_down_since = event.time
        cb = self.on_link
        if cb is not None:
            cb(event)
        if event.state is LinkState.STREAMING:
            self._apply([technical.link_flag(None, event.time)], event.time)

    # ---- any thread ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return (it does within one read timeout of the supervisor)."""
        with self._lock:
            self._stop.set()
            sup = self._supervisor
        if sup is not None:
            sup.stop()

    def clear_stop(self) -> None:
        """Allow another :meth:`run` after a :meth:`stop` (call before starting it)."""
        self._stop.clear()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def replace_monitor(self, monitor: MonitorSpec) -> None:
        """Connect another monitor: a running pipeline drops the current link and connects the
        new one in the same run; a stopped one uses it at its next :meth:`run`."""
        with self._lock:
            self.monitor = monitor
            sup = self._supervisor
            self._replace = sup is not None
        if sup is not None:
            sup.stop()
        else:
            self.link_state, self.link_reason = LinkState.STOPPED, ""

    def inject(self, readings: Sequence[Reading], *, store: bool = True) -> None:
        """Readings that did not come from the monitor (manual entry): same buffers and rules."""
        self._process(readings, store=store)

    def set_condition(
        self, key: str, priority: Priority | None, message: str, *, technical: bool = False
    ) -> list[AlarmEvent]:
        """Raise or clear a condition that does not come from a reading (MOAA/S, technical)."""
        with self._alarm_lock:
            events = self.alarms.set_condition(
                key, priority, message, self.clock.now(), technical=technical
            )
        self._emit(events)
        return events

    def acknowledge(self, key: str) -> list[AlarmEvent]:
        now = self.clock.now()
        with self._alarm_lock:
            events = self.alarms.acknowledge(key, now)
            events += self.acknowledged(key, now)
        self._emit(events)
        return events

    def acknowledge_all(self) -> list[AlarmEvent]:
        now = self.clock.now()
        with self._alarm_lock:
            events = self.alarms.acknowledge_all(now)
            for key in {e.key for e in events}:
                events += self.acknowledged(key, now)
        self._emit(events)
        return events

    def acknowledged(self, key: str, now: datetime) -> list[AlarmEvent]:
        """What an acknowledgement of ``key`` ends besides its flag: a clock jump, once seen,
        clears (the caller holds the alarm lock; the session core acknowledges through it)."""
        if key != technical.TECH_CLOCK:
            return []
        self._clock_watch.acknowledged()
        return self.alarms.set_condition(technical.TECH_CLOCK, None, "", now, technical=True)

    @property
    def alarm_lock(self) -> threading.Lock:
        """The lock every access to :attr:`alarms` goes through (for code sharing the engine)."""
        return self._alarm_lock

    # The UI reads alarm state here, under the lock the run thread takes to change it.
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

    # ---- technical alarms ---------------------------------------------------------------------
    @property
    def link_down_since(self) -> datetime | None:
        """Since when the link has not been streaming: set when a run starts or the link leaves
        STREAMING (or the driver fails); None while streaming and after a deliberate stop."""
        return self._link_down_since

    def storage_failed(self, message: str = "") -> list[AlarmEvent]:
        """Readings cannot be saved (they are held for a retry): a medium technical alarm."""
        self._storage_error = message
        return self._apply([technical.storage_flag(message)], self.clock.now())

    def storage_ok(self) -> list[AlarmEvent]:
        """Readings are being saved again: clears the storage alarm."""
        self._storage_error = None
        return self._apply([technical.storage_flag(None)], self.clock.now())

    def tick(
        self,
        now: datetime | None = None,
        *,
        session_active: bool,
        first_dose: datetime | None,
        nibp_interval_min: float,
    ) -> list[AlarmEvent]:
        """Evaluate the technical alarms (call about once a second; any thread).

        ``tech_clock`` is checked always; the link, NIBP and SpO₂ checks only while a session is
        active (they are cleared otherwise). Returns the alarm events (also sent to on_alarm).
        """
        now = now or self.clock.now()
        flags: list[TechnicalFlag] = []
        wall, mono = self._host_clock()
        with self._alarm_lock:
            clock_flag = self._clock_watch.observe(wall, mono)
        if clock_flag is not None:
            flags.append(clock_flag)
        if not session_active:
            flags += [
                technical.TechnicalFlag(k, None)
                for k in (technical.TECH_LINK, technical.TECH_NIBP, technical.TECH_SPO2)
            ]
            return self._apply(flags, now)
        flags.append(
            technical.link_flag(
                self.link_down_since,
                now,
                low_after_s=self.link_low_after_s,
                medium_after_s=self.link_medium_after_s,
            )
        )
        sys = self.buffers.latest().get("nibp_sys")
        flags.append(
            technical.nibp_flag(
                sys[0].host_time if sys else None,
                first_dose,
                now,
                interval_min=nibp_interval_min,
            )
        )
        spo2 = self.buffers.series("spo2")
        if spo2 is not None and len(spo2.t):
            since = (now - timedelta(seconds=technical.PROBE_OFF_WINDOW_S)).timestamp()
            recent = spo2.t >= since
            flag = technical.spo2_flag([bool(x) for x in spo2.invalid[recent]])
            if flag is not None:
                flags.append(flag)
        return self._apply(flags, now)

    def _apply(self, flags: Sequence[TechnicalFlag], now: datetime) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        with self._alarm_lock:
            for f in flags:
                events += self.alarms.set_condition(
                    f.key, f.priority, f.message, now, technical=True
                )
        self._emit(events)
        return events

    def _emit(self, events: Sequence[AlarmEvent]) -> None:
        cb = self.on_alarm
        if cb is None:
            return
        for e in events:
            try:
                cb(e)
            except Exception:  # a failing listener must not stop acquisition
                log.exception("chair %s: alarm listener failed for %s", self.name, e.key)
