"""The course view window (issue 15) with the demo course of 8 induction and 4 maintenance
sessions recorded through the real cores into a SQLite database, read back as the app reads it,
shown offscreen, and saved to out/screens/ for a person to look at."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ketamon.config import Config
from ketamon.core.demo_course import PHQ9_TOTALS, build_demo_course
from ketamon.core.ports import AuthFailed
from ketamon.domain.course import SlotStatus
from ketamon.domain.roles import Actor, Role
from ketamon.services import load_profile, open_database
from ketamon.storage.courses import SqlCourseRepository, load_course_view
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.users import AuthError, acting_as, authenticate, create_user, system_user_id
from ketamon.ui import theme
from ketamon.ui.course import COLUMNS, CourseViewWidget

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screens"
PASSWORD = "a long enough secret"


def test_course_view_shows_twelve_sessions_trends(qtbot: Any, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'course.sqlite3'}")
    try:
        with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
            nurse = create_user(
                s, username="nina", full_name="Nina Nurse", role="nurse", password=PASSWORD
            )
            doc = create_user(
                s,
                username="paul",
                full_name="Dr Paul Physician",
                role="physician",
                password=PASSWORD,
            )
            ids = (nurse.id, doc.id)

        class Auth:
            def verify(self, username: str, password: str) -> Actor:
                try:
                    u = authenticate(engine, username, password)
                except AuthError as exc:
                    raise AuthFailed(str(exc)) from exc
                return Actor(u.id, u.username, u.full_name, Role(u.role.value))

        cid = build_demo_course(
            SqlSessionRepository(engine),
            SqlCourseRepository(engine),
            Auth(),
            load_profile(Config()),
            nurse=Actor(ids[0], "nina", "Nina Nurse", Role.NURSE),
            nurse_password=PASSWORD,
            physician=Actor(ids[1], "paul", "Dr Paul Physician", Role.PHYSICIAN),
            start=date(2026, 9, 7),
        )
        view = load_course_view(engine, cid, date(2026, 11, 30))
    finally:
        engine.dispose()
    assert len(view.rows) == 12
    assert view.trend("phq9") == list(enumerate(PHQ9_TOTALS, start=1))
    # peak BP and lowest SpO2 come from the stored readings (hand-entered ones here)
    assert view.rows[0].peak_bp == (148.0, 90.5) and view.rows[0].lowest_spo2 == 95.5
    assert [r.slot.status for r in view.rows if r.slot].count(SlotStatus.LATE) == 1

    w = CourseViewWidget()
    w.setStyleSheet(theme.stylesheet())  # the app's look
    qtbot.addWidget(w)
    w.resize(1366, 768)
    w.show_view(view)
    w.show()
    qtbot.waitExposed(w)
    assert w.table.rowCount() == 12 and w.table.columnCount() == len(COLUMNS)
    assert w.table.item(2, 3).text() == "84 mg nasal ×3  ▲56→84 mg"
    assert w.table.item(2, 3).toolTip() == "Dose step 56 → 84 mg"
    assert w.table.item(5, 2).text() == "induc. 6: LATE +2 d"
    assert w.table.item(11, 11).text() == "6"
    assert "Precautions: Uncontrolled hypertension (unknown" in w.precautions.text()
    assert "1 late, 0 missed" in w.missed.text()
    items = w.scales_plot.getPlotItem().listDataItems()
    assert [len(i.xData) for i in items] == [12, 4, 12]  # PHQ-9, MADRS, CGI-S
    assert len(w.safety_plot.getPlotItem().listDataItems()) == 2
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert w.grab().save(str(SHOTS / "course-view-12-sessions-1366x768.png"))
