"""Side-effect checklist, in label-frequency order, then the serious items (clinical ref §4)."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass


class Severity(enum.StrEnum):
    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


@dataclass(frozen=True, slots=True)
class SideEffect:
    key: str
    label: str
    serious: bool = False  # asks "serious adverse event?" (REMS SAE field)
    #: the vital-sign flag family that suggests it (ketamon.domain.alarms.alarm_family):
    #: "bp_high", "hr_high" or "resp"; a low BP or a low HR suggests nothing
    suggested_by: str | None = None


SIDE_EFFECTS: tuple[SideEffect, ...] = (
    SideEffect("dissociation", "Dissociation / feeling detached or unreal"),
    SideEffect("dizziness", "Dizziness"),
    SideEffect("nausea", "Nausea"),
    SideEffect("sedation", "Sedation / sleepiness"),
    SideEffect("vertigo", "Vertigo (spinning)"),
    SideEffect("headache", "Headache"),
    SideEffect("dysgeusia", "Taste change"),
    SideEffect("hypoesthesia", "Numbness, including oral numbness"),
    SideEffect("anxiety", "Anxiety"),
    SideEffect("lethargy", "Lethargy / lack of energy"),
    SideEffect("bp_increased", "Blood pressure increased", suggested_by="bp_high"),
    SideEffect("vomiting", "Vomiting"),
    SideEffect("paraesthesia", "Tingling, including oral tingling"),
    SideEffect("vision", "Blurred or double vision"),
    SideEffect("nasal", "Nasal discomfort / throat irritation"),
    SideEffect("feeling_drunk", "Feeling drunk"),
    SideEffect("dry_mouth", "Dry mouth"),
    SideEffect("hyperhidrosis", "Sweating"),
    SideEffect("euphoria", "Euphoric mood"),
    SideEffect("dysarthria", "Slurred speech"),
    SideEffect("tremor", "Tremor"),
    SideEffect("confusion", "Confusion / mental impairment"),
    SideEffect("urinary", "Urinary frequency / bladder symptoms"),
    SideEffect("tachycardia", "Tachycardia", suggested_by="hr_high"),
    SideEffect(
        "respiratory_depression",
        "Respiratory depression (low RR or SpO₂)",
        serious=True,
        suggested_by="resp",
    ),
    SideEffect("loss_of_consciousness", "Loss of consciousness", serious=True),
    SideEffect(
        "hypertensive_crisis",
        "Hypertensive crisis / encephalopathy symptoms",
        serious=True,
        suggested_by="bp_high",
    ),
    SideEffect("psychosis", "Psychotic symptoms", serious=True),
    SideEffect("suicidality", "Suicidal ideation or behaviour", serious=True),
    SideEffect("other", "Other (describe)"),
)
SIDE_EFFECTS_BY_KEY = {s.key: s for s in SIDE_EFFECTS}

#: symptoms asked after any BP flag (clinical ref §8 item 20)
BP_SYMPTOMS: tuple[tuple[str, str], ...] = (
    ("chest_pain", "Chest pain"),
    ("shortness_of_breath", "Shortness of breath"),
    ("severe_headache", "Sudden severe headache"),
    ("visual_change", "Visual change"),
    ("confusion", "Confusion"),
    ("seizure", "Seizure"),
    ("weakness", "Focal weakness"),
)


def suggested_side_effects(flagged_families: Collection[str]) -> list[str]:
    """Keys to pre-tick from flagged vitals: "bp_high" → BP increased, "hr_high" → tachycardia.

    Serious items are never pre-ticked (they ask "serious adverse event?"); families come from
    :func:`ketamon.domain.alarms.alarm_family`, so a low BP or a low HR suggests nothing.
    """
    return [s.key for s in SIDE_EFFECTS if s.suggested_by in flagged_families and not s.serious]
