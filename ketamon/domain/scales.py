"""Rating scales at the chair: item ids, neutral labels and scoring only.

MOAA/S level descriptions are the short published descriptors (Chernik et al., J Clin
Psychopharmacol 1990), widely reproduced with citation. CADSS wording is copyrighted
(J. D. Bremner): ketamon ships item numbers and neutral labels only, never the item text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MOAAS_SOURCE = "MOAA/S, from the OAA/S of Chernik et al., J Clin Psychopharmacol 1990"
MOAAS_LEVELS: dict[int, str] = {
    5: "Responds readily to name spoken in a normal tone (alert)",
    4: "Lethargic response to name spoken in a normal tone",
    3: "Responds only after name is called loudly and/or repeatedly",
    2: "Responds only after mild prodding or shaking",
    1: "Responds only after a painful trapezius squeeze",
    0: "No response to a painful trapezius squeeze (loss of consciousness)",
}


def moaas_priority(score: int) -> str | None:
    """Flag priority for a MOAA/S score: ≤1 high, 2–3 medium, 4–5 none (recorded only)."""
    if score not in MOAAS_LEVELS:
        raise ValueError(f"MOAA/S must be 0-5, got {score!r}")
    if score <= 1:
        return "high"
    if score <= 3:
        return "medium"
    return None


CADSS_ITEMS = 23
CADSS_SUBJECTIVE = 19  # items 1-19 are subject-rated, 20-23 observer-rated
CADSS_MAX_ITEM = 4
CADSS_MAX_TOTAL = CADSS_ITEMS * CADSS_MAX_ITEM  # 92
#: dissociation as counted in the esketamine trials: total > 4 and higher than pre-dose [R]
CADSS_DISSOCIATION_TOTAL = 4


def cadss_item_label(item: int) -> str:
    """Neutral label: item number and rater only (no licensed wording)."""
    if not 1 <= item <= CADSS_ITEMS:
        raise ValueError(f"CADSS item must be 1-{CADSS_ITEMS}, got {item}")
    kind = "subjective" if item <= CADSS_SUBJECTIVE else "observer"
    return f"Item {item} ({kind})"


@dataclass(frozen=True, slots=True)
class CadssResult:
    total: int
    change_from_predose: int | None
    dissociation: bool


def cadss_score(items: Mapping[int, int], predose_total: int | None = None) -> CadssResult:
    """Total (0–92) and change from pre-dose; every one of the 23 items must be scored 0–4."""
    missing = [i for i in range(1, CADSS_ITEMS + 1) if i not in items]
    if missing:
        raise ValueError(f"CADSS items not scored: {', '.join(map(str, missing))}")
    extra = [i for i in items if not 1 <= i <= CADSS_ITEMS]
    if extra:
        raise ValueError(f"CADSS has no item {extra[0]}")
    for i, v in items.items():
        if not 0 <= v <= CADSS_MAX_ITEM:
            raise ValueError(f"CADSS item {i}: score must be 0-4, got {v}")
    total = sum(items.values())
    change = None if predose_total is None else total - predose_total
    dissociation = total > CADSS_DISSOCIATION_TOTAL and (change is None or change > 0)
    return CadssResult(total, change, dissociation)
