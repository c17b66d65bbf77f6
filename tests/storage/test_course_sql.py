"""Issue 15 on SQLite and PostgreSQL: a course's record (append-only, audited) and its
projection, the screening gate of a real session, a witnessed waste checked against the second
user's stored password, and the dose report from the stored entries."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ketamon.cli import main
from ketamon.core import commands as c
from ketamon.core.course import CourseCore, OpenCourse, OverrideContraindication, ScreenPatient
from ketamon.core.dose_report import dose_lines
from ketamon.core.ports import AuthFailed
from ketamon.core.session import ChairCore, Refused
from ketamon.domain.course import CoursePlan
from ketamon.domain.dosing import Supply, dose_report
from ketamon.domain.record import Plan
from ketamon.domain.roles import Actor, Role
from ketamon.domain.screening import ITEMS, Answer, ItemAnswer
from ketamon.domain.session_rules import Treatment
from ketamon.storage.courses import SqlCourseRepository, dose_entries, patient_sessions
from ketamon.storage.models import AuditEntry, DoseEvent, DoseKind, DoseWaste, TreatmentCourse
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.users import AuthError, authenticate
from tests.core.helpers import ALEX, Clock, profile, screening
from tests.storage.conftest import PASSWORD, Staff

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
VIAL = Supply("Ketamine HCl 50 mg/mL", 50.0, "K123", "2027-06-30")


class DbAuth:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def verify(self, username: str, password: str) -> Actor:
        try:
            u = authenticate(self.engine, username, password)
        except AuthError as exc:
            raise AuthFailed(str(exc)) from exc
        return Actor(u.id, u.username, u.full_name, Role(u.role.value))


def test_a_course_screened_overridden_and_dosed_on_the_database(
    engine: Engine, staff: Staff, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nurse = Actor(staff.nurse, "nina", "Nina Nurse", Role.NURSE)
    doc = Actor(staff.physician, "paul", "Paul Physician", Role.PHYSICIAN)
    clock = Clock(T0)
    auth = DbAuth(engine)
    courses = CourseCore(SqlCourseRepository(engine), auth, clock)
    chair = ChairCore(
        "Chair 1", SqlSessionRepository(engine), auth, profile(), clock, courses=courses
    )
    # the session creates the patient; the course is opened for that patient
    state = chair.execute(
        c.StartSession(ALEX, Plan(Treatment.IM_KETAMINE, im_mg_per_kg=0.5), confirmed=True),
        nurse,
    ).state
    pid = state.patient.id
    assert pid is not None
    plan = CoursePlan("Treatment-resistant depression", "im_ketamine", date(2026, 11, 30))
    cid = courses.execute(OpenCourse(pid, "MRN-1", plan), nurse).course_id
    answers = {k: ItemAnswer(Answer.NO) for k in ITEMS}
    answers["hypersensitivity"] = ItemAnswer(Answer.YES, "urticaria 2015")
    answers["heart_disease"] = ItemAnswer(Answer.YES, "stable angina")
    courses.execute(ScreenPatient(cid, answers), doc)
    with Session(engine) as s:
        tc = s.get(TreatmentCourse, cid)
        assert tc is not None
        assert (tc.contraindications_open, tc.precautions) == ("hypersensitivity", "Heart disease")
    chair.execute(screening(), nurse, {})
    with pytest.raises(Refused, match="Hypersensitivity"):
        chair.execute(c.AdministerDose(VIAL, 50.0, "deltoid_left"), nurse)
    courses.execute(
        OverrideContraindication(cid, "challenge tolerated", c.Credentials("paul", PASSWORD)),
        nurse,
    )
    with Session(engine) as s:
        tc = s.get(TreatmentCourse, cid)
        assert tc is not None and tc.contraindications_open == ""
        audited = s.scalars(select(AuditEntry).where(AuditEntry.entity == "course_entry")).all()
        assert len(audited) == 3  # opened, screened, overridden
        assert {a.user_id for a in audited} == {staff.nurse, staff.physician}
    chair.execute(c.AdministerDose(VIAL, 50.0, "deltoid_left"), nurse)
    waste = c.RecordWaste(VIAL.product, "K123", 15.0, "rest of the vial")
    with pytest.raises(Refused, match="The witness"):
        chair.execute(replace(waste, witness=c.Credentials("paul", "wrong password!")), nurse)
    chair.execute(replace(waste, witness=c.Credentials("paul", PASSWORD)), nurse)
    with Session(engine) as s:
        w = s.scalars(select(DoseWaste)).one()
        assert (w.mg, w.recorded_by_id, w.witnessed_by_id) == (15.0, staff.nurse, staff.physician)
        dose = s.scalars(select(DoseEvent)).one()
        assert (dose.kind, dose.mg, dose.lot, dose.mg_per_kg) == (
            DoseKind.IM_INJECTION,
            35.0,
            "K123",
            0.5,
        )
    # the report from what is stored
    day = T0.astimezone().date()
    rows = dose_report(dose_lines(dose_entries(engine, day)), day)
    assert [(r.product, r.lot, r.given_mg, r.wasted_mg) for r in rows] == [
        ("Ketamine HCl 50 mg/mL", "K123", 35.0, 15.0)
    ]
    sessions = patient_sessions(engine, pid)
    assert [st.administration.given_mg for _, st in sessions if st.administration] == [35.0]
    # the course's record cannot be changed behind the application's back
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE course_entry SET data = '{}'"))
    # and from the command line
    assert main(["doses", "report", "--date", day.isoformat(), "--csv", "--db", db_url]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        "date,product,lot,administrations,sessions,devices,given_mg,wasted_mg,accounted_mg",
        f"{day.isoformat()},Ketamine HCl 50 mg/mL,K123,1,1,0,35.0,15.0,50.0",
    ]
    assert main(["doses", "report", "--date", day.isoformat(), "--json", "--db", db_url]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert report["rows"][0]["wasted_mg"] == 15.0
    other = "2026-01-01"
    assert main(["doses", "report", "--date", other, "--db", db_url]) == 0
    assert "No administrations or waste recorded." in capsys.readouterr()[0]


def test_doses_report_refuses_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doses", "report", "--date", "2026-13-01"]) == 2
    err = capsys.readouterr()[1]
    assert err.startswith("ketamon: error: --date '2026-13-01': not a date (use YYYY-MM-DD")
