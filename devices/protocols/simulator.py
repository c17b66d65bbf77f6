"""The simulator: a first-class device that produces readings from a scenario, no wire needed.

It runs through the same :class:`~devices.supervisor.Supervisor` as a real monitor, with
:class:`SimulatedLink` standing in for the cable so the scenario's "cable pulled" and "silent"
faults reach the app the same way real ones do.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from devices.clock import Clock, SystemClock
from devices.protocols.base import DeviceProtocol
from devices.readings import Quality, Reading, Waveform, make_reading
from devices.scenarios import Link, Scenario, get_scenario
from devices.transports import ConnectionLost, TransportError


@runtime_checkable
class DoseAware(Protocol):
    """A source whose physiology follows the dose logged at the chair (the simulator)."""

    def set_dose_time(self, when: datetime | None) -> None: ...


class SimulatorProtocol(DeviceProtocol):
    """Numerics every ``period_s`` of scenario time, NIBP once per cuff cycle, all flagged DEMO."""

    name = "simulator"
    quiet_time_s = 5.0

    def __init__(
        self,
        source: str = "simulator",
        scenario: Scenario | str = "stable",
        *,
        start: datetime | None = None,
        start_at_s: float = 0.0,
        period_s: float = 1.0,
        follow_dose: bool = False,
        pleth_hz: float = 0.0,
    ) -> None:
        super().__init__(source)
        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.start = start
        self.start_at_s = start_at_s
        self.period_s = period_s
        self._next_numeric_t: float | None = None
        self._last_cuff = -1
        #: with follow_dose the simulated patient stays at baseline until a dose is logged
        #: (set_dose_time) and responds from then on; otherwise the scenario's own dose time.
        self.follow_dose = follow_dose
        self._dose_wall: datetime | None = None
        #: pleth samples per second (0: none); blocks are handed out by take_waveforms()
        self.pleth_hz = pleth_hz
        self._pleth_next_t: float | None = None
        self._pleth: list[Waveform] = []

    def set_dose_time(self, when: datetime | None) -> None:
        self._dose_wall = when  # one reference assignment: safe across threads

    def physiology_time(self, t: float) -> float:
        """Scenario time whose physiology applies at elapsed time ``t``."""
        if not self.follow_dose:
            return t
        dose_wall, start = self._dose_wall, self.start
        if dose_wall is None or start is None:
            if t < self.scenario.dose_at_s:
                return t
            # Still not dosed: keep the patient at baseline, with its usual small variation.
            return self.scenario.dose_at_s - 600.0 + (t % 540.0)
        t_dose = self.start_at_s + (dose_wall - start).total_seconds()
        return self.scenario.dose_at_s + (t - t_dose)

    def scenario_time(self, now: datetime) -> float:
        if self.start is None:
            self.start = now
        return self.start_at_s + (now - self.start).total_seconds()

    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        return []

    def poll(self, now: datetime) -> list[Reading]:
        t = self.scenario_time(now)
        if self.scenario.link(t) is not Link.UP:
            return []
        self._streaming = True
        out: list[Reading] = []
        q = Quality.DEMO
        if self._next_numeric_t is None:
            self._next_numeric_t = t
        # Catch up on every period that passed (a fast clock can skip several per poll), but
        # never more than a minute's worth so a stalled thread does not flood the writer.
        if t - self._next_numeric_t > 60:
            self._next_numeric_t = t - 60
        while self._next_numeric_t <= t:
            ts = self._next_numeric_t
            when = now - timedelta(seconds=t - ts)
            v = self.scenario.vitals(self.physiology_time(ts))
            for name, value in (("hr", v.hr), ("pr", v.pr), ("spo2", v.spo2), ("rr", v.rr)):
                out.append(
                    make_reading(
                        name, value, when, device_time=when, quality=q, source=self.source
                    )
                )
            self._next_numeric_t += self.period_s
        cuff = self.scenario.cuff_index_at(t)
        if cuff > self._last_cuff:
            c = self.scenario.cuff(
                cuff,
                self.physiology_time(
                    self.scenario.first_nibp_s + cuff * self.scenario.nibp_interval_s
                ),
            )
            when = now - timedelta(seconds=max(0.0, t - c.t_s))
            for name, value in (("nibp_sys", c.sys), ("nibp_dia", c.dia), ("nibp_mean", c.mean)):
                out.append(
                    make_reading(
                        name, value, when, device_time=when, quality=q, source=self.source
                    )
                )
            self._last_cuff = cuff
        self.stats.readings += len(out)
        if self.pleth_hz > 0:
            self._make_pleth(t, now)
        return out

    def _make_pleth(self, t: float, now: datetime) -> None:
        """A synthetic plethysmogram at ``pleth_hz``, one pulse per beat at the scenario HR."""
        if self._pleth_next_t is None or t - self._pleth_next_t > 10.0:
            self._pleth_next_t = t
        dt = 1.0 / self.pleth_hz
        n = int((t - self._pleth_next_t) / dt)
        if n <= 0:
            return
        hr = self.scenario.vitals(self.physiology_time(t)).hr
        beat = 60.0 / max(hr, 20.0)
        t0 = self._pleth_next_t
        samples = []
        for i in range(n):
            phase = ((t0 + i * dt) % beat) / beat
            # fast upstroke, slower decay with a dicrotic notch
            wave = math.exp(-((phase - 0.15) ** 2) / 0.006) + 0.35 * math.exp(
                -((phase - 0.45) ** 2) / 0.01
            )
            samples.append(round(wave, 4))
        start = now - timedelta(seconds=t - t0)
        self._pleth.append(Waveform("pleth", start, self.pleth_hz, tuple(samples)))
        self._pleth_next_t = t0 + n * dt

    def take_waveforms(self) -> list[Waveform]:
        out, self._pleth = self._pleth, []
        return out

    def reset(self) -> None:
        super().reset()
        # Keep the scenario clock and the cuff counter: a reconnect does not re-measure.


class SimulatedLink:
    """The simulator's stand-in for a cable: it follows the scenario's link faults."""

    def __init__(self, protocol: SimulatorProtocol, clock: Clock | None = None) -> None:
        self.protocol = protocol
        self.clock = clock or SystemClock()
        self.description = f"simulator ({protocol.scenario.name})"

    def _link(self) -> Link:
        return self.protocol.scenario.link(self.protocol.scenario_time(self.clock.now()))

    def open(self) -> None:
        if self._link() is Link.PULLED:
            raise TransportError("simulated cable is unplugged")

    def read(self, max_bytes: int, timeout: float) -> bytes:
        time.sleep(timeout)
        if self._link() is Link.PULLED:
            raise ConnectionLost("simulated cable pulled")
        return b""

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None
