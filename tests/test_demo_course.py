"""``ketamon demo --course``: the DEMO course is recorded once in the demo database, and its
course view has the twelve sessions (the same builder as the course-view tests)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketamon.app import prepare_demo_course
from ketamon.config import Config
from ketamon.core.demo_course import DEMO_PATIENT
from ketamon.services import load_profile, open_database
from ketamon.storage.courses import SqlCourseRepository
from ketamon.storage.models import Patient


def test_the_demo_course_is_recorded_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    today = date(2026, 11, 30)
    assert prepare_demo_course(url, load_profile(Config()), today) is True
    assert prepare_demo_course(url, load_profile(Config()), today) is False
    engine = open_database(url)
    try:
        with Session(engine) as s:
            pid = s.scalar(select(Patient.id).where(Patient.mrn == DEMO_PATIENT.mrn))
        assert pid is not None
        courses = SqlCourseRepository(engine)
        (cid,) = courses.course_ids(pid)
        view = courses.course_view(cid, today)
        assert len(view.rows) == 12
        assert max(r.day for r in view.rows) < today  # every session in the past
    finally:
        engine.dispose()
