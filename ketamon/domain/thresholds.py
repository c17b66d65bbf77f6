"""Threshold profiles: the limits a reading is checked against, each with its source.

Profiles are TOML documents (the default ships in ``resources/thresholds.toml``). Loading one
validates every field and reports the first problem with its location, e.g.
``thresholds.toml: limit[3] (spo2_desat): 'priority' must be one of high, medium, low``.
"""

from __future__ import annotations

import enum
import math
import tomllib
from dataclasses import dataclass, field
from typing import Any

from devices.readings import PARAMETERS

SCHEMA_VERSION = 1
#: the largest BP-rise delta a profile may set (mmHg)
MAX_BP_RISE_DELTA = 100.0


class Priority(enum.IntEnum):
    """IEC 60601-1-8 alarm priorities; the integer orders them (higher is more urgent)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def marker(self) -> str:
        return {Priority.HIGH: "***", Priority.MEDIUM: "**", Priority.LOW: "*"}[self]

    @property
    def label(self) -> str:
        return self.name.lower()


class ThresholdError(ValueError):
    """A threshold profile is malformed; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Limit:
    id: str
    parameter: str
    low: float | None
    high: float | None
    priority: Priority
    source: str
    label: str = ""

    def breached_by(self, value: float) -> str | None:
        """ "low" or "high" when the value is outside this limit, else None."""
        if self.low is not None and value < self.low:
            return "low"
        if self.high is not None and value > self.high:
            return "high"
        return None


@dataclass(frozen=True, slots=True)
class PredoseAdvisory:
    sys_above: float
    dia_above: float
    source: str

    def applies(self, sys: float, dia: float) -> bool:
        return sys > self.sys_above or dia > self.dia_above


@dataclass(frozen=True, slots=True)
class BpRiseRule:
    sys_delta: float
    dia_delta: float
    priority: Priority
    source: str


@dataclass(frozen=True, slots=True)
class IvHoldRule:
    """IV ketamine stop/hold consideration (site protocol): a reading *at or above* a value."""

    sys_at_or_above: float | None
    dia_at_or_above: float | None
    hr_at_or_above: float | None
    priority: Priority
    source: str

    def threshold_for(self, parameter: str) -> float | None:
        """The hold value a reading of ``parameter`` is compared with (HR and PR share one)."""
        return {
            "nibp_sys": self.sys_at_or_above,
            "nibp_dia": self.dia_at_or_above,
            "hr": self.hr_at_or_above,
            "pr": self.hr_at_or_above,
        }.get(parameter)


@dataclass(frozen=True, slots=True)
class ThresholdProfile:
    name: str
    limits: tuple[Limit, ...]
    predose_advisory: PredoseAdvisory
    bp_rise: BpRiseRule
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the optional [iv_hold] table; evaluated only while an IV infusion runs
    iv_hold: IvHoldRule | None = None

    def with_limit(self, limit_id: str, low: float | None, high: float | None) -> ThresholdProfile:
        """A copy with one limit's bounds changed (a per-session override)."""
        found = [lim for lim in self.limits if lim.id == limit_id]
        if not found:
            raise ThresholdError(f"no limit {limit_id!r} in profile {self.name!r}")
        old = found[0]
        if (old.low is None) != (low is None) or (old.high is None) != (high is None):
            raise ThresholdError(f"{limit_id}: only the existing bounds can be changed")
        if low is not None and high is not None and low >= high:
            raise ThresholdError(f"{limit_id}: 'low' ({low:g}) must be below 'high' ({high:g})")
        for key, value in (("low", low), ("high", high)):
            if value is not None and not math.isfinite(value):
                raise ThresholdError(f"{limit_id}: {key!r} must be a finite number, got {value!r}")
            _in_range(limit_id, key, value, old.parameter)
        new = Limit(old.id, old.parameter, low, high, old.priority, old.source, old.label)
        limits = tuple(new if lim.id == limit_id else lim for lim in self.limits)
        name = (
            self.name
            if self.name.endswith("(session override)")
            else (f"{self.name} (session override)")
        )
        return ThresholdProfile(
            name, limits, self.predose_advisory, self.bp_rise, self.extra, self.iv_hold
        )

    def limits_for(self, parameter: str) -> tuple[Limit, ...]:
        return tuple(lim for lim in self.limits if lim.parameter == parameter)

    def band(self, parameter: str) -> tuple[float | None, float | None]:
        """The innermost (least extreme) low and high limits for ``parameter``: the chart band."""
        lows = [lim.low for lim in self.limits_for(parameter) if lim.low is not None]
        highs = [lim.high for lim in self.limits_for(parameter) if lim.high is not None]
        return (max(lows) if lows else None, min(highs) if highs else None)


