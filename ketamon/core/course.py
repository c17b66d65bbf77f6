"""A patient's treatment course: open it with its plan, screen the patient (a prescriber),
override a contraindication (a physician, with a reason), close it.

Like the chair's session core: each command is checked against the actor's role and the
domain's rules, its entries recorded with their audit rows in one transaction, and the state
is the fold of the course's record. The chair's core asks :meth:`CourseCore.gate` before the
first dose of a session: no screening, an expired one, or a contraindication not overridden
stops dosing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from ketamon.core.commands import Credentials
from ketamon.core.ports import Authenticator, AuthFailed
from ketamon.domain.course import (
    CourseEntry,
    CourseEntryKind,
    CoursePlan,
    CourseState,
    apply_course,
    fold_course,
    plan_problems,
)
from ketamon.domain.course_view import CourseView, course_view
from ketamon.domain.roles import Action, Actor, Role, refusal
from ketamon.domain.screening import (
    ItemAnswer,
    precaution_lines,
    screening_blockers,
    screening_problems,
)
from ketamon.domain.session_rules import Treatment

DEFAULT_RESCREEN_DAYS = 90


class CourseRefused(Exception):
    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True, slots=True)
class CourseDraft:
    kind: CourseEntryKind
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class CourseRepository(Protocol):
    """The course record. Every call is one transaction, with its audit rows."""

    def create_course(self, patient_id: int, draft: CourseDraft, actor: Actor) -> CourseEntry: ...

    def append_course(
        self, course_id: int, drafts: Sequence[CourseDraft], actor: Actor
    ) -> list[CourseEntry]: ...

    def load_course(self, course_id: int) -> list[CourseEntry]: ...

    def active_course_id(self, patient_id: int) -> int | None: ...

    def course_view(self, course_id: int, today: date) -> CourseView:
        """The course with its sessions' figures (the course view's read model)."""
        ...


# ---- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenCourse:
    patient_id: int
    patient_mrn: str
    plan: CoursePlan


@dataclass(frozen=True, slots=True)
class ScreenPatient:
    course_id: int
    answers: Mapping[str, ItemAnswer]
    #: the prescriber's sign-in when a nurse records their answers
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class OverrideContraindication:
    course_id: int
    reason: str
    authoriser: Credentials | None = None


@dataclass(frozen=True, slots=True)
class CloseCourse:
    course_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Gate:
    """What the course says about dosing a patient now."""

    course: CourseState | None
    blockers: tuple[str, ...]
    precautions: tuple[str, ...]


class CourseCore:
    def __init__(
        self,
        repository: CourseRepository,
        authenticator: Authenticator,
        clock: Callable[[], datetime],
        *,
        rescreen_days: int = DEFAULT_RESCREEN_DAYS,
        screening_required: bool = False,
    ) -> None:
        self.repo = repository
        self.auth = authenticator
        self.clock = clock
        self.rescreen_days = rescreen_days
        self.screening_required = screening_required
        self._lock = threading.Lock()

    # ---- reading ---------------------------------------------------------------------------
    def state(self, course_id: int) -> CourseState:
        state = fold_course(self.repo.load_course(course_id))
        if state is None:
            raise CourseRefused([f"There is no course {course_id}"])
        return state

    def active(self, patient_id: int | None) -> CourseState | None:
        if patient_id is None:
            return None
        cid = self.repo.active_course_id(patient_id)
        return None if cid is None else self.state(cid)

    def gate(self, patient_id: int | None, treatment: Treatment, now: datetime) -> Gate:
        """Blockers for the first dose of a session of this patient (empty: none)."""
        course = self.active(patient_id)
        if course is None:
            if self.screening_required and treatment is not Treatment.OTHER:
                return Gate(
                    None,
                    ("Open a treatment course and screen the patient before the first dose",),
                    (),
                )
            return Gate(None, (), ())
        s = course.screening
        blockers = screening_blockers(s, course.overrides, now, self.rescreen_days)
        precautions = precaution_lines(s) if s is not None else []
        return Gate(course, tuple(blockers), tuple(precautions))

    # ---- commands --------------------------------------------------------------------------
    def execute(
        self,
        cmd: OpenCourse | ScreenPatient | OverrideContraindication | CloseCourse,
        actor: Actor,
    ) -> CourseState:
        with self._lock:
            now = self.clock()
            if isinstance(cmd, OpenCourse):
                return self._open(cmd, actor, now)
            state = self.state(cmd.course_id)
            if state.closed is not None:
                raise CourseRefused([f"Course {cmd.course_id} is closed"])
            drafts: list[tuple[CourseDraft, Actor]]
            if isinstance(cmd, ScreenPatient):
                drafts = [self._screen(cmd, actor, now)]
            elif isinstance(cmd, OverrideContraindication):
                drafts = [self._override(state, cmd, actor, now)]
            else:
                self._role(actor, Action.COURSE)
                if not cmd.reason.strip():
                    raise CourseRefused(["Give the reason the course is closed"])
                draft = CourseDraft(CourseEntryKind.CLOSED, now, {"reason": cmd.reason.strip()})
                drafts = [(draft, actor)]
            for draft, who in drafts:
                for e in self.repo.append_course(cmd.course_id, [draft], who):
                    state = apply_course(state, e)
            return state

    def _role(self, actor: Actor, action: Action) -> None:
        why = refusal(actor.role, action)
        if why:
            raise CourseRefused([why])

    def _physician(
        self, actor: Actor, creds: Credentials | None, action: Action, what: str
    ) -> Actor:
        """The physician who does ``action``: the actor, or the one who signs in for it (a
        nurse records it on their sign-in)."""
        if actor.role is Role.PHYSICIAN and (creds is None or creds.username == actor.username):
            return actor
        if actor.role not in (Role.NURSE, Role.PHYSICIAN):
            raise CourseRefused([refusal(actor.role, action) or "not allowed"])
        if creds is None:
            raise CourseRefused([f"{what} needs a physician (a prescriber) to sign in"])
        try:
            who = self.auth.verify(creds.username, creds.password)
        except AuthFailed as exc:
            raise CourseRefused([f"{what}: {exc}"]) from exc
        if who.role is not Role.PHYSICIAN:
            raise CourseRefused([f"{what}: only a physician may do this ({who.username})"])
        return who

    def _open(self, cmd: OpenCourse, actor: Actor, now: datetime) -> CourseState:
        self._role(actor, Action.COURSE)
        problems = plan_problems(cmd.plan)
        try:
            Treatment(cmd.plan.treatment)
        except ValueError:
            problems.append(f"Unknown treatment {cmd.plan.treatment!r}")
        if self.repo.active_course_id(cmd.patient_id) is not None:
            problems.append("The patient already has an open course: close it first")
        if problems:
            raise CourseRefused(problems)
        data = {
            "patient_id": cmd.patient_id,
            "patient_mrn": cmd.patient_mrn,
            "plan": cmd.plan.to_json(),
        }
        entry = self.repo.create_course(
            cmd.patient_id, CourseDraft(CourseEntryKind.OPENED, now, data), actor
        )
        state = apply_course(None, entry)
        return state

    def _screen(
        self, cmd: ScreenPatient, actor: Actor, now: datetime
    ) -> tuple[CourseDraft, Actor]:
        who = self._physician(actor, cmd.authoriser, Action.COURSE_SCREENING, "The screening")
        problems = screening_problems(cmd.answers)
        if problems:
            raise CourseRefused(problems)
        answers = {
            k: {"answer": a.answer.value, "note": " ".join(a.note.split())}
            for k, a in cmd.answers.items()
        }
        return CourseDraft(CourseEntryKind.SCREENED, now, {"answers": answers}), who

    def _override(
        self, state: CourseState, cmd: OverrideContraindication, actor: Actor, now: datetime
    ) -> tuple[CourseDraft, Actor]:
        who = self._physician(
            actor,
            cmd.authoriser,
            Action.CONTRAINDICATION_OVERRIDE,
            "Overriding a contraindication",
        )
        s = state.screening
        if s is None:
            raise CourseRefused(["Screen the patient first"])
        found = s.contraindications
        if not found:
            raise CourseRefused(["The latest screening found no contraindication to override"])
        if not cmd.reason.strip():
            raise CourseRefused(["An override of a contraindication needs a reason"])
        data = {
            "screening_id": s.entry_id,
            "items": found,
            "reason": " ".join(cmd.reason.split()),
        }
        return CourseDraft(CourseEntryKind.OVERRIDDEN, now, data), who


class MemoryCourses:
    """The course record in memory (tests; tools without a database). ``sessions`` (optional)
    gives a patient's folded sessions for the course view."""

    def __init__(self, sessions: Callable[[int], Sequence[Any]] | None = None) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._entries: dict[int, list[CourseEntry]] = {}
        self._patient: dict[int, int] = {}
        self._next = 1

    def _entry(self, course_id: int, d: CourseDraft, actor: Actor) -> CourseEntry:
        import json

        e = CourseEntry(
            self._next,
            course_id,
            d.kind,
            d.at,
            actor.id,
            actor.full_name,
            json.loads(json.dumps(dict(d.data))),
        )
        self._next += 1
        return e

    def create_course(self, patient_id: int, draft: CourseDraft, actor: Actor) -> CourseEntry:
        with self._lock:
            cid = len(self._entries) + 1
            e = self._entry(cid, draft, actor)
            self._entries[cid] = [e]
            self._patient[cid] = patient_id
            return e

    def append_course(
        self, course_id: int, drafts: Sequence[CourseDraft], actor: Actor
    ) -> list[CourseEntry]:
        with self._lock:
            out = [self._entry(course_id, d, actor) for d in drafts]
            self._entries[course_id].extend(out)
            return out

    def load_course(self, course_id: int) -> list[CourseEntry]:
        with self._lock:
            return list(self._entries.get(course_id, []))

    def course_view(self, course_id: int, today: date) -> CourseView:
        state = fold_course(self.load_course(course_id))
        if state is None:
            raise CourseRefused([f"There is no course {course_id}"])
        sessions = list(self._sessions(state.patient_id)) if self._sessions else []
        return course_view(state, sessions, {}, today)

    def active_course_id(self, patient_id: int) -> int | None:
        with self._lock:
            for cid, pid in sorted(self._patient.items(), reverse=True):
                closed = any(e.kind is CourseEntryKind.CLOSED for e in self._entries[cid])
                if pid == patient_id and not closed:
                    return cid
            return None
