"""Treatment courses in the database: :class:`SqlCourseRepository` implements the core's
:class:`~ketamon.core.course.CourseRepository`.

Each course entry is one ``course_entry`` row (append-only) and one audit entry (entity
``course_entry``), and ``treatment_course`` is kept as their projection (plan, when screened,
the contraindications still open, the precautions) in the same transaction. Also the reads the
course view and the dose report need: a patient's sessions folded, and the entries of a day.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devices.readings import Quality
from ketamon.core.course import CourseDraft
from ketamon.domain.course import (
    CourseEntry,
    CourseEntryKind,
    CoursePlan,
    apply_course,
    fold_course,
)
from ketamon.domain.course_view import CourseView, course_view
from ketamon.domain.record import EntryKind, SessionEntry, SessionState, fold
from ketamon.domain.roles import Actor
from ketamon.domain.screening import ITEMS
from ketamon.storage.audit import append_entry, set_user
from ketamon.storage.models import (
    AuditAction,
    CourseEntryRow,
    SessionEntryRow,
    TreatmentCourse,
    TreatmentSession,
    User,
    VitalReading,
)
from ketamon.storage.records import RecordError
from ketamon.storage.repository import _entries
from ketamon.storage.writer import DatabaseWriter

T = TypeVar("T")
ENTITY = "course_entry"
#: the kinds the dose report reads
DOSE_KINDS = (
    EntryKind.DEVICE,
    EntryKind.INFUSION_STARTED,
    EntryKind.INFUSION_STOPPED,
    EntryKind.ADMINISTERED,
    EntryKind.WASTE,
)


class SqlCourseRepository:
    def __init__(
        self, engine: Engine, writer: DatabaseWriter | None = None, *, timeout_s: float = 10.0
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.timeout_s = timeout_s

    def _write(self, op: Callable[[Session], T], actor: Actor) -> T:
        if self.writer is not None:
            return self.writer.call(op, self.timeout_s, user_id=actor.id)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            set_user(s, actor.id)
            return op(s)

    @staticmethod
    def _record(s: Session, tc: TreatmentCourse, d: CourseDraft, actor: Actor) -> CourseEntry:
        text = json.dumps(dict(d.data), ensure_ascii=False)
        stored = json.loads(text)
        row = CourseEntryRow(
            course_id=tc.id, kind=d.kind.value, at=d.at, author_id=actor.id, data=text
        )
        s.add(row)
        s.flush()
        append_entry(s, action=AuditAction.CREATE, entity=ENTITY, entity_id=row.id, new=stored)
        entry = CourseEntry(
            row.id, tc.id, d.kind, d.at.astimezone(UTC), actor.id, actor.full_name, stored
        )
        return entry

    @staticmethod
    def _project(s: Session, tc: TreatmentCourse) -> None:
        """Bring the treatment_course row in line with the course's record."""
        state = fold_course(_course_entries(s, tc.id))
        assert state is not None
        sc = state.screening
        covered = {
            i for o in state.overrides if sc and o.screening_id == sc.entry_id for i in o.items
        }
        open_ = [k for k in (sc.contraindications if sc else []) if k not in covered]
        tc.screened_at = sc.at if sc else None
        tc.contraindications_open = ",".join(open_)
        tc.precautions = "; ".join(ITEMS[k] for k in (sc.precautions if sc else []))
        tc.closed_at = state.closed
        s.flush()

    def create_course(self, patient_id: int, draft: CourseDraft, actor: Actor) -> CourseEntry:
        if draft.kind is not CourseEntryKind.OPENED:
            raise RecordError(f"a course starts with 'opened', not {draft.kind.value}")
        plan = CoursePlan.from_json(draft.data["plan"])

        def op(s: Session) -> CourseEntry:
            tc = TreatmentCourse(
                patient_id=patient_id,
                indication=plan.indication,
                treatment=plan.treatment,
                start_date=plan.start,
                induction_sessions=plan.induction_sessions,
                induction_per_week=plan.induction_per_week,
                maintenance_sessions=plan.maintenance_sessions,
                maintenance_interval_days=plan.maintenance_interval_days,
                opened_at=draft.at,
                opened_by_id=actor.id,
                contraindications_open="",
                precautions="",
            )
            s.add(tc)
            s.flush()
            return self._record(s, tc, draft, actor)

        return self._write(op, actor)

    def append_course(
        self, course_id: int, drafts: Sequence[CourseDraft], actor: Actor
    ) -> list[CourseEntry]:
        def op(s: Session) -> list[CourseEntry]:
            tc = s.get(TreatmentCourse, course_id, with_for_update={"key_share": True})
            if tc is None:
                raise RecordError(f"no treatment course {course_id}")
            out = [self._record(s, tc, d, actor) for d in drafts]
            self._project(s, tc)
            return out

        return self._write(op, actor) if drafts else []

    def load_course(self, course_id: int) -> list[CourseEntry]:
        with Session(self.engine) as s:
            return _course_entries(s, course_id)

    def active_course_id(self, patient_id: int) -> int | None:
        with Session(self.engine) as s:
            return s.scalar(
                select(TreatmentCourse.id)
                .where(
                    TreatmentCourse.patient_id == patient_id, TreatmentCourse.closed_at.is_(None)
                )
                .order_by(TreatmentCourse.id.desc())
                .limit(1)
            )

    def course_view(self, course_id: int, today: date) -> CourseView:
        return load_course_view(self.engine, course_id, today)

    def course_ids(self, patient_id: int) -> list[int]:
        with Session(self.engine) as s:
            return list(
                s.scalars(
                    select(TreatmentCourse.id)
                    .where(TreatmentCourse.patient_id == patient_id)
                    .order_by(TreatmentCourse.id)
                )
            )


