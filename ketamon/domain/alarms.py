"""Alarm evaluation: pure functions and a small state machine, evaluated where readings arrive.

ketamon's flags are advisory documentation aids; the bedside monitor stays the primary alarm.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from devices.readings import Reading
from ketamon.domain.site import SiteProfile
from ketamon.domain.thresholds import Limit, Priority, ThresholdProfile

#: the names a monitor's numerics use, for flag texts such as "SYS 165 > 160"
SHORT_NAMES = {
    "nibp_sys": "SYS",
    "nibp_dia": "DIA",
    "nibp_mean": "MAP",
    "hr": "HR",
    "pr": "PR",
    "spo2": "SpO₂",
    "rr": "RR",
    "temp": "Temp",
}


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
    baseline: float | None = None  # the BP-rise rule: the pre-dose value it is measured from

    def describe(self) -> str:
        if self.limit_id.startswith("iv_hold_"):  # the site's IV-hold rule is "at or above"
            return (
                f"{self.priority.marker} {self.label} {self.value:g} ≥ {self.limit:g}"
                " (site protocol)"
            )
        name = SHORT_NAMES.get(self.parameter, self.label)
        if self.direction == "rise":
            base = self.baseline if self.baseline is not None else self.limit
            rise, allowed = self.value - base, self.limit - base
            return (
                f"{self.priority.marker} {name} {self.value:g}: rise +{rise:g} over baseline "
                f"{base:g} (flag at +{allowed:g})"
            )
        sign = "<" if self.direction == "low" else ">"
        return f"{self.priority.marker} {name} {self.value:g} {sign} {self.limit:g}"


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
            baseline=base,
        )
    return None


_IV_HOLD_KEYS = {
    "nibp_sys": "iv_hold_sys",
    "nibp_dia": "iv_hold_dia",
    "hr": "iv_hold_hr",
    "pr": "iv_hold_hr",
}
_IV_HOLD_WORDS = {
    "nibp_sys": "systolic",
    "nibp_dia": "diastolic",
    "hr": "heart rate",
    "pr": "pulse rate",
}


def evaluate_iv_hold(reading: Reading, profile: ThresholdProfile) -> Breach | None:
    """A valid reading *at or above* the site's IV-hold value (``[iv_hold]``), else None.

    Whether an infusion is running is the caller's business (:class:`AlarmEngine` asks it).
    """
    rule = profile.iv_hold
    if rule is None or not reading.valid:
        return None
    bound = rule.threshold_for(reading.parameter)
    if bound is None or reading.value < bound:
        return None
    return Breach(
        limit_id=_IV_HOLD_KEYS[reading.parameter],
        parameter=reading.parameter,
        value=reading.value,
        limit=bound,
        direction="high",
        priority=rule.priority,
        label=f"IV hold: {_IV_HOLD_WORDS[reading.parameter]}",
        time=reading.host_time,
    )


def iv_hold_message(breach: Breach) -> str:
    """E.g. ``*** IV hold: systolic 184 ≥ 180 (site protocol)``."""
    return breach.describe()


_LIMIT_KEY = re.compile(r"^(?P<parameter>[a-z0-9_]+)_(?P<direction>low|high)$")


def alarm_family(key: str) -> str | None:
    """The vital-sign family of a condition key, used to suggest side effects.

    ``"bp_high"``: a high NIBP limit, a BP rise, an IV hold on BP; ``"bp_low"``: a low NIBP
    limit; ``"hr_high"`` / ``"hr_low"``: HR or PR limits (and the IV hold on HR, high);
    ``"resp"``: low SpO2 or low RR (respiratory depression). Anything else: None.
    """
    if key.startswith("bp_rise_") or key in ("iv_hold_sys", "iv_hold_dia"):
        return "bp_high"
    if key == "iv_hold_hr":
        return "hr_high"
    m = _LIMIT_KEY.match(key)
    if m is None:
        return None
    parameter, direction = m["parameter"], m["direction"]
    if parameter.startswith("nibp_"):
        return f"bp_{direction}"
    if parameter in ("hr", "pr"):
        return f"hr_{direction}"
    if (parameter, direction) in (("spo2", "low"), ("rr", "low")):
        return "resp"
    return None


@dataclass(slots=True)
class AudioPause:
    """AUDIO PAUSED (IEC 60601-1-8) on a monotonic clock: sound off for ``length_s`` (the site
    profile's setting, 1-5 min). A newly raised or escalated high-priority flag ends it."""

    length_s: float = 120.0
    until: float = 0.0

    def paused(self, now: float) -> bool:
        return now < self.until

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.until - now)

    def toggle(self, now: float) -> None:
        self.until = 0.0 if self.paused(now) else now + self.length_s

    def end(self) -> None:
        self.until = 0.0

    def new_flag(self, priority: Priority, now: float) -> bool:
        """A flag was raised or escalated: whether to sound it (ending the pause if high)."""
        if priority is Priority.HIGH:
            self.end()
        return not self.paused(now)