#: physiologically possible range and display unit per parameter; a limit outside it is a typo
PHYSIOLOGICAL_RANGE: dict[str, tuple[float, float, str]] = {
    "nibp_sys": (0.0, 300.0, "mmHg"),
    "nibp_dia": (0.0, 300.0, "mmHg"),
    "nibp_mean": (0.0, 300.0, "mmHg"),
    "hr": (0.0, 300.0, "/min"),
    "pr": (0.0, 300.0, "/min"),
    "spo2": (0.0, 100.0, "%"),
    "rr": (0.0, 150.0, "/min"),
    "etco2": (0.0, 150.0, "mmHg"),
    "temp": (0.0, 45.0, "°C"),
    "pi": (0.0, 100.0, "%"),
    "sphb": (0.0, 30.0, "g/dL"),
    "spmet": (0.0, 100.0, "%"),
    "pvi": (0.0, 100.0, "%"),
}


def _num(where: str, table: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    if key not in table:
        if required:
            raise ThresholdError(f"{where}: missing {key!r}")
        return None
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ThresholdError(f"{where}: {key!r} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ThresholdError(f"{where}: {key!r} must be a finite number, got {v!r}")
    return float(v)


def _in_range(where: str, key: str, value: float | None, parameter: str) -> float | None:
    """``value`` checked against the physiologically possible range of ``parameter``."""
    if value is None:
        return None
    lo, hi, unit = PHYSIOLOGICAL_RANGE.get(parameter, (0.0, math.inf, ""))
    if not lo <= value <= hi:
        span = f"{lo:g}–{hi:g} {unit}" if math.isfinite(hi) else f"at least {lo:g}"
        raise ThresholdError(f"{where}: {key!r} must be within {span}, got {value:g}")
    return value


def _positive_in_range(
    where: str, table: dict[str, Any], key: str, parameter: str, *, required: bool = True
) -> float | None:
    value = _in_range(where, key, _num(where, table, key, required=required), parameter)
    if value is not None and value <= 0:
        raise ThresholdError(f"{where}: {key!r} must be above 0, got {value:g}")
    return value


def _str(where: str, table: dict[str, Any], key: str, default: str | None = None) -> str:
    v = table.get(key, default)
    if v is None:
        raise ThresholdError(f"{where}: missing {key!r}")
    if not isinstance(v, str) or (default is None and not v.strip()):
        raise ThresholdError(f"{where}: {key!r} must be a non-empty string, got {v!r}")
    return v


def _priority(where: str, table: dict[str, Any]) -> Priority:
    raw = table.get("priority")
    try:
        return Priority[str(raw).upper()]
    except KeyError:
        raise ThresholdError(
            f"{where}: 'priority' must be one of high, medium, low, got {raw!r}"
        ) from None


def profile_from_dict(data: dict[str, Any], origin: str = "profile") -> ThresholdProfile:
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ThresholdError(f"{origin}: schema_version must be {SCHEMA_VERSION}, got {version!r}")
    limits: list[Limit] = []
    raw_limits = data.get("limit", [])
    if not isinstance(raw_limits, list) or not raw_limits:
        raise ThresholdError(f"{origin}: needs at least one [[limit]] table")
    seen: set[str] = set()
    for i, raw in enumerate(raw_limits):
        where = f"{origin}: limit[{i}]"
        if not isinstance(raw, dict):
            raise ThresholdError(f"{where}: must be a table")
        lid = _str(where, raw, "id")
        where = f"{where} ({lid})"
        if lid in seen:
            raise ThresholdError(f"{where}: duplicate id")
        seen.add(lid)
        param = _str(where, raw, "parameter")
        if param not in PARAMETERS:
            raise ThresholdError(
                f"{where}: unknown parameter {param!r}; known: {', '.join(PARAMETERS)}"
            )
        low = _in_range(where, "low", _num(where, raw, "low", required=False), param)
        high = _in_range(where, "high", _num(where, raw, "high", required=False), param)
        if low is None and high is None:
            raise ThresholdError(f"{where}: needs 'low', 'high' or both")
        if low is not None and high is not None and low >= high:
            raise ThresholdError(f"{where}: 'low' ({low:g}) must be below 'high' ({high:g})")
        limits.append(
            Limit(
                id=lid,
                parameter=param,
                low=low,
                high=high,
                priority=_priority(where, raw),
                source=_str(where, raw, "source"),
                label=_str(where, raw, "label", default=PARAMETERS[param].label),
            )
        )
    pa = data.get("predose_advisory")
    if not isinstance(pa, dict):
        raise ThresholdError(f"{origin}: missing [predose_advisory] table")
    w = f"{origin}: predose_advisory"
    advisory = PredoseAdvisory(
        sys_above=_positive_in_range(w, pa, "sys_above", "nibp_sys") or 0.0,
        dia_above=_positive_in_range(w, pa, "dia_above", "nibp_dia") or 0.0,
        source=_str(w, pa, "source"),
    )
    br = data.get("bp_rise")
    if not isinstance(br, dict):
        raise ThresholdError(f"{origin}: missing [bp_rise] table")
    w = f"{origin}: bp_rise"
    deltas: list[float] = []
    for key in ("sys_delta", "dia_delta"):
        d = _num(w, br, key) or 0.0
        if not 0 < d <= MAX_BP_RISE_DELTA:
            raise ThresholdError(
                f"{w}: {key!r} must be above 0 and at most {MAX_BP_RISE_DELTA:g} mmHg, got {d:g}"
            )
        deltas.append(d)
    rise = BpRiseRule(
        sys_delta=deltas[0],
        dia_delta=deltas[1],
        priority=_priority(w, br),
        source=_str(w, br, "source"),
    )
    extra = {
        k: v
        for k, v in data.items()
        if k not in {"limit", "predose_advisory", "bp_rise", "iv_hold"}
    }
    return ThresholdProfile(
        name=_str(origin, data, "name"),
        limits=tuple(limits),
        predose_advisory=advisory,
        bp_rise=rise,
        extra=extra,
        iv_hold=_iv_hold(origin, data),
    )


def _iv_hold(origin: str, data: dict[str, Any]) -> IvHoldRule | None:
    """The optional [iv_hold] table: at least one of the three values, a priority, a source."""
    raw = data.get("iv_hold")
    if raw is None:
        return None
    w = f"{origin}: iv_hold"
    if not isinstance(raw, dict):
        raise ThresholdError(f"{w}: must be a table")
    values = {
        key: _positive_in_range(w, raw, key, parameter, required=False)
        for key, parameter in (
            ("sys_at_or_above", "nibp_sys"),
            ("dia_at_or_above", "nibp_dia"),
            ("hr_at_or_above", "hr"),
        )
    }
    if all(v is None for v in values.values()):
        raise ThresholdError(
            f"{w}: needs 'sys_at_or_above', 'dia_at_or_above', 'hr_at_or_above' or several"
        )
    return IvHoldRule(
        sys_at_or_above=values["sys_at_or_above"],
        dia_at_or_above=values["dia_at_or_above"],
        hr_at_or_above=values["hr_at_or_above"],
        priority=_priority(w, raw),
        source=_str(w, raw, "source"),
    )


def parse_profile(text: str, origin: str = "profile") -> ThresholdProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdError(f"{origin}: not valid TOML: {exc}") from exc
    return profile_from_dict(data, origin)
