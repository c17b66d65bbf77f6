"""The treatment course at the chair and on its own screen (issue 15): what the course forms
ask of a chair's presenter, run on the command thread like every other command, and the course
view's presenter (its read runs on the command thread; the view gets the result as a signal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from PySide6.QtCore import QObject, Signal

from ketamon.core import commands as c
from ketamon.core.course import (
    CourseRefused,
    Gate,
    OpenCourse,
    OverrideContraindication,
    ScreenPatient,
)
from ketamon.core.session import Outcome, Refused
from ketamon.domain.course import CoursePlan, CourseState
from ketamon.domain.course_view import CourseView
from ketamon.domain.dosing import Supply
from ketamon.domain.screening import ItemAnswer
from ketamon.presenters.chair import ChairPresenter
from ketamon.presenters.runner import CommandRunner, Pending


class CourseActions:
    """The course's commands for one chair (its presenter's core, user and command thread)."""

    def __init__(self, model: ChairPresenter) -> None:
        self.model = model

    @property
    def _runner(self) -> CommandRunner:
        return self.model._runner  # the chair's command thread (one per station)

    @property
    def gate(self) -> Gate:
        """The course gate as last read (blockers, precautions): no database read."""
        return self.model.core.gate

    # ---- at the chair ---------------------------------------------------------------------
    def administer(self, supply: Supply, drawn_mg: float, site: str = "") -> Pending[Outcome]:
        return self.model.submit(c.AdministerDose(supply, drawn_mg, site), "dose")

    def record_waste(
        self,
        product: str,
        lot: str,
        mg: float,
        reason: str,
        *,
        username: str,
        password: str,
        device_number: int | None = None,
    ) -> Pending[Outcome]:
        witness = c.Credentials(username.strip(), password) if username.strip() else None
        cmd = c.RecordWaste(product, lot, mg, reason, witness, device_number)
        return self.model.submit(cmd, "waste")

    def record_scale(self, scale: str, items: Mapping[int, int]) -> Pending[Outcome]:
        return self.model.submit(c.RecordScale(scale, dict(items)), scale)

    def suicidality_action(self, action: str) -> Pending[Outcome]:
        return self.model.submit(c.RecordSuicidalityAction(action), "PHQ-9 item 9 action")

    def assign_therapist(self, username: str, password: str) -> Pending[Outcome]:
        cmd = c.AssignTherapist(c.Credentials(username.strip(), password))
        return self.model.submit(cmd, "therapist")

    def therapist_note(self, text: str) -> Pending[Outcome]:
        return self.model.submit(c.AddTherapistNote(text), "therapist note")

    # ---- the course ---------------------------------------------------------------------------
    def _course_job(self, job: Callable[[], CourseState]) -> Pending[CourseState]:
        core = self.model.core

        def run() -> CourseState:
            if core.courses is None:
                raise Refused(["Courses are not kept at this station"])
            try:
                out = job()
            except CourseRefused as exc:
                raise Refused(exc.reasons) from exc
            core.refresh_gate()
            return out

        pending = self._runner.submit(run, "course")
        pending.on_done(lambda _p: self.model.sig_changed.emit())
        return pending

    def screen(
        self,
        answers: Mapping[str, ItemAnswer],
        plan: CoursePlan | None,
        *,
        username: str = "",
        password: str = "",
    ) -> Pending[CourseState]:
        """Screen the chair's patient: into their open course, or a new one with ``plan``. A
        nurse records the prescriber's answers on the prescriber's sign-in."""
        who = c.Credentials(username.strip(), password) if username.strip() else None
        core, actor = self.model.core, self.model.actor
        state = self.model.state

        def job() -> CourseState:
            courses = core.courses
            assert courses is not None
            if state is None or state.patient.id is None:
                raise CourseRefused(["Start the patient's session first"])
            course = courses.active(state.patient.id)
            if course is None:
                if plan is None:
                    raise CourseRefused(["The patient has no course: enter its plan"])
                cmd = OpenCourse(state.patient.id, state.patient.mrn, plan)
                course = courses.execute(cmd, actor)
            return courses.execute(ScreenPatient(course.course_id, answers, who), actor)

        return self._course_job(job)

    def course_view(self) -> Pending[CourseView]:
        """The chair's patient's course view, read on the command thread."""
        courses = self.model.core.courses
        gate = self.model.core.gate
        today = self.model.now().date()

        def run() -> CourseView:
            if courses is None or gate.course is None:
                raise Refused(["The patient has no course"])
            try:
                return courses.repo.course_view(gate.course.course_id, today)
            except CourseRefused as exc:
                raise Refused(exc.reasons) from exc

        return self._runner.submit(run, "course view")

    def override(self, reason: str, username: str, password: str) -> Pending[CourseState]:
        core, actor = self.model.core, self.model.actor
        gate = core.gate

        def job() -> CourseState:
            courses = core.courses
            assert courses is not None
            if gate.course is None:
                raise CourseRefused(["The patient has no course"])
            who = c.Credentials(username.strip(), password) if username.strip() else None
            return courses.execute(
                OverrideContraindication(gate.course.course_id, reason, who), actor
            )

        return self._course_job(job)


class CoursePresenter(QObject):
    """Loads a course's view on the command thread and hands it to the course window."""

    sig_view = Signal(object)  # CourseView
    sig_failed = Signal(str)

    def __init__(
        self,
        runner: CommandRunner,
        load: Callable[[int, date], CourseView],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._runner = runner
        self._load = load

    def open(self, course_id: int, today: date) -> Pending[CourseView]:
        load = self._load
        pending = self._runner.submit(lambda: load(course_id, today), "course view")
        pending.on_done(self._on_done)
        return pending

    def _on_done(self, p: Pending[Any]) -> None:
        if p.ok and p.result is not None:
            self.sig_view.emit(p.result)
        else:
            self.sig_failed.emit("; ".join(p.reasons) or str(p.error or "not loaded"))
