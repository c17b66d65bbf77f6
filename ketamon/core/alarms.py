"""The core's alarm port over a live :class:`~ketamon.domain.alarms.AlarmEngine`.

The engine is shared with the monitor's thread, which evaluates every reading under ``lock``;
each call here takes the same lock and returns the events it caused, for the core to record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from ketamon.domain.alarms import ActiveAlarm, AlarmEngine, AlarmEvent
from ketamon.domain.thresholds import Priority, ThresholdProfile


class EngineAlarms:
    def __init__(
        self,
        engine: AlarmEngine,
        clock: Callable[[], datetime],
        lock: threading.Lock | threading.RLock | None = None,
        *,
        acknowledged: Callable[[str, datetime], list[AlarmEvent]] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.lock = lock or threading.Lock()
        #: what else an acknowledgement ends, called under the lock (the acquisition's hook)
        self._acknowledged = acknowledged

    def set_condition(
        self, key: str, priority: Priority | None, message: str, *, technical: bool = False
    ) -> list[AlarmEvent]:
        with self.lock:
            return self.engine.set_condition(
                key, priority, message, self.clock(), technical=technical
            )

    def acknowledge(self, key: str) -> list[AlarmEvent]:
        with self.lock:
            now = self.clock()
            events = self.engine.acknowledge(key, now)
            if self._acknowledged is not None:
                events += self._acknowledged(key, now)
            return events

    def acknowledge_all(self) -> list[AlarmEvent]:
        with self.lock:
            now = self.clock()
            events = self.engine.acknowledge_all(now)
            if self._acknowledged is not None:
                for key in sorted({e.key for e in events}):
                    events += self._acknowledged(key, now)
            return events

    def reset(self) -> list[AlarmEvent]:
        with self.lock:
            return self.engine.reset(self.clock())

    def reset_key(self, key: str) -> list[AlarmEvent]:
        with self.lock:
            return self.engine.reset_key(key, self.clock())

    def clear_all(self) -> list[AlarmEvent]:
        with self.lock:
            events = self.engine.clear_all(self.clock())
            self.engine.baseline = {}
            self.engine.first_dose = None
            return events

    def configure(
        self,
        *,
        profile: ThresholdProfile,
        first_dose: datetime | None,
        baseline: tuple[float, float] | None,
        infusing: bool,
    ) -> list[AlarmEvent]:
        with self.lock:
            self.engine.profile = profile
            self.engine.first_dose = first_dose
            if baseline is not None:
                self.engine.set_baseline(*baseline)
            elif first_dose is None:
                self.engine.baseline = {}
            return self.engine.set_infusing(infusing, self.clock())

    def restore(self, alarms: Iterable[ActiveAlarm]) -> None:
        with self.lock:
            self.engine.restore(alarms)
