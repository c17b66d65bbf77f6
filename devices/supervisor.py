"""Connection supervisor: one per monitor, run in that monitor's own thread.

States follow OpenICE's serial adapters: CONNECTING (open the port, with back-off) → NEGOTIATING
(send the protocol's association/request bytes, wait for data) → STREAMING. A quiet-time watchdog
drops a silent link back to NEGOTIATING, and after a longer silence closes and reopens the port.
A lost port (pulled cable, removed USB adapter, closed socket) goes back to CONNECTING. Every
change is reported as a :class:`StatusEvent`; the app turns them into technical alarms.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.readings import Reading, Waveform
from devices.transports import ConnectionLost, Transport, TransportError


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    NEGOTIATING = "negotiating"
    STREAMING = "streaming"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class StatusEvent:
    source: str
    state: LinkState
    previous: LinkState
    reason: str
    time: datetime


class Supervisor:
    """Drives one transport + protocol pair until told to stop.

    Parameters
    ----------
    on_readings
        Called in the supervisor's thread with each batch of readings. Must not block for long.
    on_status
        Called in the supervisor's thread on every state change.
    backoff_s
        (first, maximum) delay between reconnect attempts; doubles after each failure.
    renegotiate_limit
        How many quiet periods in NEGOTIATING before the port is closed and reopened.
    """

    def __init__(
        self,
        transport: Transport,
        protocol: DeviceProtocol,
        *,
        on_readings: Callable[[list[Reading]], None],
        on_status: Callable[[StatusEvent], None] | None = None,
        on_waveforms: Callable[[list[Waveform]], None] | None = None,
        clock: Clock | None = None,
        backoff_s: tuple[float, float] = (0.25, 8.0),
        read_timeout_s: float = 0.05,
        renegotiate_limit: int = 2,
        source: str = "",
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.on_readings = on_readings
        self.on_status = on_status
        self.on_waveforms = on_waveforms
        self.clock = clock or SystemClock()
        self.backoff_s = backoff_s
        self.read_timeout_s = read_timeout_s
        self.renegotiate_limit = renegotiate_limit
        self.source = source or protocol.source or transport.description
        self.state = LinkState.STOPPED
        self.reconnects = 0
        self._last_reason = ""
        self._stop = threading.Event()

    # ---- public -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_seconds: float | None = None) -> None:
        """Blocking loop; returns after :meth:`stop` or ``max_seconds`` of wall time."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        delay = self.backoff_s[0]
        self._set(LinkState.CONNECTING, f"opening {self.transport.description}")
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    self.transport.open()
                except TransportError as exc:
                    self._set(LinkState.CONNECTING, str(exc))
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff_s[1])
                    continue
                delay = self.backoff_s[0]
                reason = self._session(deadline)
                self.transport.close()
                if reason is None:  # stopped or deadline
                    break
                self.reconnects += 1
                self._set(LinkState.CONNECTING, reason)
                self._stop.wait(self.backoff_s[0])
        finally:
            self.transport.close()
            self._set(LinkState.STOPPED, "stopped")

    # ---- internals --------------------------------------------------------------------------
    def _set(self, state: LinkState, reason: str) -> None:
        if state is self.state and state is not LinkState.CONNECTING:
            return
        if state is self.state and state is LinkState.CONNECTING and reason == self._last_reason:
            return
        previous, self.state = self.state, state
        self._last_reason = reason
        if self.on_status is not None:
            self.on_status(StatusEvent(self.source, state, previous, reason, self.clock.now()))

    def _session(self, deadline: float | None) -> str | None:
        """One open link. Returns why it ended (or None when asked to stop)."""
        proto = self.protocol
        proto.reset()
        try:
            self.transport.write(proto.on_connect(self.clock.now()))
        except ConnectionLost as exc:
            return f"link lost while negotiating: {exc}"
        self._set(LinkState.NEGOTIATING, f"connected to {self.transport.description}")
        last_activity = time.monotonic()
        quiet_periods = 0
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return None
            try:
                data = self.transport.read(65536, self.read_timeout_s)
            except ConnectionLost as exc:
                return f"link lost: {exc}"
            now = self.clock.now()
            readings = proto.feed(data, now) if data else []
            readings.extend(proto.poll(now))
            if data or readings:
                last_activity = time.monotonic()
                quiet_periods = 0
            if readings:
                self.on_readings(readings)
            if self.on_waveforms is not None:
                waves = proto.take_waveforms()
                if waves:
                    self.on_waveforms(waves)
            if proto.streaming and self.state is not LinkState.STREAMING:
                self._set(LinkState.STREAMING, "data flowing")
            try:
                self.transport.write(proto.outgoing(now))
            except ConnectionLost as exc:
                return f"link lost: {exc}"
            quiet = time.monotonic() - last_activity
            if quiet > proto.quiet_time_s:
                quiet_periods += 1
                if quiet_periods > self.renegotiate_limit:
                    return f"no answer from the device for {quiet:.0f} s; reopening the port"
                self._set(LinkState.NEGOTIATING, f"no data for {quiet:.1f} s")
                proto.reset()
                try:
                    self.transport.write(proto.on_connect(now))
                except ConnectionLost as exc:
                    return f"link lost: {exc}"
                last_activity = time.monotonic()
        return None
