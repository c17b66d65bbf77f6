"""The site profile: the clinic's timings and alarm-behaviour settings, each with its source.

Like threshold profiles, a site profile is a versioned TOML document (the default ships in
``resources/site.toml``; :mod:`ketamon.site_settings` reads it). Every setting sits beside a
``<setting>_source`` string saying where its value comes from. Parsing validates every field and
reports the first problem with the file and the field, e.g.
``site.toml: prompts.vitals_interval_min must be within 5–30 min, got 45``.

The domain only parses text: reading files is the caller's business.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ketamon.domain.prompts import PromptConfig
from ketamon.domain.session_clock import MIN_OBSERVATION_MIN
from ketamon.domain.sources import (
    DEFAULT_SETTING_SOURCES,
    SourcePolicy,
    SourceSettingError,
    policy_from_table,
)

SITE_SCHEMA_VERSION = 1


class SiteProfileError(ValueError):
    """A site profile is malformed; the message names the file and the field."""


_PRIMARY_SOURCES_TEXT = "The [sources] table: each entry's own source is sources.<setting>"
#: where each default comes from (the shipped resources/site.toml carries the same text)
DEFAULT_SOURCES: dict[str, str] = {
    "bp40_window_min": (
        "Spravato PI §5.6 ('about 40 minutes'); window width a design choice (clinical ref §9)"
    ),
    "vitals_interval_min": "Clinical ref §8 requirement 6 (default 15 min, allowed 5–30)",
    "vitals_grace_min": "Design choice: a periodic-vitals prompt turns overdue after 5 min",
    "scale_times_min": (
        "Clinical ref §8 requirement 7 (pre-dose, 40 min, 90 min, before discharge)"
    ),
    "scale_early_min": "Design choice: a rating up to 5 min early counts for the time point",
    "scale_grace_min": "Design choice: a scale prompt turns overdue 10 min after its time",
    "predischarge_scale_lead_min": (
        "Clinical ref §8 requirement 7 ('before discharge'); due 15 min before the minimum "
        "observation ends is a design choice"
    ),
    "min_observation_min": "Spravato PI Boxed Warning; FDA REMS (at least 2 hours)",
    "latch_high": "IEC 60601-1-8 latching convention; clinical ref §8 requirement 18",
    "audio_pause_min": "Clinical ref §8 requirement 17 (AUDIO PAUSED default 2 min, 1–5 min)",
    "link_lost_low_s": (
        "Clinical ref §8 requirement 22 (technical alarm within 10 s: 9 s plus the 1-s check)"
    ),
    "link_lost_medium_s": "Clinical ref §8 requirement 22 (loss > 30 s is medium priority)",
    "nibp_overdue_grace_min": "Clinical ref §8 requirement 22 (expected interval + 2 min)",
    **{
        key: "The clinic's REMS details (PMF, clinical ref §1.4): empty until the clinic fills it"
        for key in (
            "hcp_name",
            "hcp_phone",
            "hcp_email",
            "setting_name",
            "setting_address1",
            "setting_address2",
            "setting_city",
            "setting_state",
            "setting_zip",
        )
    },
    "rems_certified": (
        "Clinical ref §8 requirement 36 (the site's REMS certification): false until the clinic "
        "confirms it"
    ),
    "pmf_deadline_days": "Clinical ref §1.3 (PMF within 7 calendar days); §8 requirement 34",
    "pmf_warn_day": "Clinical ref §8 requirement 34 (warn at day 5, configurable)",
    "pmf_required": (
        "Clinical ref §1.3 (outpatient settings submit a PMF after every session); §1.5 "
        "(keep configurable)"
    ),
    "idle_lock_min": "Clinical ref §8 requirement 43 (automatic logoff; default 5 min)",
    "lockout_failures": "Clinical ref §8 requirement 46 (lock after 5 failed logins by default)",
    "password_min_length": "NIST SP 800-63B §5.1.1.2 (at least 8; 12 recommended for shared PCs)",
    "break_glass_min": "Clinical ref §8 requirement 44 (emergency access, time-limited)",
    "mask_names_when_locked": "Design choice: names stay readable behind the lock by default",
    "retention_years": "Clinical ref §8 requirement 47 (HIPAA documentation: 6 years)",
    "screening_required": (
        "Issue 15: off by default (sessions without a course dose as before); a patient with a "
        "course is always held to its screening"
    ),
    "rescreen_days": "Issue 15 (screening reviewed at a set interval): 90 days, a design choice",
    **{
        f"min_observation_{r}_min": (
            "Spravato PI Boxed Warning; FDA REMS (at least 2 hours), applied to every route "
            "(issue 15)"
        )
        for r in ("iv", "im", "oral")
    },
    "therapist_notes_export": (
        "Issue 15: therapist notes are kept apart from the nursing record in exports"
    ),
    **{f"sources.{k}": v for k, v in DEFAULT_SETTING_SOURCES.items()},
    "primary_sources": _PRIMARY_SOURCES_TEXT,
}


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """Site settings; the defaults are ketamon's built-in behaviour."""

    name: str = "Default site profile"
    # prompts
    bp40_window_min: tuple[float, float] = (35.0, 45.0)
    vitals_interval_min: float = 15.0
    vitals_grace_min: float = 5.0
    scale_times_min: tuple[float, ...] = (40.0, 90.0)  # plus pre-dose and before discharge
    scale_early_min: float = 5.0
    scale_grace_min: float = 10.0
    predischarge_scale_lead_min: float = 15.0  # MOAA/S and CADSS due 105 min by default
    # observation
    min_observation_min: float = MIN_OBSERVATION_MIN
    # alarms
    latch_high: bool = True
    audio_pause_min: float = 2.0
    # technical alarms
    link_lost_low_s: float = 9.0
    link_lost_medium_s: float = 30.0
    nibp_overdue_grace_min: float = 2.0
    # REMS: the Patient Monitoring Form's HCP and setting, and its deadline (clinical.md §1.3-1.4)
    hcp_name: str = ""
    hcp_phone: str = ""
    hcp_email: str = ""
    setting_name: str = ""
    setting_address1: str = ""
    setting_address2: str = ""
    setting_city: str = ""
    setting_state: str = ""
    setting_zip: str = ""
    rems_certified: bool = False
    pmf_deadline_days: int = 7  # calendar days after the session date
    pmf_warn_day: int = 5  # warn from this day after the session
    pmf_required: bool = True
    # [security] (optional table): access and retention (clinical ref §8 42-47)
    idle_lock_min: float = 5.0
    lockout_failures: int = 5
    password_min_length: int = 12
    break_glass_min: float = 60.0
    mask_names_when_locked: bool = False
    retention_years: int = 6
    # [course] (optional table): the treatment course (issue 15)
    screening_required: bool = False
    rescreen_days: int = 90
    min_observation_iv_min: float = MIN_OBSERVATION_MIN
    min_observation_im_min: float = MIN_OBSERVATION_MIN
    min_observation_oral_min: float = MIN_OBSERVATION_MIN
    therapist_notes_export: str = "separate"  # separate | omit
    # [sources]: which measurement source feeds the chart and thresholds (ketamon.domain.sources)
    primary_sources: SourcePolicy = field(default_factory=SourcePolicy.default)
    #: setting name → where its value comes from
    sources: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_SOURCES), compare=False, hash=False
    )

    @property
    def audio_pause_s(self) -> float:
        return self.audio_pause_min * 60.0

    @property
    def predischarge_scale_due_min(self) -> float:
        return self.min_observation_min - self.predischarge_scale_lead_min

    def source(self, setting: str) -> str:
        return self.sources[setting]

    def settings(self) -> dict[str, Any]:
        """Every setting's value (not the sources), as recorded with each session."""
        return {
            f: (list(v) if isinstance(v, tuple) else v.to_dict() if f == "primary_sources" else v)
            for f in self.__dataclass_fields__
            if f not in ("name", "sources")
            for v in [getattr(self, f)]
        }

    def min_observation_by_treatment(self) -> dict[str, float]:
        """The minimum observation per treatment (route); esketamine keeps min_observation_min."""
        return {
            "esketamine": self.min_observation_min,
            "iv_ketamine": self.min_observation_iv_min,
            "im_ketamine": self.min_observation_im_min,
            "oral_ketamine": self.min_observation_oral_min,
        }

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(
            bp40_window_min=self.bp40_window_min,
            vitals_interval_min=self.vitals_interval_min,
            vitals_grace_min=self.vitals_grace_min,
            scale_times_min=self.scale_times_min,
            scale_early_min=self.scale_early_min,
            scale_grace_min=self.scale_grace_min,
            predischarge_lead_min=self.predischarge_scale_lead_min,
            min_observation_min=self.min_observation_min,
        )