def _course_entries(s: Session, course_id: int) -> list[CourseEntry]:
    q = (
        select(CourseEntryRow, User.full_name)
        .join(User, User.id == CourseEntryRow.author_id)
        .where(CourseEntryRow.course_id == course_id)
        .order_by(CourseEntryRow.id)
    )
    return [
        CourseEntry(
            row.id,
            row.course_id,
            CourseEntryKind(row.kind),
            row.at,
            row.author_id,
            name,
            json.loads(row.data),
        )
        for row, name in s.execute(q)
    ]


def patient_sessions(
    engine: Engine, patient_id: int, since: datetime | None = None
) -> list[tuple[tuple[SessionEntry, ...], SessionState]]:
    """The patient's sessions (record and folded state), oldest first."""
    with Session(engine) as s:
        q = select(TreatmentSession.id).where(TreatmentSession.patient_id == patient_id)
        if since is not None:
            q = q.where(TreatmentSession.started_at >= since)
        ids = list(s.scalars(q.order_by(TreatmentSession.started_at, TreatmentSession.id)))
        by: dict[int, list[SessionEntry]] = {i: [] for i in ids}
        if ids:
            for e in _entries(s, SessionEntryRow.session_id.in_(ids)):
                by[e.session_id].append(e)
    out = []
    for sid in ids:
        entries = tuple(by[sid])
        state = fold(entries)
        if state is not None:
            out.append((entries, state))
    return out


def dose_entries(engine: Engine, day: date, tz: tzinfo | None = None) -> list[SessionEntry]:
    """The dose and waste entries of sessions that had one on ``day`` (local time in ``tz``),
    with a margin so an infusion started the day before and stopped on it pairs up."""
    zone = tz or datetime.now().astimezone().tzinfo
    start = datetime.combine(day, time(0), zone) - timedelta(days=1)
    end = datetime.combine(day, time(0), zone) + timedelta(days=2)
    kinds = [k.value for k in DOSE_KINDS]
    with Session(engine) as s:
        return _entries(
            s,
            SessionEntryRow.kind.in_(kinds),
            SessionEntryRow.at >= start.astimezone(UTC),
            SessionEntryRow.at < end.astimezone(UTC),
        )


def session_extremes(
    engine: Engine, session_ids: Sequence[int]
) -> dict[int, dict[str, tuple[float, float]]]:
    """(lowest, highest) of each parameter per session, from valid readings (monitor and
    manual) after the session's first dose."""
    if not session_ids:
        return {}
    q = (
        select(
            VitalReading.session_id,
            VitalReading.parameter,
            func.min(VitalReading.value),
            func.max(VitalReading.value),
        )
        .join(TreatmentSession, TreatmentSession.id == VitalReading.session_id)
        .where(
            VitalReading.session_id.in_(list(session_ids)),
            VitalReading.quality.op("&")(int(Quality.INVALID.value)) == 0,
            TreatmentSession.first_dose_at.is_not(None),
            VitalReading.host_time >= TreatmentSession.first_dose_at,
        )
        .group_by(VitalReading.session_id, VitalReading.parameter)
    )
    out: dict[int, dict[str, tuple[float, float]]] = {}
    with Session(engine) as s:
        for sid, param, lo, hi in s.execute(q):
            out.setdefault(int(sid), {})[str(param)] = (float(lo), float(hi))
    return out


def load_course_view(engine: Engine, course_id: int, today: date) -> CourseView:
    """The course view of ``course_id``: its record, the patient's sessions since its start and
    their vital extremes."""
    with Session(engine) as s:
        state = fold_course(_course_entries(s, course_id))
    if state is None:
        raise RecordError(f"no treatment course {course_id}")
    since = datetime.combine(state.plan.start, time(0), UTC) - timedelta(days=1)
    sessions = [st for _, st in patient_sessions(engine, state.patient_id, since)]
    extremes = session_extremes(engine, [st.session_id for st in sessions])
    return course_view(state, sessions, extremes, today)


__all__ = [
    "SqlCourseRepository",
    "apply_course",
    "dose_entries",
    "load_course_view",
    "patient_sessions",
    "session_extremes",
]
