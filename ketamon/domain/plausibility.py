"""Plausible ranges of readings: what a garbled frame or a flipped bit would break.

``resources/plausibility.toml`` gives each parameter a range with its source. A reading outside
its range, or a diastolic at or above the systolic of the same cuff cycle, is implausible: the
acquisition pipeline stores it flagged invalid (never charted as real, never used for a flag)
and raises an artifact notice for the nurse. Pure: no Qt, no database.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from devices.readings import PARAMETERS, Quality, Reading

SCHEMA_VERSION = 1


class PlausibilityError(ValueError):
    """The plausibility table is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Range:
    parameter: str
    low: float
    high: float
    source: str

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class Artifact:
    """One implausible reading and why (for the nurse and the log)."""

    reading: Reading
    reason: str


@dataclass(frozen=True, slots=True)
class Plausibility:
    ranges: dict[str, Range]
    bp_source: str = ""

    def check(self, readings: Sequence[Reading]) -> tuple[list[Reading], list[Artifact]]:
        """The readings with implausible ones flagged ``Quality.INVALID``, and the artifacts.

        Readings already invalid are left as they are (the device said so). The NIBP values of
        one batch are one cuff cycle: one of them implausible, or the diastolic at or above the
        systolic, flags all of them.
        """
        out: list[Reading] = []
        artifacts: list[Artifact] = []
        for r in readings:
            why = self.reason(r)
            if why is not None and r.valid:
                artifacts.append(Artifact(r, why))
                r = replace(r, quality=r.quality | Quality.INVALID)
            out.append(r)
        nibp = ("nibp_sys", "nibp_dia", "nibp_mean")
        bad_cuff = [a.reason for a in artifacts if a.reading.parameter in nibp]
        if bad_cuff:  # one cuff cycle: one implausible part makes the whole of it an artifact
            for i, r in enumerate(out):
                if r.parameter in nibp and r.valid:
                    artifacts.append(Artifact(r, bad_cuff[0]))
                    out[i] = replace(r, quality=r.quality | Quality.INVALID)
        sys_i = [i for i, r in enumerate(out) if r.parameter == "nibp_sys" and r.valid]
        dia_i = [i for i, r in enumerate(out) if r.parameter == "nibp_dia" and r.valid]
        if sys_i and dia_i:
            s, d = out[sys_i[-1]], out[dia_i[-1]]
            if d.value >= s.value:
                why = f"NIBP {s.value:g}/{d.value:g}: diastolic at or above systolic"
                for i, r in enumerate(out):
                    if r.parameter in ("nibp_sys", "nibp_dia", "nibp_mean") and r.valid:
                        artifacts.append(Artifact(r, why))
                        out[i] = replace(r, quality=r.quality | Quality.INVALID)
        return out, artifacts

    def reason(self, r: Reading) -> str | None:
        """Why this single reading is implausible (None: plausible or no range known)."""
        rng = self.ranges.get(r.parameter)
        if rng is None or rng.holds(r.value):
            return None
        label = PARAMETERS[r.parameter].label if r.parameter in PARAMETERS else r.parameter
        return f"{label} {r.value:g} outside the plausible {rng.low:g}–{rng.high:g}"


def parse_plausibility(text: str, origin: str = "plausibility.toml") -> Plausibility:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlausibilityError(f"{origin}: not valid TOML: {exc}") from exc
    if data.get("schema_version") != SCHEMA_VERSION:
        raise PlausibilityError(f"{origin}: schema_version must be {SCHEMA_VERSION}")
    table = data.get("parameter")
    if not isinstance(table, dict) or not table:
        raise PlausibilityError(f"{origin}: needs [parameter.NAME] tables")
    ranges: dict[str, Range] = {}
    for name, raw in table.items():
        where = f"{origin}: parameter.{name}"
        if name not in PARAMETERS:
            raise PlausibilityError(f"{where}: unknown parameter")
        if not isinstance(raw, dict):
            raise PlausibilityError(f"{where}: must be a table")
        bounds: list[float] = []
        for key in ("low", "high"):
            v = raw.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise PlausibilityError(f"{where}: {key!r} must be a finite number, got {v!r}")
            bounds.append(float(v))
        if bounds[0] >= bounds[1]:
            raise PlausibilityError(f"{where}: 'low' must be below 'high'")
        source = raw.get("source")
        if not isinstance(source, str) or not source.strip():
            raise PlausibilityError(f"{where}: 'source' must name where the range comes from")
        ranges[name] = Range(name, bounds[0], bounds[1], source)
    bp = data.get("blood_pressure", {})
    return Plausibility(ranges, str(bp.get("source", "")) if isinstance(bp, dict) else "")
