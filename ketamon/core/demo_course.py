"""A demonstration course (issue 15): one DEMO patient's esketamine course of 8 induction
sessions (twice weekly) and 4 maintenance sessions (weekly), each run through the real session
and course cores - screening, devices, hand-entered vitals, MOAA/S, CADSS, side effects,
PHQ-9 / MADRS / CGI, discharge - so the course view has twelve sessions' trends to show.

Clinical figures improve over the course (PHQ-9 21 -> 6); the dose steps 56 -> 84 mg at the
third session; session 6 is held a day late. Every value is marked DEMO by its patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ketamon.core import commands as c
from ketamon.core.course import CourseCore, CourseRepository, OpenCourse, ScreenPatient
from ketamon.core.ports import Authenticator, SessionRepository
from ketamon.core.session import ChairCore
from ketamon.domain.course import CoursePlan, planned_dates
from ketamon.domain.record import PatientInfo, Plan
from ketamon.domain.roles import Actor
from ketamon.domain.screening import ITEMS, Answer, ItemAnswer
from ketamon.domain.session_rules import Treatment
from ketamon.domain.thresholds import ThresholdProfile

DEMO_PATIENT = PatientInfo(
    None, "DEMO-COURSE-1", "Jordan", "Course", weight_kg=72.0, rems_enrolled=True
)
PHQ9_TOTALS = (21, 20, 18, 17, 15, 14, 12, 11, 10, 8, 7, 6)
MADRS_TOTALS = {1: 34, 4: 27, 8: 19, 12: 12}


@dataclass
class _Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def _items(total: int, count: int, top: int, first: int = 0) -> dict[int, int]:
    """``count`` items summing to ``total`` (each first..top), spread evenly."""
    out = {i: first for i in range(1, count + 1)}
    left = total - first * count
    i = 1
    while left > 0:
        if out[i] < top:
            out[i] += 1
            left -= 1
        i = i % count + 1
    return out


def build_demo_course(
    repo: SessionRepository,
    courses: CourseRepository,
    auth: Authenticator,
    profile: ThresholdProfile,
    *,
    nurse: Actor,
    nurse_password: str,
    physician: Actor,
    start: date,
    chair: str = "Chair 1",
    at_hour: int = 9,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Record the demo course; returns its id. ``start`` is the first session's day."""
    from datetime import UTC, time

    clock = _Clock(datetime.combine(start, time(at_hour), UTC))
    course_core = CourseCore(courses, auth, clock)
    core = ChairCore(chair, repo, auth, profile, clock, courses=course_core)
    plan = CoursePlan("Treatment-resistant depression (DEMO)", "esketamine", start)
    days = [d for _, d in planned_dates(plan)]
    days[5] += timedelta(days=2)  # session 6 two days late
    course_id = 0
    for n, day in enumerate(days, start=1):
        clock.now = datetime.combine(day, time(at_hour), UTC)
        dose = 56.0 if n <= 2 else 84.0
        state = core.execute(
            c.StartSession(DEMO_PATIENT, Plan(Treatment.ESKETAMINE, dose_mg=dose), confirmed=True),
            nurse,
        ).state
        if n == 1:
            assert state.patient.id is not None
            course_id = course_core.execute(
                OpenCourse(state.patient.id, DEMO_PATIENT.mrn, plan), nurse
            ).course_id
            answers = {k: ItemAnswer(Answer.NO) for k in ITEMS}
            answers["uncontrolled_hypertension"] = ItemAnswer(
                Answer.UNKNOWN, "home readings pending"
            )
            course_core.execute(ScreenPatient(course_id, answers), physician)
        latest: dict[str, tuple[float, datetime]] = {}

        def vitals(
            sys: float,
            dia: float,
            hr: float,
            spo2: float,
            rr: float = 14.0,
            latest: dict[str, tuple[float, datetime]] = latest,
        ) -> None:
            values = {"nibp_sys": sys, "nibp_dia": dia, "hr": hr, "spo2": spo2, "rr": rr}
            core.execute(c.RecordVitals(values), nurse)
            for k, v in values.items():
                latest[k] = (v, clock.now)

        base = (124.0 - n, 78.0)
        core.execute(c.RecordScreening(base, 72, "manual", True, True, rems_enrolled=True), nurse)
        # PHQ-9: item 9 is 0 but at the first session, where its flag is acted on
        phq = {**_items(PHQ9_TOTALS[n - 1] - (n == 1), 8, 3), 9: int(n == 1)}
        core.execute(c.RecordScale("phq9", phq), nurse)
        if n == 1:
            action = "Risk assessed with the patient (passive thoughts, no plan); prescriber told"
            core.execute(c.RecordSuicidalityAction(action), nurse)
        if n in MADRS_TOTALS:
            core.execute(c.RecordScale("madrs", _items(MADRS_TOTALS[n], 10, 6)), nurse)
        cgi = 5 if n <= 3 else 4 if n <= 7 else 3
        core.execute(c.RecordScale("cgi_s", {1: cgi}), nurse)
        core.execute(c.RecordCadss({i: 0 for i in range(1, 24)}), nurse)
        clock.now += timedelta(minutes=5)
        first = clock.now
        for k in range(round(dose / 28)):
            clock.now = first + timedelta(minutes=5 * k)
            core.execute(c.LogDevice(f"DEMO-LOT-{1 + n // 5}"), nurse, latest)
        clock.now = first + timedelta(minutes=40)
        # the 40-minute peak: bigger on 84 mg and early in the course
        rise = 26.0 + (8.0 if dose > 56 else 0.0) - n
        vitals(base[0] + rise, base[1] + rise / 2, 80, 95.0 + (n % 3) * 0.5)
        core.execute(c.RecordMoaas(4 if n % 4 else 3), nurse)
        core.execute(
            c.RecordCadss(_items(max(2, 22 - 2 * n), 23, 4)),
            nurse,
        )
        if n in (1, 3, 6):
            core.execute(c.RecordSideEffects([c.SideEffectInput("nausea", "mild")]), nurse)
        if n in (2, 5):
            core.execute(c.RecordSideEffects([c.SideEffectInput("dizziness", "moderate")]), nurse)
        for k in range(1, 5):
            clock.now = first + timedelta(minutes=40 + 15 * k)
            vitals(base[0] + 4, base[1] + 2, 74, 97.0)
        clock.now = first + timedelta(minutes=110)
        core.execute(c.RecordMoaas(5), nurse)
        core.execute(c.RecordCadss({i: 0 for i in range(1, 24)}), nurse)
        clock.now = first + timedelta(minutes=124)
        vitals(base[0] + 2, base[1], 72, 98.0)
        checklist = {"steady_gait": True, "escort_present": True, "instructions_given": True}
        core.execute(c.Discharge(checklist, 95, password=nurse_password), nurse, latest)
        if progress is not None:
            progress(n)
    return course_id
