"""First-visit screening of a treatment course (clinical ref §1.1 contraindications, §2).

Each item is answered yes / no / unknown with a note, by a prescriber. A contraindication
answered "yes" - or "unknown": not known to be absent - stops dosing for the whole course until
a physician overrides it with a reason. A precaution answered "yes" or "unknown" is shown on
every session of the course. The screening is done again after the site's re-screen interval.
Pure: no clock, no database.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


class Answer(enum.StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


#: the label's contraindications (clinical ref §1.1)
CONTRAINDICATIONS: tuple[tuple[str, str], ...] = (
    (
        "aneurysmal_vascular_disease",
        "Aneurysmal vascular disease (thoracic or abdominal aorta, intracranial or peripheral "
        "arteries)",
    ),
    ("arteriovenous_malformation", "Arteriovenous malformation"),
    ("intracerebral_haemorrhage", "History of intracerebral haemorrhage"),
    ("hypersensitivity", "Hypersensitivity to ketamine or esketamine"),
)
#: the precautions clinics screen for
PRECAUTIONS: tuple[tuple[str, str], ...] = (
    ("uncontrolled_hypertension", "Uncontrolled hypertension"),
    ("heart_disease", "Heart disease"),
    ("raised_icp", "Raised intracranial pressure"),
    ("active_psychosis", "Active psychosis"),
    ("substance_use_disorder", "Substance use disorder"),
    ("cystitis", "Cystitis / bladder symptoms"),
    ("pregnancy", "Pregnancy"),
    ("hepatic_impairment", "Hepatic impairment"),
)
ITEMS: dict[str, str] = dict(CONTRAINDICATIONS + PRECAUTIONS)
CONTRAINDICATION_KEYS = frozenset(k for k, _ in CONTRAINDICATIONS)
NOTE_MAX = 2000


@dataclass(frozen=True, slots=True)
class ItemAnswer:
    answer: Answer
    note: str = ""


def screening_problems(answers: Mapping[str, ItemAnswer]) -> list[str]:
    """What is wrong with a screening as entered (empty: it can be recorded)."""
    problems: list[str] = []
    missing = [label for key, label in ITEMS.items() if key not in answers]
    if missing:
        problems.append("Answer every screening item: " + "; ".join(missing))
    for key, a in answers.items():
        if key not in ITEMS:
            problems.append(f"Unknown screening item {key!r}")
            continue
        if not isinstance(a.answer, Answer):
            problems.append(f"{ITEMS[key]}: the answer is yes, no or unknown")
        if len(a.note) > NOTE_MAX:
            problems.append(f"{ITEMS[key]}: the note is longer than {NOTE_MAX} characters")
        if a.answer is Answer.YES and key in CONTRAINDICATION_KEYS and not a.note.strip():
            problems.append(f"{ITEMS[key]}: a 'yes' to a contraindication needs a note")
    return problems


@dataclass(frozen=True, slots=True)
class Screening:
    """A recorded first-visit screening (as the course record has it)."""

    entry_id: int
    at: datetime
    by: str
    answers: Mapping[str, ItemAnswer]

    @property
    def contraindications(self) -> list[str]:
        """Contraindication keys answered yes or unknown."""
        return [
            k
            for k, _ in CONTRAINDICATIONS
            if k in self.answers and self.answers[k].answer is not Answer.NO
        ]

    @property
    def precautions(self) -> list[str]:
        """Precaution keys answered yes or unknown (shown on every session)."""
        return [
            k
            for k, _ in PRECAUTIONS
            if k in self.answers and self.answers[k].answer is not Answer.NO
        ]


@dataclass(frozen=True, slots=True)
class Override:
    """A physician's override of the contraindications found at one screening."""

    entry_id: int
    at: datetime
    by: str
    screening_id: int
    items: tuple[str, ...]
    reason: str


def precaution_lines(s: Screening) -> list[str]:
    """ "Heart disease (yes: stable angina)" for each precaution to show on a session."""
    out = []
    for key in s.precautions:
        a = s.answers[key]
        note = f": {a.note}" if a.note else ""
        out.append(f"{ITEMS[key]} ({a.answer.value}{note})")
    return out


def screening_blockers(
    screening: Screening | None,
    overrides: tuple[Override, ...],
    now: datetime,
    rescreen_days: int,
) -> list[str]:
    """Why the course's screening stops dosing now (empty: it does not)."""
    if screening is None:
        return ["Screen the patient first (first-visit screening of the course, by a prescriber)"]
    reasons: list[str] = []
    due = screening.at + timedelta(days=rescreen_days)
    if now >= due:
        reasons.append(
            f"The screening of {screening.at.date().isoformat()} is older than {rescreen_days} "
            "days: screen the patient again"
        )
    found = screening.contraindications
    if found:
        covered = {
            item for o in overrides if o.screening_id == screening.entry_id for item in o.items
        }
        open_ = [k for k in found if k not in covered]
        if open_:
            names = "; ".join(f"{ITEMS[k]} ({screening.answers[k].answer.value})" for k in open_)
            reasons.append(
                f"Contraindication: {names}. Dosing is stopped unless a physician overrides it "
                "with a reason"
            )
    return reasons
