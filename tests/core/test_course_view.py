"""The course view (issue 15) over the demo course: 8 induction and 4 maintenance sessions run
through the real cores, their per-session figures and trends, and the schedule."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from ketamon.core.course import MemoryCourses
from ketamon.core.demo_course import MADRS_TOTALS, PHQ9_TOTALS, build_demo_course
from ketamon.core.memory import MemoryRepository
from ketamon.core.ports import EntryDraft
from ketamon.domain.course import SlotStatus, fold_course
from ketamon.domain.course_view import course_view
from ketamon.domain.record import SessionEntry, fold
from ketamon.domain.roles import Actor
from tests.core.helpers import NURSE, PASSWORD, PHYSICIAN, Passwords, profile


class PatientIds(MemoryRepository):
    """The in-memory record with a patient id (as the database gives one)."""

    def create(self, draft: EntryDraft, actor: Actor) -> SessionEntry:
        e = super().create(draft, actor)
        return replace(e, data={**e.data, "patient": {**e.data["patient"], "id": 99}})


def test_the_demo_course_view_has_twelve_sessions_and_their_trends() -> None:
    repo, courses = PatientIds(), MemoryCourses()
    cid = build_demo_course(
        repo,
        courses,
        Passwords(),
        profile(),
        nurse=NURSE,
        nurse_password=PASSWORD,
        physician=PHYSICIAN,
        start=date(2026, 9, 7),
    )
    course = fold_course(courses.load_course(cid))
    assert course is not None and course.screening is not None
    states = [fold(repo.load(i)) for i in range(1, 13)]
    assert all(s is not None and s.discharge is not None for s in states)
    view = course_view(course, [s for s in states if s], {}, date(2026, 11, 30))
    assert len(view.rows) == 12
    assert [r.slot.phase for r in view.rows if r.slot] == ["induction"] * 8 + ["maintenance"] * 4
    statuses = [r.slot.status for r in view.rows if r.slot]
    assert statuses.count(SlotStatus.LATE) == 1 and statuses[5] is SlotStatus.LATE
    assert view.trend("phq9") == list(enumerate(PHQ9_TOTALS, start=1))
    assert view.trend("madrs") == sorted(MADRS_TOTALS.items())
    assert [r.dose_mg for r in view.rows[:3]] == [56.0, 56.0, 84.0]
    assert view.rows[2].label_note == "Dose step 56 → 84 mg"
    first = view.rows[0]
    assert first.peak_bp == (148.0, 90.5) and first.rise == (25.0, 12.5)
    assert first.lowest_spo2 == 95.5 and first.lowest_moaas == 4 and first.peak_cadss == 20
    assert first.side_effects == ("nausea",) and first.saes == 0
    assert view.precautions == ("Uncontrolled hypertension (unknown: home readings pending)",)
    # the first session's PHQ-9 item 9 was acted on before discharge
    assert states[0] is not None and states[0].suicidality_actions