# ---- parsing ---------------------------------------------------------------------------------

_Check = Callable[[Any], str | None]  # an error text ("must be …") or None


def _number(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "must be a number"
    if not math.isfinite(v):
        return "must be a finite number"
    return None


def _within(lo: float, hi: float, unit: str, *, above_lo: bool = False) -> _Check:
    def check(v: Any) -> str | None:
        if (err := _number(v)) is not None:
            return err
        ok = (lo < v if above_lo else lo <= v) and v <= hi
        if ok:
            return None
        if above_lo:
            return f"must be above {lo:g} and at most {hi:g} {unit}"
        return f"must be within {lo:g}–{hi:g} {unit}"

    return check


def _numbers(v: Any) -> str | None:
    if not isinstance(v, list) or any(_number(x) is not None for x in v):
        return "must be a list of numbers"
    return None


def _window(v: Any) -> str | None:
    if _numbers(v) is not None or len(v) != 2:
        return "must be [start, end] in minutes"
    if not 0 < v[0] < v[1]:
        return "must have 0 < start < end"
    return None


def _times(v: Any) -> str | None:
    if _numbers(v) is not None:
        return "must be a list of session minutes"
    if any(x <= 0 for x in v) or any(b <= a for a, b in itertools.pairwise(v)):
        return "must be above 0 and strictly increasing"
    return None


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _text(pattern: str = "", what: str = "") -> _Check:
    """A string, empty (not yet filled in) or, when ``pattern`` is given, matching it."""

    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        if v.strip() != v or "\n" in v:
            return "must be one line without leading or trailing spaces"
        if v and pattern and re.fullmatch(pattern, v) is None:
            return f"must be empty or {what}"
        return None

    return check


def _choice(*options: str) -> _Check:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}"

    return check