class AlarmState(enum.Enum):
    ACTIVE = "active"
    LATCHED = "latched"  # condition gone, high priority still waiting for acknowledgement
    CLEARED = "cleared"


class AlarmAction(enum.Enum):
    RAISED = "raised"
    ESCALATED = "escalated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"  # IEC 60601-1-8 ALARM RESET: a latched (or physician-reset) condition ends


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A change in an alarm condition; what the UI shows and the record stores."""

    #: one condition per parameter and direction or per rule, e.g. "spo2_low", "nibp_sys_high",
    #: "bp_rise_nibp_sys", "iv_hold_sys", "moaas", "tech_link"
    key: str
    action: AlarmAction
    priority: Priority
    message: str
    time: datetime
    breach: Breach | None = None
    technical: bool = False
    direction: str | None = None  # "low" | "high" | "rise"; None when not from a reading


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """A condition the engine holds: what the panel shows and what :meth:`AlarmEngine.restore`
    seeds a restarted engine with."""

    key: str
    priority: Priority
    message: str
    state: AlarmState  # ACTIVE or LATCHED
    acknowledged: bool
    technical: bool
    direction: str | None = None


@dataclass(slots=True)
class _Condition:
    priority: Priority
    message: str
    active: bool
    acknowledged: bool
    technical: bool = False
    direction: str | None = None

    def event(self, key: str, action: AlarmAction, when: datetime) -> AlarmEvent:
        return AlarmEvent(
            key, action, self.priority, self.message, when, None, self.technical, self.direction
        )


class AlarmEngine:
    """Tracks alarm conditions per key.

    Limit breaches are keyed ``"{parameter}_{direction}"`` (``"nibp_sys_high"``,
    ``"spo2_low"``): a low and a high breach of one parameter are distinct conditions. The BP
    rise rule uses ``"bp_rise_nibp_sys"`` / ``"bp_rise_nibp_dia"``; the IV-hold rule, evaluated
    only while :attr:`infusing`, ``"iv_hold_sys"`` / ``"iv_hold_dia"`` / ``"iv_hold_hr"``.

    High-priority conditions latch (when ``latch_high``): once raised they stay until
    acknowledged or reset, even if the reading returns to range. Lower priorities clear by
    themselves.
    """

    def __init__(self, profile: ThresholdProfile, *, latch_high: bool = True) -> None:
        self.profile = profile
        self.latch_high = latch_high
        self.baseline: dict[str, float] = {}
        #: readings before this time are pre-dose; the latest pre-dose cuff reading is the
        #: baseline for the BP-rise rule. None: no dose yet (everything is pre-dose).
        self.first_dose: datetime | None = None
        #: an IV infusion is running: the [iv_hold] rule is evaluated (see set_infusing)
        self.infusing = False
        self._conditions: dict[str, _Condition] = {}
        #: IV hold on HR: which source parameters ("hr", "pr") are at or above the value now
        self._iv_hr_sources: dict[str, bool] = {}

    @classmethod
    def for_site(cls, profile: ThresholdProfile, site: SiteProfile) -> AlarmEngine:
        """An engine whose latching follows the site profile (an admin setting)."""
        return cls(profile, latch_high=site.latch_high)

    def set_baseline(self, sys: float, dia: float) -> None:
        self.baseline = {"nibp_sys": sys, "nibp_dia": dia}

    def set_infusing(self, on: bool, when: datetime) -> list[AlarmEvent]:
        """Start or stop evaluating the IV-hold rule. Stopping clears its conditions the way
        a reading back in range would (a latched high-priority one stays until acknowledged).
        Starting evaluates from the next reading on."""
        self.infusing = on
        if on:
            return []
        self._iv_hr_sources.clear()
        events: list[AlarmEvent] = []
        for key in ("iv_hold_sys", "iv_hold_dia", "iv_hold_hr"):
            events += self.set_condition(key, None, "", when)
        return events

    def _predose(self, r: Reading) -> bool:
        return self.first_dose is None or r.host_time < self.first_dose

    def process(self, readings: Iterable[Reading]) -> list[AlarmEvent]:
        return self.process_flagged(readings)[0]

    def process_flagged(self, readings: Iterable[Reading]) -> tuple[list[AlarmEvent], list[int]]:
        """Evaluate each reading once: the alarm events, and per reading the priority it
        breached (0 = none; limits, the BP-rise and the IV-hold rules alike) for the chart's
        flags."""
        events: list[AlarmEvent] = []
        flags: list[int] = []
        for r in readings:
            if not r.valid:
                flags.append(0)
                continue
            breach = evaluate(r, self.profile)
            worst = int(breach.priority) if breach else 0
            # A low and a high breach are distinct conditions; the one no longer breached
            # clears first, so a low→high swing reads CLEARED then RAISED.
            for direction in ("low", "high"):
                if breach is None or breach.direction != direction:
                    events.extend(self._update(f"{r.parameter}_{direction}", None, r.host_time))
            if breach is not None:
                key = f"{r.parameter}_{breach.direction}"
                events.extend(self._update(key, breach, r.host_time))
            if r.parameter in ("nibp_sys", "nibp_dia"):
                if self._predose(r):
                    self.baseline[r.parameter] = r.value
                elif self.baseline:
                    rise = evaluate_bp_rise(r, self.baseline, self.profile)
                    events.extend(self._update(f"bp_rise_{r.parameter}", rise, r.host_time))
                    worst = max(worst, int(rise.priority) if rise else 0)
            if self.infusing:
                hold, hold_events = self._iv_hold(r)
                events.extend(hold_events)
                worst = max(worst, int(hold.priority) if hold else 0)
            flags.append(worst)
        return events, flags

    def _iv_hold(self, r: Reading) -> tuple[Breach | None, list[AlarmEvent]]:
        if self.profile.iv_hold is None or self.profile.iv_hold.threshold_for(r.parameter) is None:
            return None, []
        hold = evaluate_iv_hold(r, self.profile)
        key = _IV_HOLD_KEYS[r.parameter]
        if key == "iv_hold_hr":
            # HR and PR share one condition: it ends when neither is at or above the value.
            self._iv_hr_sources[r.parameter] = hold is not None
            if hold is None and any(self._iv_hr_sources.values()):
                return None, []
        if hold is None:
            return None, self.set_condition(key, None, "", r.host_time)
        return hold, self.set_condition(
            key, hold.priority, iv_hold_message(hold), r.host_time, breach=hold
        )

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
        direction: str | None = None,
    ) -> list[AlarmEvent]:
        """Raise, escalate or clear the condition ``key`` (``priority=None`` clears it).

        Used for reading breaches and for conditions that come from elsewhere: MOAA/S scores,
        the hypertensive-emergency symptom check, and technical alarms. ``direction`` defaults
        to the breach's.
        """
        if direction is None and breach is not None:
            direction = breach.direction
        cond = self._conditions.get(key)
        if priority is not None:
            if cond is None or (not cond.active and not self._latched(cond)):
                self._conditions[key] = _Condition(
                    priority, message, True, False, technical, direction
                )
                return [
                    AlarmEvent(
                        key,
                        AlarmAction.RAISED,
                        priority,
                        message,
                        when,
                        breach,
                        technical,
                        direction,
                    )
                ]
            escalated = priority > cond.priority
            cond.active, cond.message = True, message
            if escalated:
                cond.priority, cond.acknowledged = priority, False
                return [
                    AlarmEvent(
                        key,
                        AlarmAction.ESCALATED,
                        priority,
                        message,
                        when,
                        breach,
                        technical,
                        cond.direction,
                    )
                ]
            return []
        if cond is None or not cond.active:
            return []
        cond.active = False
        if self._latched(cond):
            return []
        del self._conditions[key]
        return [cond.event(key, AlarmAction.CLEARED, when)]

    def _latched(self, cond: _Condition) -> bool:
        return self.latch_high and cond.priority is Priority.HIGH and not cond.acknowledged

    def acknowledge(self, key: str, when: datetime) -> list[AlarmEvent]:
        cond = self._conditions.get(key)
        if cond is None:
            return []
        cond.acknowledged = True
        events = [cond.event(key, AlarmAction.ACKNOWLEDGED, when)]
        if not cond.active:
            del self._conditions[key]
            events.append(cond.event(key, AlarmAction.CLEARED, when))
        return events

    def acknowledge_all(self, when: datetime) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for key in list(self._conditions):
            cond = self._conditions.get(key)
            if cond is not None and not cond.acknowledged:
                events += self.acknowledge(key, when)
        return events

    def reset(self, when: datetime) -> list[AlarmEvent]:
        """ALARM RESET (IEC 60601-1-8): conditions that no longer exist (latched ones) end,
        each with RESET then CLEARED. Conditions that still exist are left as they are."""
        events: list[AlarmEvent] = []
        for key in sorted(self._conditions):
            if not self._conditions[key].active:
                events += self._end(key, when, AlarmAction.RESET, AlarmAction.CLEARED)
        return events

    def reset_key(self, key: str, when: datetime) -> list[AlarmEvent]:
        """Reset one condition even if it still exists (RESET then CLEARED), e.g. a physician
        ending the latched "hypertensive_emergency" once the escalation is documented; who may
        do so is checked by the caller. A reading that still breaches raises it again."""
        if key not in self._conditions:
            return []
        if key == "iv_hold_hr":
            self._iv_hr_sources.clear()
        return self._end(key, when, AlarmAction.RESET, AlarmAction.CLEARED)

    def clear_all(self, when: datetime) -> list[AlarmEvent]:
        """End every condition, latched or not, with CLEARED (discharge ends the session's
        flags)."""
        events: list[AlarmEvent] = []
        for key in sorted(self._conditions):
            events += self._end(key, when, AlarmAction.CLEARED)
        self._iv_hr_sources.clear()
        return events

    def _end(self, key: str, when: datetime, *actions: AlarmAction) -> list[AlarmEvent]:
        cond = self._conditions.pop(key)
        return [cond.event(key, action, when) for action in actions]

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
                c.direction,
            )
            for k, c in self._conditions.items()
        ]
        return sorted(out, key=lambda a: (-a.priority, a.key))

    def snapshot(self) -> list[ActiveAlarm]:
        """Every condition the engine holds, for :meth:`restore` after a restart."""
        return self.active()

    def restore(self, alarms: Iterable[ActiveAlarm]) -> None:
        """Seed the conditions from a recorded :meth:`snapshot` (replacing any held now),
        without emitting events: a restarted session continues from the recorded state."""
        conditions: dict[str, _Condition] = {}
        for a in alarms:
            if a.state is AlarmState.CLEARED:
                continue
            conditions[a.key] = _Condition(
                a.priority,
                a.message,
                a.state is AlarmState.ACTIVE,
                a.acknowledged,
                a.technical,
                a.direction,
            )
        self._conditions = conditions
        self._iv_hr_sources.clear()

    def worst(self) -> Priority | None:
        return max((c.priority for c in self._conditions.values()), default=None)
