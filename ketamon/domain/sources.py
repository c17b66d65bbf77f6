"""Which measurement source feeds the chart and the thresholds: the site's ``[sources]`` setting.

A monitor may report one quantity from several sources at once: pulse rate from the oximeter and
from the cuff, respiration rate from the ECG leads (impedance) and from the capnograph, two SpO2
channels, temperatures from two sites. Every reading names its ``origin`` (and ``channel``, e.g.
the HL7 OBX-4 containment id); see devices.protocols.mdc. All of them are stored. The chart and
the alarm thresholds take one *primary* source per parameter:

* the origins of a parameter are ranked by the site's preference list (``[sources]`` in
  ``site.toml``; origins not listed rank after the listed ones, "" last);
* within one origin, channels rank by the site's channel list for that parameter, then by the
  lowest id (``1.1.1.1`` before ``1.2.1.1``);
* a reading is primary unless a better-ranked source of the same parameter was seen within
  ``hold_s`` seconds before it (so a source that stops - probe off, capnograph line removed -
  hands over to the next one after ``hold_s``, and takes over again when it returns);
* manual entries and parameters the setting does not list are always primary.

No Qt, no I/O: :class:`SourceSelector` holds the little state it needs (when each source was
last seen) and is called where readings enter the chair (ketamon.acquisition.pipeline).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devices.readings import ORIGINS, Quality, Reading

#: parameters whose source is chosen, with ketamon's default preference (shipped site.toml)
DEFAULT_PREFERENCES: dict[str, tuple[str, ...]] = {
    # ECG first: the pulse oximeter's rate is the fallback (parameter "pr", charted apart)
    "hr": ("ecg", "impedance", "unspecified"),
    "pr": ("pleth", "unspecified"),
    "spo2": ("pleth",),
    # capnography counts real breaths; impedance counts chest movement (artefact-prone in a
    # talking or moving patient); acoustic and pleth-derived RR are the fallbacks
    "rr": ("co2", "airway", "impedance", "acoustic", "pleth", "unspecified"),
    "temp": (
        *("core", "tympanic", "ear", "oral", "rectal", "axillary", "body", "skin"),
        *("gi", "unspecified"),
    ),
}
DEFAULT_HOLD_S = 30.0
#: bounds for hold_s: at least a few monitor periods, at most the link-lost medium delay x 20
HOLD_S_RANGE = (5.0, 600.0)
_CHANNEL = re.compile(r"\d{1,5}(?:\.\d{1,5}){0,7}|[A-Za-z][A-Za-z0-9_-]{0,19}")

#: where each default comes from (resources/site.toml carries the same text)
DEFAULT_SETTING_SOURCES: dict[str, str] = {
    "hr": "Design choice: ECG heart rate first (issue 16; devices.protocols.mdc origins)",
    "pr": "Design choice: pulse-oximeter rate first; cuff and invasive rates are kept apart",
    "spo2": "Design choice: pulse oximetry; channels by spo2_channels, else the lowest OBX-4",
    "rr": (
        "Design choice: capnography before impedance (impedance counts chest movement, "
        "artefact-prone while talking), then acoustic and pleth-derived RR"
    ),
    "temp": "Design choice: core-like sites before peripheral ones (skin last)",
    "hold_s": "Design choice: a better source absent for 30 s hands over to the next one",
    "spo2_channels": "Design choice: empty = the lowest containment id (OBX-4) first",
}


class SourceSettingError(ValueError):
    """The ``[sources]`` table is malformed; the message names the setting."""


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Preference order of origins per parameter, channel order, and the hand-over delay."""

    preferences: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_PREFERENCES)
    )
    channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hold_s: float = DEFAULT_HOLD_S

    @classmethod
    def default(cls) -> SourcePolicy:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded with each session as part of the site settings)."""
        return {
            **{p: list(o) for p, o in self.preferences.items()},
            **{f"{p}_channels": list(c) for p, c in self.channels.items()},
            "hold_s": self.hold_s,
        }

    def rank(self, r: Reading) -> tuple[int, int, tuple[Any, ...]]:
        """Sort key of a reading's source; lower is preferred."""
        order = self.preferences.get(r.parameter, ())
        origin_rank = order.index(r.origin) if r.origin in order else len(order) + (not r.origin)
        chans = self.channels.get(r.parameter, ())
        chan_rank = chans.index(r.channel) if r.channel in chans else len(chans)
        return origin_rank, chan_rank, _natural(r.channel)


def _natural(channel: str) -> tuple[Any, ...]:
    if channel and all(p.isdigit() for p in channel.split(".")):
        return (0, tuple(int(p) for p in channel.split(".")))
    return (1, channel)