def _whole(lo: int, hi: int, unit: str) -> _Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return "must be a whole number"
        return None if lo <= v <= hi else f"must be within {lo}–{hi} {unit}"

    return check


#: whole-number settings (kept as int, not float)
_WHOLE = frozenset(
    {"pmf_deadline_days", "pmf_warn_day", "lockout_failures", "password_min_length"}
    | {"retention_years", "rescreen_days"}
)


#: section → setting → check (a file must give every one, each with its source)
_SETTINGS: dict[str, dict[str, _Check]] = {
    "prompts": {
        "bp40_window_min": _window,
        "vitals_interval_min": _within(5, 30, "min"),
        "vitals_grace_min": _within(0, 30, "min", above_lo=True),
        "scale_times_min": _times,
        "scale_early_min": _within(0, 30, "min"),
        "scale_grace_min": _within(0, 60, "min", above_lo=True),
        "predischarge_scale_lead_min": _within(0, 60, "min"),
    },
    "observation": {"min_observation_min": _within(MIN_OBSERVATION_MIN, 480, "min")},
    "alarms": {"latch_high": _boolean, "audio_pause_min": _within(1, 5, "min")},
    "technical": {
        "link_lost_low_s": _within(0, 10, "s", above_lo=True),
        "link_lost_medium_s": _within(0, 30, "s", above_lo=True),
        "nibp_overdue_grace_min": _within(0, 5, "min", above_lo=True),
    },
    "rems": {
        "hcp_name": _text(),
        "hcp_phone": _text(r"[0-9+()./ -]{7,25}", "a telephone number"),
        "hcp_email": _text(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address"),
        "setting_name": _text(),
        "setting_address1": _text(),
        "setting_address2": _text(),
        "setting_city": _text(),
        "setting_state": _text(r"[A-Z]{2}", "a two-letter state code (e.g. CA)"),
        "setting_zip": _text(r"[0-9]{5}(-[0-9]{4})?", "a ZIP code (12345 or 12345-6789)"),
        "rems_certified": _boolean,
        "pmf_deadline_days": _whole(1, 30, "days"),
        "pmf_warn_day": _whole(0, 30, "days"),
        "pmf_required": _boolean,
    },
    "security": {
        "idle_lock_min": _within(1, 60, "min"),
        "lockout_failures": _whole(3, 20, "failures"),
        "password_min_length": _whole(8, 64, "characters"),
        "break_glass_min": _within(5, 480, "min"),
        "mask_names_when_locked": _boolean,
        "retention_years": _whole(6, 100, "years"),
    },
    "course": {
        "screening_required": _boolean,
        "rescreen_days": _whole(1, 730, "days"),
        "min_observation_iv_min": _within(MIN_OBSERVATION_MIN, 480, "min"),
        "min_observation_im_min": _within(MIN_OBSERVATION_MIN, 480, "min"),
        "min_observation_oral_min": _within(MIN_OBSERVATION_MIN, 480, "min"),
        "therapist_notes_export": _choice("separate", "omit"),
    },
}


def setting_sections() -> dict[str, tuple[str, ...]]:
    """Each table of a site profile and its settings, in file order (the admin tab's form)."""
    return {section: tuple(settings) for section, settings in _SETTINGS.items()}


#: tables a site profile may leave out (ketamon's defaults apply; older files stay valid)
_OPTIONAL = frozenset({"security", "course"})


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{v:g}"
    return repr(v)


def profile_from_dict(data: dict[str, Any], origin: str = "site profile") -> SiteProfile:
    version = data.get("schema_version")
    if version != SITE_SCHEMA_VERSION:
        raise SiteProfileError(
            f"{origin}: schema_version must be {SITE_SCHEMA_VERSION}, got {version!r}"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SiteProfileError(f"{origin}: 'name' must be a non-empty string, got {name!r}")
    for key in data:
        if key not in ("schema_version", "name", "sources") and key not in _SETTINGS:
            raise SiteProfileError(
                f"{origin}: unknown table or key {key!r}; known tables: {', '.join(_SETTINGS)}"
            )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, settings in _SETTINGS.items():
        table = data.get(section)
        if table is None and section in _OPTIONAL:
            sources.update({k: DEFAULT_SOURCES[k] for k in settings})
            continue
        if not isinstance(table, dict):
            raise SiteProfileError(f"{origin}: missing [{section}] table")
        known = set(settings) | {f"{k}_source" for k in settings}
        for key in table:
            if key not in known:
                raise SiteProfileError(f"{origin}: {section}: unknown setting {key!r}")
        for key, check in settings.items():
            where = f"{origin}: {section}.{key}"
            if key not in table:
                raise SiteProfileError(f"{origin}: {section}: missing {key!r}")
            value = table[key]
            if (err := check(value)) is not None:
                raise SiteProfileError(f"{where} {err}, got {_fmt(value)}")
            src = table.get(f"{key}_source")
            if not isinstance(src, str) or not src.strip():
                raise SiteProfileError(
                    f"{origin}: {section}: missing {key + '_source'!r} "
                    "(every value names its source)"
                )
            sources[key] = src
            if isinstance(value, list):
                value = tuple(float(x) for x in value)
            elif key in _WHOLE:
                value = int(value)
            elif not isinstance(value, bool | str):
                value = float(value)
            values[key] = value
    # [sources] is optional: without it ketamon's default preference applies.
    src_table = data.get("sources", {})
    if not isinstance(src_table, dict):
        raise SiteProfileError(f"{origin}: [sources] must be a table")
    try:
        policy, policy_texts = policy_from_table(src_table, origin)
    except SourceSettingError as exc:
        raise SiteProfileError(str(exc)) from exc
    sources.update(policy_texts)
    sources["primary_sources"] = _PRIMARY_SOURCES_TEXT
    profile = SiteProfile(name=name, sources=sources, primary_sources=policy, **values)
    _cross_check(profile, origin)
    return profile


def _cross_check(p: SiteProfile, origin: str) -> None:
    """Rules between settings, named by the setting that has to change."""
    obs = p.min_observation_min
    if p.bp40_window_min[1] >= obs:
        raise SiteProfileError(
            f"{origin}: prompts.bp40_window_min must end before the minimum observation "
            f"({obs:g} min), got {p.bp40_window_min[1]:g}"
        )
    if p.vitals_grace_min >= p.vitals_interval_min:
        raise SiteProfileError(
            f"{origin}: prompts.vitals_grace_min must be below the vitals interval "
            f"({p.vitals_interval_min:g} min), got {p.vitals_grace_min:g}"
        )
    if p.scale_times_min and p.scale_times_min[-1] >= obs:
        raise SiteProfileError(
            f"{origin}: prompts.scale_times_min must lie before the minimum observation "
            f"({obs:g} min), got {p.scale_times_min[-1]:g}"
        )
    if p.link_lost_medium_s <= p.link_lost_low_s:
        raise SiteProfileError(
            f"{origin}: technical.link_lost_medium_s must be above link_lost_low_s "
            f"({p.link_lost_low_s:g} s), got {p.link_lost_medium_s:g}"
        )
    if p.pmf_warn_day > p.pmf_deadline_days:
        raise SiteProfileError(
            f"{origin}: rems.pmf_warn_day must not be after the deadline "
            f"({p.pmf_deadline_days} days), got {p.pmf_warn_day}"
        )


def parse_site_profile(text: str, origin: str = "site profile") -> SiteProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteProfileError(f"{origin}: not valid TOML: {exc}") from exc
    return profile_from_dict(data, origin)
