"""A patient's treatment course: its plan, its first-visit screening and the schedule.

Like a session, a course is an append-only list of entries (opened, screened, overridden,
closed) and its state is a pure fold over them. The schedule sets the course's sessions against
its plan (induction sessions at so many a week, then maintenance every so many days) and shows
each planned session as done, late, missed, due or upcoming. Pure: no clock, no database.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from ketamon.domain.screening import Answer, ItemAnswer, Override, Screening


class CourseEntryKind(enum.StrEnum):
    OPENED = "opened"
    SCREENED = "screened"
    OVERRIDDEN = "overridden"  # a physician overrides the contraindications of a screening
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class CourseEntry:
    id: int
    course_id: int
    kind: CourseEntryKind
    at: datetime
    author_id: int | None
    author: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CoursePlan:
    indication: str
    treatment: str  # a session Treatment value (esketamine, iv_ketamine, im_ketamine, ...)
    start: date
    induction_sessions: int = 8
    induction_per_week: float = 2.0
    maintenance_sessions: int = 4
    maintenance_interval_days: int = 7

    def to_json(self) -> dict[str, Any]:
        return {
            "indication": self.indication,
            "treatment": self.treatment,
            "start": self.start.isoformat(),
            "induction_sessions": self.induction_sessions,
            "induction_per_week": self.induction_per_week,
            "maintenance_sessions": self.maintenance_sessions,
            "maintenance_interval_days": self.maintenance_interval_days,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CoursePlan:
        return cls(
            indication=str(d["indication"]),
            treatment=str(d["treatment"]),
            start=date.fromisoformat(str(d["start"])),
            induction_sessions=int(d["induction_sessions"]),
            induction_per_week=float(d["induction_per_week"]),
            maintenance_sessions=int(d["maintenance_sessions"]),
            maintenance_interval_days=int(d["maintenance_interval_days"]),
        )


def plan_problems(p: CoursePlan) -> list[str]:
    out: list[str] = []
    if not p.indication.strip():
        out.append("Enter the indication")
    elif len(p.indication) > 200:
        out.append("The indication is longer than 200 characters")
    if not 0 <= p.induction_sessions <= 52:
        out.append(f"Induction sessions must be 0-52, got {p.induction_sessions}")
    if not 0.25 <= p.induction_per_week <= 7:
        out.append(f"Induction frequency must be 0.25-7 a week, got {p.induction_per_week:g}")
    if not 0 <= p.maintenance_sessions <= 200:
        out.append(f"Maintenance sessions must be 0-200, got {p.maintenance_sessions}")
    if not 1 <= p.maintenance_interval_days <= 90:
        out.append(
            f"The maintenance interval must be 1-90 days, got {p.maintenance_interval_days}"
        )
    if p.induction_sessions + p.maintenance_sessions == 0:
        out.append("The plan has no sessions")
    return out


@dataclass(frozen=True, slots=True)
class CourseState:
    course_id: int
    patient_id: int
    patient_mrn: str
    plan: CoursePlan
    opened: datetime
    opened_by: str
    screenings: tuple[Screening, ...] = ()
    overrides: tuple[Override, ...] = ()
    closed: datetime | None = None
    closed_reason: str = ""

    @property
    def screening(self) -> Screening | None:
        """The latest screening (a re-screen replaces the one before)."""
        return self.screenings[-1] if self.screenings else None

    @property
    def active(self) -> bool:
        return self.closed is None


class CourseRecordError(ValueError):
    pass


def apply_course(state: CourseState | None, e: CourseEntry) -> CourseState:
    d = e.data
    if state is None:
        if e.kind is not CourseEntryKind.OPENED:
            raise CourseRecordError(f"course entry {e.id}: a course starts with 'opened'")
        return CourseState(
            course_id=e.course_id,
            patient_id=int(d["patient_id"]),
            patient_mrn=str(d.get("patient_mrn", "")),
            plan=CoursePlan.from_json(d["plan"]),
            opened=e.at,
            opened_by=e.author,
        )
    if e.kind is CourseEntryKind.OPENED:
        raise CourseRecordError(f"course entry {e.id}: the course is already open")
    if e.kind is CourseEntryKind.SCREENED:
        answers = {
            str(k): ItemAnswer(Answer(str(v["answer"])), str(v.get("note", "")))
            for k, v in d["answers"].items()
        }
        s = Screening(e.id, e.at, e.author, answers)
        return replace(state, screenings=(*state.screenings, s))
    if e.kind is CourseEntryKind.OVERRIDDEN:
        o = Override(
            e.id,
            e.at,
            e.author,
            int(d["screening_id"]),
            tuple(str(x) for x in d["items"]),
            str(d["reason"]),
        )
        return replace(state, overrides=(*state.overrides, o))
    if e.kind is CourseEntryKind.CLOSED:
        return replace(state, closed=e.at, closed_reason=str(d.get("reason", "")))
    raise CourseRecordError(f"course entry {e.id}: unknown kind {e.kind!r}")


def fold_course(entries: Iterable[CourseEntry]) -> CourseState | None:
    state: CourseState | None = None
    for e in entries:
        state = apply_course(state, e)
    return state


# ---- the schedule against the plan ------------------------------------------------------------


class SlotStatus(enum.StrEnum):
    DONE = "done"
    LATE = "late"
    MISSED = "missed"
    DUE = "due"
    UPCOMING = "upcoming"


@dataclass(frozen=True, slots=True)
class Slot:
    number: int  # 1-based
    phase: str  # induction | maintenance
    planned: date
    status: SlotStatus
    session_id: int | None = None
    held: date | None = None

    @property
    def days_late(self) -> int:
        return 0 if self.held is None else max(0, (self.held - self.planned).days)


def planned_dates(plan: CoursePlan) -> list[tuple[str, date]]:
    """Each planned session: induction at ``induction_per_week`` (day offsets rounded down:
    twice a week is days 0, 3, 7, 10, ...), then maintenance every ``maintenance_interval_days``
    after the last induction session."""
    out: list[tuple[str, date]] = []
    step = 7.0 / plan.induction_per_week
    for i in range(plan.induction_sessions):
        out.append(("induction", plan.start + timedelta(days=int(i * step + 1e-9))))
    last = out[-1][1] if out else plan.start - timedelta(days=plan.maintenance_interval_days)
    for j in range(1, plan.maintenance_sessions + 1):
        out.append(("maintenance", last + timedelta(days=j * plan.maintenance_interval_days)))
    return out


def schedule(
    plan: CoursePlan,
    sessions: Sequence[tuple[int, date]],
    today: date,
    *,
    late_after_days: int = 1,
) -> tuple[list[Slot], list[tuple[int, date]]]:
    """The plan's slots with the sessions held, and the sessions outside any slot.

    A slot's window runs from a day before its planned date to a day before the next slot's; the
    first session in it fills the slot (late when more than ``late_after_days`` after the planned
    date). A slot whose window has passed with no session is missed."""
    planned = planned_dates(plan)
    pending = sorted(sessions, key=lambda s: (s[1], s[0]))
    used: set[int] = set()
    slots: list[Slot] = []
    for n, (phase, day) in enumerate(planned):
        start = day - timedelta(days=1)
        if n + 1 < len(planned):
            end = planned[n + 1][1] - timedelta(days=1)
        else:
            gap = plan.maintenance_interval_days if phase == "maintenance" else 7
            end = day + timedelta(days=max(gap - 1, 1))
        held = next(((sid, d) for sid, d in pending if sid not in used and start <= d < end), None)
        if held is not None:
            used.add(held[0])
            late = (held[1] - day).days > late_after_days
            status = SlotStatus.LATE if late else SlotStatus.DONE
            slots.append(Slot(n + 1, phase, day, status, held[0], held[1]))
        elif today >= end:
            slots.append(Slot(n + 1, phase, day, SlotStatus.MISSED))
        elif today >= start:
            slots.append(Slot(n + 1, phase, day, SlotStatus.DUE))
        else:
            slots.append(Slot(n + 1, phase, day, SlotStatus.UPCOMING))
    extra = [s for s in pending if s[0] not in used]
    return slots, extra


# ---- the esketamine label's dose schedule -------------------------------------------------------

#: Spravato label (TRD): induction weeks 1-4 twice weekly, day 1 56 mg then 56 or 84 mg;
#: maintenance weeks 5-8 weekly, week 9 on every 2 weeks or weekly, 56 or 84 mg.
ESKETAMINE_FIRST_DOSE_MG = 56.0


def esketamine_dose_note(index: int, dose_mg: float | None, previous_mg: float | None) -> str:
    """The session's dose against the label: '' when in line, else what differs; a step from
    56 to 84 mg is named."""
    if dose_mg is None:
        return ""
    if index == 0 and dose_mg != ESKETAMINE_FIRST_DOSE_MG:
        return f"Label: day 1 is 56 mg (given {dose_mg:g} mg)"
    if previous_mg is not None and dose_mg > previous_mg:
        return f"Dose step {previous_mg:g} → {dose_mg:g} mg"
    if previous_mg is not None and dose_mg < previous_mg:
        return f"Dose reduced {previous_mg:g} → {dose_mg:g} mg"
    return ""