class SourceSelector:
    """Splits readings into the primary ones (chart, thresholds) and the others (stored only)."""

    def __init__(self, policy: SourcePolicy | None = None) -> None:
        self.policy = policy or SourcePolicy.default()
        #: parameter -> source rank -> host time it was last seen
        self._seen: dict[str, dict[tuple[int, int, tuple[Any, ...]], datetime]] = {}

    def split(self, readings: Sequence[Reading]) -> tuple[list[Reading], list[Reading]]:
        prefs = self.policy.preferences
        keyed: list[tuple[Reading, tuple[int, int, tuple[Any, ...]] | None]] = []
        for r in readings:
            if r.parameter not in prefs or r.quality & Quality.MANUAL:
                keyed.append((r, None))
                continue
            key = self.policy.rank(r)
            seen = self._seen.setdefault(r.parameter, {})
            if key not in seen or seen[key] < r.host_time:
                seen[key] = r.host_time
            keyed.append((r, key))
        hold = timedelta(seconds=self.policy.hold_s)
        primary: list[Reading] = []
        other: list[Reading] = []
        for r, rank in keyed:
            if rank is None:
                primary.append(r)
                continue
            seen = self._seen[r.parameter]
            better = any(k < rank and t >= r.host_time - hold for k, t in seen.items())
            (other if better else primary).append(r)
        return primary, other

    def primary_origin(self, parameter: str, now: datetime) -> tuple[str, str] | None:
        """(origin, channel) of the source currently charted for ``parameter``, if any."""
        hold = timedelta(seconds=self.policy.hold_s)
        live = [k for k, t in self._seen.get(parameter, {}).items() if t >= now - hold]
        if not live:
            return None
        best = min(live)
        order = self.policy.preferences.get(parameter, ())
        origin = order[best[0]] if best[0] < len(order) else ""
        return origin, _channel_text(best[2])


def _channel_text(natural: tuple[Any, ...]) -> str:
    kind, value = natural
    return ".".join(str(p) for p in value) if kind == 0 else str(value)


# ---- the [sources] table of site.toml -------------------------------------------------------
def _origin_list(key: str, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise SourceSettingError(f"{where} must be a non-empty list of origins, got {value!r}")
    out: list[str] = []
    for v in value:
        if not isinstance(v, str) or v not in ORIGINS:
            raise SourceSettingError(
                f"{where} has {v!r}, which is not an origin; known: {', '.join(sorted(ORIGINS))}"
            )
        if v in out:
            raise SourceSettingError(f"{where} names {v!r} twice")
        out.append(v)
    return tuple(out)


def _channel_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SourceSettingError(f"{where} must be a list of channel ids, got {value!r}")
    for v in value:
        if not isinstance(v, str) or not _CHANNEL.fullmatch(v):
            raise SourceSettingError(
                f"{where} has {v!r}, which is not a channel id (e.g. '1.2.1.1' or 'T1')"
            )
    if len(set(value)) != len(value):
        raise SourceSettingError(f"{where} names a channel twice")
    return tuple(value)


def policy_from_table(
    table: Mapping[str, Any], origin: str = "site profile"
) -> tuple[SourcePolicy, dict[str, str]]:
    """The ``[sources]`` table → a policy and each setting's source text.

    Parameters not given keep ketamon's default order; ``hold_s`` defaults to 30 s. Every value
    given needs its ``<setting>_source`` like every other site setting.
    """
    known = {*DEFAULT_PREFERENCES, "hold_s", *(f"{p}_channels" for p in DEFAULT_PREFERENCES)}
    prefs = dict(DEFAULT_PREFERENCES)
    channels: dict[str, tuple[str, ...]] = {}
    hold_s = DEFAULT_HOLD_S
    texts: dict[str, str] = {f"sources.{k}": v for k, v in DEFAULT_SETTING_SOURCES.items()}
    for key, value in table.items():
        base = key[: -len("_source")] if key.endswith("_source") else key
        if base not in known:
            raise SourceSettingError(
                f"{origin}: sources: unknown setting {key!r}; known: {', '.join(sorted(known))}"
            )
        if key.endswith("_source"):
            if base not in table:
                raise SourceSettingError(f"{origin}: sources: {key!r} without {base!r}")
            continue
        src = table.get(f"{key}_source")
        if not isinstance(src, str) or not src.strip():
            raise SourceSettingError(
                f"{origin}: sources: missing {key + '_source'!r} (every value names its source)"
            )
        texts[f"sources.{key}"] = src
        where = f"{origin}: sources.{key}"
        if key == "hold_s":
            lo, hi = HOLD_S_RANGE
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (lo <= value <= hi)
            ):
                raise SourceSettingError(f"{where} must be within {lo:g}–{hi:g} s, got {value!r}")
            hold_s = float(value)
        elif key.endswith("_channels"):
            if chans := _channel_list(value, where):
                channels[key[: -len("_channels")]] = chans
        else:
            prefs[key] = _origin_list(key, value, where)
    return SourcePolicy(prefs, channels, hold_s), texts


def describe(policy: SourcePolicy, parameters: Iterable[str] | None = None) -> list[str]:
    """One line per parameter, for logs and the README example."""
    names = list(parameters) if parameters is not None else list(policy.preferences)
    return [f"{p}: {' > '.join(policy.preferences.get(p, ()))}" for p in names]
