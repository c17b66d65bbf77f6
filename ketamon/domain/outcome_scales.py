"""Outcome and safety scales beyond MOAA/S and CADSS (clinical ref §3, §8 items 25-27).

Scoring is code; wording and licence status come from ``resources/scales/<id>.toml`` (parsed
here from text the caller reads), so a restricted scale ships as a skeleton (item numbers and
neutral labels) and a licensed site may drop in its own text pack.

* RASS (Sessler 2002, freely reproduced): -5..+4; <= -4 high flag, -3..-2 medium (sedation),
  >= +2 medium (agitation).
* PHQ-9 (9 items 0-3, total 0-27, bands 5/10/15/20); item 9 > 0 raises a flag the clinician
  must acknowledge by recording the action taken.
* BPRS positive subscale (BPRS+, 4 items 1-7, total 4-28).
* CGI-S (1-7) and CGI-I (1-7).
* MADRS (10 items 0-6, total 0-60, bands 7/20/35): restricted - skeleton only.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

SCALE_SCHEMA_VERSION = 1


class ScaleId(enum.StrEnum):
    PHQ9 = "phq9"
    BPRS_PLUS = "bprs_plus"
    CGI_S = "cgi_s"
    CGI_I = "cgi_i"
    MADRS = "madrs"


class Licence(enum.StrEnum):
    FREE = "free"  # wording may be shipped
    PUBLIC_DOMAIN = "public_domain"
    RESTRICTED = "restricted"  # skeleton only: item numbers, neutral labels, scoring


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    """How a scale is scored (code, not data: the numbers are the scale)."""

    id: ScaleId
    name: str
    items: int
    item_min: int
    item_max: int
    #: (lower bound of the band, label), ascending
    bands: tuple[tuple[int, str], ...] = ()

    @property
    def total_range(self) -> tuple[int, int]:
        return self.items * self.item_min, self.items * self.item_max


SPECS: dict[ScaleId, ScaleSpec] = {
    ScaleId.PHQ9: ScaleSpec(
        ScaleId.PHQ9,
        "PHQ-9",
        9,
        0,
        3,
        (
            (0, "minimal"),
            (5, "mild"),
            (10, "moderate"),
            (15, "moderately severe"),
            (20, "severe"),
        ),
    ),
    ScaleId.BPRS_PLUS: ScaleSpec(ScaleId.BPRS_PLUS, "BPRS+", 4, 1, 7),
    ScaleId.CGI_S: ScaleSpec(ScaleId.CGI_S, "CGI-S", 1, 1, 7),
    ScaleId.CGI_I: ScaleSpec(ScaleId.CGI_I, "CGI-I", 1, 1, 7),
    ScaleId.MADRS: ScaleSpec(
        ScaleId.MADRS,
        "MADRS",
        10,
        0,
        6,
        ((0, "normal"), (7, "mild"), (20, "moderate"), (35, "severe")),
    ),
}

#: PHQ-9's suicidality item
PHQ9_SUICIDALITY_ITEM = 9
#: the alarm key of the PHQ-9 item-9 flag
PHQ9_FLAG_KEY = "phq9_item9"


@dataclass(frozen=True, slots=True)
class ScaleResult:
    scale: ScaleId
    items: tuple[tuple[int, int], ...]
    total: int
    band: str = ""
    #: PHQ-9 item 9 > 0
    suicidality: bool = False


def score_scale(scale: ScaleId, items: Mapping[int, int]) -> ScaleResult:
    """Score a complete rating; every item must be answered within its range."""
    spec = SPECS[scale]
    problems: list[str] = []
    missing = [i for i in range(1, spec.items + 1) if i not in items]
    if missing:
        problems.append(f"{spec.name}: answer item(s) {', '.join(map(str, missing))}")
    for i, v in sorted(items.items()):
        if not 1 <= i <= spec.items:
            problems.append(f"{spec.name} has no item {i} (items 1-{spec.items})")
        elif (
            isinstance(v, bool)
            or not isinstance(v, int)
            or not spec.item_min <= v <= spec.item_max
        ):
            problems.append(
                f"{spec.name} item {i}: score must be {spec.item_min}-{spec.item_max}, got {v!r}"
            )
    if problems:
        raise ValueError("; ".join(problems))
    total = sum(items.values())
    band = ""
    for lower, label in spec.bands:
        if total >= lower:
            band = label
    suicidal = scale is ScaleId.PHQ9 and items[PHQ9_SUICIDALITY_ITEM] > 0
    return ScaleResult(scale, tuple(sorted(items.items())), total, band, suicidal)


def phq9_band(total: int) -> str:
    """PHQ-9 severity band: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe,
    20-27 severe."""
    if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= 27:
        raise ValueError(f"PHQ-9 total must be 0-27, got {total!r}")
    return next(label for lower, label in reversed(SPECS[ScaleId.PHQ9].bands) if total >= lower)


def rass_priority(score: int) -> str | None:
    """RASS flag: <= -4 high; -3..-2 medium (sedation); >= +2 medium (agitation)."""
    if isinstance(score, bool) or not isinstance(score, int) or not -5 <= score <= 4:
        raise ValueError(f"RASS must be -5 to +4, got {score!r}")
    if score <= -4:
        return "high"
    if score <= -2 or score >= 2:
        return "medium"
    return None


# ---- the text packs in resources/scales -----------------------------------------------------


class ScalePackError(ValueError):
    """A scale pack is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ScalePack:
    """A scale's licence status and the text ketamon may show for it."""

    scale: ScaleId
    licence: Licence
    licence_note: str
    source: str
    #: item number -> label (the full wording only for free / public-domain scales)
    item_labels: Mapping[int, str]
    #: score -> answer label (shared by every item)
    answers: Mapping[int, str]
    stem: str = ""

    def label(self, item: int) -> str:
        return self.item_labels.get(item, f"Item {item}")


