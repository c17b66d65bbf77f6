"""Alarm evaluation: pure functions and a small state machine, evaluated where readings arrive.

ketamon's flags are advisory documentation aids; the bedside monitor stays the primary alarm.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from devices.readings import Reading
from ketamon.domain.thresholds import Limit, Priority, ThresholdProfile


@dataclass(frozen=True, slots=True)
class Breach:
    """One reading outside one limit."""

    limit_id: str
    parameter: str
    value: float
    limit: float
    direction: str  # "low" | "high" | "rise"
    priority: Priority
    label: str
    time: datetime

    def describe(self) -> str:
        word = {"low": "below", "high": "above", "rise": "rise over baseline ≥"}[self.direction]
        return f"{self.priority.marker} {self.label} {self.value:g} ({word} {self.limit:g})"


def _worst(breaches: Iterable[tuple[Limit, str]]) -> tuple[Limit, str] | None:
    best: tuple[Limit, str] | None = None
    for lim, direction in breaches:
        if best is None or lim.priority > best[0].priority:
            best = (lim, direction)
    return best


def evaluate(reading: Reading, profile: ThresholdProfile) -> Breach | None:
    """The most urgent limit a valid reading breaches (None when in range or invalid)."""
    if not reading.valid:
        return None
    hits = [
        (lim, d)
        for lim in profile.limits_for(reading.parameter)
        if (d := lim.breached_by(reading.value)) is not None
    ]
    worst = _worst(hits)
    if worst is None:
        return None
    lim, direction = worst
    bound = lim.low if direction == "low" else lim.high
    assert bound is not None
    return Breach(
        limit_id=lim.id,
        parameter=reading.parameter,
        value=reading.value,
        limit=bound,
        direction=direction,
        priority=lim.priority,
        label=lim.label,
        time=reading.host_time,
    )


def evaluate_bp_rise(
    reading: Reading, baseline: dict[str, float], profile: ThresholdProfile
) -> Breach | None:
    """BP rise of ≥ sys_delta systolic or ≥ dia_delta diastolic over the pre-dose baseline."""
    if not reading.valid or reading.parameter not in ("nibp_sys", "nibp_dia"):
        return None
    base = baseline.get(reading.parameter)
    if base is None:
        return None
    rule = profile.bp_rise
    delta = rule.sys_delta if reading.parameter == "nibp_sys" else rule.dia_delta
    if reading.value - base >= delta:
        return Breach(
            limit_id=f"bp_rise_{reading.parameter.removeprefix('nibp_')}",
            parameter=reading.parameter,
            value=reading.value,
            limit=base + delta,
            direction="rise",
            priority=rule.priority,
            label=f"BP rise ({reading.parameter.removeprefix('nibp_')})",
            time=reading.host_time,
        )
    return None


class AlarmState(enum.Enum):
    ACTIVE = "active"
    LATCHED = "latched"  # condition gone, high priority still waiting for acknowledgement
    CLEARED = "cleared"


class AlarmAction(enum.Enum):
    RAISED = "raised"
    ESCALATED = "escalated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A change in an alarm condition; what the UI shows and the record stores."""

    key: str  # one condition per parameter/rule family, e.g. "spo2" or "bp_rise"
    action: AlarmAction
    priority: Priority
    message: str
    time: datetime
    breach: Breach | None = None
    technical: bool = False


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    key: str
    priority: Priority
    message: str
    state: AlarmState
    acknowledged: bool
    technical: bool


@dataclass(slots=True)
class _Condition:
    priority: Priority
    message: str
    active: bool
    acknowledged: bool
    technical: bool = False


