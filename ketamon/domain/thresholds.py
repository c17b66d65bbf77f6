"""Threshold profiles: the limits a reading is checked against, each with its source.

Profiles are TOML documents (the default ships in ``resources/thresholds.toml``). Loading one
validates every field and reports the first problem with its location, e.g.
``thresholds.toml: limit[3] (spo2_desat): 'priority' must be one of high, medium, low``.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from typing import Any

from devices.readings import PARAMETERS

SCHEMA_VERSION = 1


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
class ThresholdProfile:
    name: str
    limits: tuple[Limit, ...]
    predose_advisory: PredoseAdvisory
    bp_rise: BpRiseRule
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

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
        new = Limit(old.id, old.parameter, low, high, old.priority, old.source, old.label)
        limits = tuple(new if lim.id == limit_id else lim for lim in self.limits)
        name = (
            self.name
            if self.name.endswith("(session override)")
            else (f"{self.name} (session override)")
        )
        return ThresholdProfile(name, limits, self.predose_advisory, self.bp_rise, self.extra)

    def limits_for(self, parameter: str) -> tuple[Limit, ...]:
        return tuple(lim for lim in self.limits if lim.parameter == parameter)

    def band(self, parameter: str) -> tuple[float | None, float | None]:
        """The innermost (least extreme) low and high limits for ``parameter``: the chart band."""
        lows = [lim.low for lim in self.limits_for(parameter) if lim.low is not None]
        highs = [lim.high for lim in self.limits_for(parameter) if lim.high is not None]
        return (max(lows) if lows else None, min(highs) if highs else None)


def _num(where: str, table: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    if key not in table:
        if required:
            raise ThresholdError(f"{where}: missing {key!r}")
        return None
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ThresholdError(f"{where}: {key!r} must be a number, got {v!r}")
    return float(v)


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
        low = _num(where, raw, "low", required=False)
        high = _num(where, raw, "high", required=False)
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
        sys_above=_num(w, pa, "sys_above") or 0.0,
        dia_above=_num(w, pa, "dia_above") or 0.0,
        source=_str(w, pa, "source"),
    )
    br = data.get("bp_rise")
    if not isinstance(br, dict):
        raise ThresholdError(f"{origin}: missing [bp_rise] table")
    w = f"{origin}: bp_rise"
    rise = BpRiseRule(
        sys_delta=_num(w, br, "sys_delta") or 0.0,
        dia_delta=_num(w, br, "dia_delta") or 0.0,
        priority=_priority(w, br),
        source=_str(w, br, "source"),
    )
    extra = {k: v for k, v in data.items() if k not in {"limit", "predose_advisory", "bp_rise"}}
    return ThresholdProfile(
        name=_str(origin, data, "name"),
        limits=tuple(limits),
        predose_advisory=advisory,
        bp_rise=rise,
        extra=extra,
    )


def parse_profile(text: str, origin: str = "profile") -> ThresholdProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdError(f"{origin}: not valid TOML: {exc}") from exc
    return profile_from_dict(data, origin)