def parse_scale_pack(text: str, origin: str) -> ScalePack:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScalePackError(f"{origin}: not valid TOML: {exc}") from exc
    if data.get("schema_version") != SCALE_SCHEMA_VERSION:
        raise ScalePackError(
            f"{origin}: schema_version must be {SCALE_SCHEMA_VERSION}, "
            f"got {data.get('schema_version')!r}"
        )
    try:
        scale = ScaleId(str(data.get("scale")))
    except ValueError as exc:
        raise ScalePackError(f"{origin}: unknown scale {data.get('scale')!r}") from exc
    try:
        licence = Licence(str(data.get("licence")))
    except ValueError as exc:
        raise ScalePackError(
            f"{origin}: licence must be one of {', '.join(Licence)}, got {data.get('licence')!r}"
        ) from exc
    for key in ("licence_note", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ScalePackError(f"{origin}: '{key}' must be a non-empty string")
    spec = SPECS[scale]
    items = data.get("items", {})
    answers = data.get("answers", {})
    if not isinstance(items, dict) or not isinstance(answers, dict):
        raise ScalePackError(f"{origin}: [items] and [answers] must be tables")
    labels: dict[int, str] = {}
    for k, v in items.items():
        if not k.isdigit() or not 1 <= int(k) <= spec.items or not isinstance(v, str):
            raise ScalePackError(f"{origin}: items.{k}: item 1-{spec.items} with a text label")
        labels[int(k)] = v
    if set(labels) != set(range(1, spec.items + 1)):
        raise ScalePackError(f"{origin}: [items] must label items 1-{spec.items}")
    ans: dict[int, str] = {}
    for k, v in answers.items():
        try:
            n = int(k)
        except ValueError as exc:
            raise ScalePackError(f"{origin}: answers.{k}: a score, got {k!r}") from exc
        if not spec.item_min <= n <= spec.item_max or not isinstance(v, str):
            raise ScalePackError(
                f"{origin}: answers.{k}: score {spec.item_min}-{spec.item_max} with a label"
            )
        ans[n] = v
    if licence is Licence.RESTRICTED:
        # a restricted scale ships neutral labels only: "Item N" or "Item N (domain)"
        for n, label in labels.items():
            if not label.startswith(f"Item {n}") or len(label) > 40:
                raise ScalePackError(
                    f"{origin}: items.{n}: a restricted scale ships neutral labels only "
                    f"('Item {n}'), got {label!r}"
                )
        if data.get("stem"):
            raise ScalePackError(f"{origin}: a restricted scale ships no stem text")
    return ScalePack(
        scale=scale,
        licence=licence,
        licence_note=str(data["licence_note"]),
        source=str(data["source"]),
        item_labels=labels,
        answers=ans,
        stem=str(data.get("stem", "")),
    )
