"""Technical alarms (clinical requirement 22): the pure decisions, no Qt, no database.

The acquisition pipeline calls these once a second from its ``tick`` and turns each decision into
an alarm condition on its engine. Every function here takes the times it needs as arguments, so
the timings are tested without waiting.

Condition keys: ``tech_link`` (monitor connection lost), ``tech_nibp`` (no NIBP within the expected
interval), ``tech_spo2`` (probe off / invalid signal), ``tech_clock`` (the host clock jumped),
``tech_storage`` (readings cannot be saved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ketamon.domain.thresholds import Priority

TECH_LINK = "tech_link"
TECH_NIBP = "tech_nibp"
TECH_SPO2 = "tech_spo2"
TECH_CLOCK = "tech_clock"
TECH_STORAGE = "tech_storage"

#: a lost monitor connection is a low-priority flag after this long …
LINK_LOST_LOW_S = 10.0
#: … and a medium-priority one after this long (requirement 22: "more than 30 s")
LINK_LOST_MEDIUM_S = 30.0
#: NIBP is due every interval; it is overdue this long after that
NIBP_GRACE_MIN = 2.0
#: the SpO2 window: all readings in it invalid (and at least PROBE_OFF_MIN_SAMPLES) is probe off
PROBE_OFF_WINDOW_S = 10.0
PROBE_OFF_MIN_SAMPLES = 3
#: a continuous numeric (HR, PR, SpO2, RR) older than this is stale on screen
CONTINUOUS_MAX_AGE_S = 10.0
#: the host clock may gain this much on the monotonic clock between two ticks (NTP slewing is
#: far smaller); more is a jump forwards
CLOCK_FORWARD_TOLERANCE_S = 5.0
#: and lose this much; more is a jump backwards
CLOCK_BACKWARD_TOLERANCE_S = 1.0
#: a clock-jump flag clears by itself after this long (or when acknowledged)
CLOCK_FLAG_HOLD_S = 60.0

NIBP_PARAMETERS = ("nibp_sys", "nibp_dia", "nibp_mean")


@dataclass(frozen=True, slots=True)
class TechnicalFlag:
    """A decision: raise ``key`` at ``priority`` with ``message``, or clear it (priority None)."""

    key: str
    priority: Priority | None
    message: str = ""

    @property
    def raised(self) -> bool:
        return self.priority is not None


def _clear(key: str) -> TechnicalFlag:
    return TechnicalFlag(key, None, "")


def link_flag(
    lost_since: datetime | None,
    now: datetime,
    *,
    low_after_s: float = LINK_LOST_LOW_S,
    medium_after_s: float = LINK_LOST_MEDIUM_S,
) -> TechnicalFlag:
    """``tech_link``: low after ``low_after_s`` without a streaming link, medium after
    ``medium_after_s``; cleared while streaming (``lost_since`` None)."""
    if lost_since is None:
        return _clear(TECH_LINK)
    down = (now - lost_since).total_seconds()
    if down >= medium_after_s:
        prio = Priority.MEDIUM
    elif down >= low_after_s:
        prio = Priority.LOW
    else:
        return _clear(TECH_LINK)
    return TechnicalFlag(TECH_LINK, prio, f"{prio.marker} Monitor disconnected for {int(down)} s")


def nibp_flag(
    last_nibp: datetime | None,
    first_dose: datetime | None,
    now: datetime,
    *,
    interval_min: float,
    grace_min: float = NIBP_GRACE_MIN,
) -> TechnicalFlag:
    """``tech_nibp``: after the first dose, no NIBP for longer than the interval + grace.

    Before the first dose nothing is due. Counted from the latest cuff reading, or from the dose
    when there was none.
    """
    if first_dose is None:
        return _clear(TECH_NIBP)
    last = last_nibp if last_nibp is not None else first_dose
    since_s = (now - last).total_seconds()
    if since_s > (interval_min + grace_min) * 60:
        return TechnicalFlag(
            TECH_NIBP, Priority.LOW, f"{Priority.LOW.marker} No NIBP for {int(since_s // 60)} min"
        )
    return _clear(TECH_NIBP)


def spo2_flag(
    recent_invalid: Sequence[bool], *, min_samples: int = PROBE_OFF_MIN_SAMPLES
) -> TechnicalFlag | None:
    """``tech_spo2`` from the validity of the SpO2 readings of the last few seconds.

    All invalid (and at least ``min_samples`` of them): probe off. Any valid: cleared. None in
    the window: no decision (None) — a silent monitor is the link alarm's business.
    """
    if not recent_invalid:
        return None
    if all(recent_invalid):
        if len(recent_invalid) >= min_samples:
            return TechnicalFlag(
                TECH_SPO2,
                Priority.MEDIUM,
                f"{Priority.MEDIUM.marker} SpO₂ probe off / invalid signal",
            )
        return None
    return _clear(TECH_SPO2)


def storage_flag(error: str | None) -> TechnicalFlag:
    """``tech_storage``: raised while readings cannot be saved (``error`` says why)."""
    if error is None:
        return _clear(TECH_STORAGE)
    why = f" ({error})" if error else ""
    return TechnicalFlag(
        TECH_STORAGE,
        Priority.MEDIUM,
        f"{Priority.MEDIUM.marker} Storage error: readings are held, not yet saved{why}",
    )


class ClockWatch:
    """Notices the host (wall) clock jumping against the monotonic clock between observations.

    ``observe(wall_s, mono_s)`` once a tick; it returns a raised ``tech_clock`` flag when the wall
    clock went backwards (by more than ``backward_tolerance_s`` against the monotonic clock) or
    forwards by more than ``forward_tolerance_s`` beyond it, a clear flag ``hold_s`` after the
    last jump, and None otherwise (no change).
    """

    def __init__(
        self,
        *,
        forward_tolerance_s: float = CLOCK_FORWARD_TOLERANCE_S,
        backward_tolerance_s: float = CLOCK_BACKWARD_TOLERANCE_S,
        hold_s: float = CLOCK_FLAG_HOLD_S,
    ) -> None:
        self.forward_tolerance_s = forward_tolerance_s
        self.backward_tolerance_s = backward_tolerance_s
        self.hold_s = hold_s
        self._last: tuple[float, float] | None = None
        self._flagged_at: float | None = None  # monotonic time of the last jump still shown

    @property
    def flagged(self) -> bool:
        return self._flagged_at is not None

    def acknowledged(self) -> None:
        """The flag was acknowledged (and cleared): forget it."""
        self._flagged_at = None

    def observe(self, wall_s: float, mono_s: float) -> TechnicalFlag | None:
        last, self._last = self._last, (wall_s, mono_s)
        if last is not None:
            d_wall, d_mono = wall_s - last[0], mono_s - last[1]
            drift = d_wall - d_mono
            if d_wall < 0 or drift < -self.backward_tolerance_s:
                self._flagged_at = mono_s
                return TechnicalFlag(
                    TECH_CLOCK,
                    Priority.MEDIUM,
                    f"{Priority.MEDIUM.marker} Clock error: the computer's clock went back "
                    f"{-drift:.0f} s; check the times of the last readings",
                )
            if drift > self.forward_tolerance_s:
                self._flagged_at = mono_s
                return TechnicalFlag(
                    TECH_CLOCK,
                    Priority.MEDIUM,
                    f"{Priority.MEDIUM.marker} Clock error: the computer's clock jumped "
                    f"{drift:.0f} s ahead; check the times of the last readings",
                )
        if self._flagged_at is not None and mono_s - self._flagged_at >= self.hold_s:
            self._flagged_at = None
            return _clear(TECH_CLOCK)
        return None


def nibp_max_age_s(interval_min: float, grace_min: float = NIBP_GRACE_MIN) -> float:
    """How old a cuff reading may be before it is stale: the interval plus the grace."""
    return (interval_min + grace_min) * 60


def max_ages(
    nibp_interval_min: float = 15.0, *, continuous_s: float = CONTINUOUS_MAX_AGE_S
) -> dict[str, float]:
    """Per-parameter maximum ages: NIBP is intermittent, the rest continuous."""
    nibp = nibp_max_age_s(nibp_interval_min)
    ages = {p: continuous_s for p in ("hr", "pr", "spo2", "rr")}
    ages.update({p: nibp for p in NIBP_PARAMETERS})
    return ages


def stale_parameters(
    latest: Mapping[str, datetime],
    now: datetime,
    max_age_s: Mapping[str, float] | float,
    *,
    default_s: float = CONTINUOUS_MAX_AGE_S,
) -> set[str]:
    """The parameters whose latest valid reading is older than their maximum age.

    ``max_age_s`` is one age for all, or a mapping per parameter (others get ``default_s``).
    """
    out = set()
    for parameter, when in latest.items():
        if isinstance(max_age_s, Mapping):
            limit = max_age_s.get(parameter, default_s)
        else:
            limit = max_age_s
        if (now - when).total_seconds() > limit:
            out.add(parameter)
    return out