class AlarmEngine:
    """Tracks alarm conditions per key.

    High-priority conditions latch: once raised they stay until acknowledged, even if the
    reading returns to range. Lower priorities clear by themselves.
    """

    def __init__(self, profile: ThresholdProfile, *, latch_high: bool = True) -> None:
        self.profile = profile
        self.latch_high = latch_high
        self.baseline: dict[str, float] = {}
        #: readings before this time are pre-dose; the latest pre-dose cuff reading is the
        #: baseline for the BP-rise rule. None: no dose yet (everything is pre-dose).
        self.first_dose: datetime | None = None
        self._conditions: dict[str, _Condition] = {}

    def set_baseline(self, sys: float, dia: float) -> None:
        self.baseline = {"nibp_sys": sys, "nibp_dia": dia}

    def _predose(self, r: Reading) -> bool:
        return self.first_dose is None or r.host_time < self.first_dose

    def process(self, readings: Iterable[Reading]) -> list[AlarmEvent]:
        return self.process_flagged(readings)[0]

    def process_flagged(self, readings: Iterable[Reading]) -> tuple[list[AlarmEvent], list[int]]:
        """Evaluate each reading once: the alarm events, and per reading the priority it
        breached (0 = none; limits and the BP-rise rule alike) for the chart's flags."""
        events: list[AlarmEvent] = []
        flags: list[int] = []
        for r in readings:
            if not r.valid:
                flags.append(0)
                continue
            breach = evaluate(r, self.profile)
            worst = int(breach.priority) if breach else 0
            events.extend(self._update(r.parameter, breach, r.host_time))
            if r.parameter in ("nibp_sys", "nibp_dia"):
                if self._predose(r):
                    self.baseline[r.parameter] = r.value
                elif self.baseline:
                    rise = evaluate_bp_rise(r, self.baseline, self.profile)
                    events.extend(self._update(f"bp_rise_{r.parameter}", rise, r.host_time))
                    worst = max(worst, int(rise.priority) if rise else 0)
            flags.append(worst)
        return events, flags

    def _update(self, key: str, breach: Breach | None, when: datetime) -> list[AlarmEvent]:
        if breach is None:
            return self.set_condition(key, None, "", when)
        return self.set_condition(key, breach.priority, breach.describe(), when, breach=breach)

    def set_condition(
        self,
        key: str,
        priority: Priority | None,
        message: str,
        when: datetime,
        *,
        technical: bool = False,
        breach: Breach | None = None,
    ) -> list[AlarmEvent]:
        """Raise, escalate or clear the condition ``key`` (``priority=None`` clears it).

        Used for reading breaches and for conditions that come from elsewhere: MOAA/S scores,
        the hypertensive-emergency symptom check, and technical alarms.
        """
        cond = self._conditions.get(key)
        if priority is not None:
            if cond is None or (not cond.active and not self._latched(cond)):
                self._conditions[key] = _Condition(priority, message, True, False, technical)
                return [
                    AlarmEvent(key, AlarmAction.RAISED, priority, message, when, breach, technical)
                ]
            escalated = priority > cond.priority
            cond.active, cond.message = True, message
            if escalated:
                cond.priority, cond.acknowledged = priority, False
                return [
                    AlarmEvent(
                        key, AlarmAction.ESCALATED, priority, message, when, breach, technical
                    )
                ]
            return []
        if cond is None or not cond.active:
            return []
        cond.active = False
        if self._latched(cond):
            return []
        del self._conditions[key]
        return [
            AlarmEvent(
                key, AlarmAction.CLEARED, cond.priority, cond.message, when, None, cond.technical
            )
        ]

    def _latched(self, cond: _Condition) -> bool:
        return self.latch_high and cond.priority is Priority.HIGH and not cond.acknowledged

    def acknowledge(self, key: str, when: datetime) -> list[AlarmEvent]:
        cond = self._conditions.get(key)
        if cond is None:
            return []
        cond.acknowledged = True
        tech = cond.technical
        events = [
            AlarmEvent(
                key, AlarmAction.ACKNOWLEDGED, cond.priority, cond.message, when, None, tech
            )
        ]
        if not cond.active:
            del self._conditions[key]
            events.append(
                AlarmEvent(key, AlarmAction.CLEARED, cond.priority, cond.message, when, None, tech)
            )
        return events

    def acknowledge_all(self, when: datetime) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for key in list(self._conditions):
            cond = self._conditions.get(key)
            if cond is not None and not cond.acknowledged:
                events += self.acknowledge(key, when)
        return events

    def is_acknowledged(self, key: str) -> bool:
        cond = self._conditions.get(key)
        return cond is not None and cond.acknowledged

    def active(self) -> list[ActiveAlarm]:
        """Active and latched conditions, most urgent first."""
        out = [
            ActiveAlarm(
                k,
                c.priority,
                c.message,
                AlarmState.ACTIVE if c.active else AlarmState.LATCHED,
                c.acknowledged,
                c.technical,
            )
            for k, c in self._conditions.items()
        ]
        return sorted(out, key=lambda a: (-a.priority, a.key))

    def worst(self) -> Priority | None:
        return max((c.priority for c in self._conditions.values()), default=None)
