"""The session clock: minutes since the first dose, derived from timestamps, never stored twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MIN_OBSERVATION_MIN = 120.0


@dataclass(frozen=True, slots=True)
class SessionClock:
    started: datetime
    first_dose: datetime | None = None

    @property
    def zero(self) -> datetime:
        """The chart's time zero: the first dose, or the session start until a dose is logged."""
        return self.first_dose or self.started

    def minutes(self, when: datetime) -> float:
        """Minutes from time zero; negative before the dose."""
        return (when - self.zero).total_seconds() / 60.0

    def observation_remaining_min(self, now: datetime) -> float | None:
        """Minutes left of the 2-hour observation, or None before the first dose."""
        if self.first_dose is None:
            return None
        return max(0.0, MIN_OBSERVATION_MIN - self.minutes(now))
