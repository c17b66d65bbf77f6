"""Two stations making the same patient at the same moment (the clinic's headless stations
all record an UNIDENTIFIED patient): the second finds the first's row instead of failing.
PostgreSQL, where stations share one database."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ketamon.services import open_database
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Patient, Role
from ketamon.storage.records import get_or_create_patient
from ketamon.storage.users import create_user, system_user_id

from .conftest import fresh_postgres_database


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """PostgreSQL only: SQLite serialises writers, so one file has no such race."""
    with fresh_postgres_database() as url:
        e = open_database(url)
        try:
            yield e
        finally:
            e.dispose()


def test_the_same_new_patient_made_by_two_writers_at_once(pg_engine: Engine) -> None:
    engine = pg_engine
    with Session(engine) as s, s.begin():
        sys_id = system_user_id(s)
        with acting_as(s, sys_id):
            nurse = create_user(
                s, username="nina", full_name="Nina N", role=Role.NURSE, password="pw for nina 1"
            ).id
    first_flushed, first_may_commit = threading.Event(), threading.Event()
    ids: dict[str, int] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with Session(engine) as s, s.begin(), acting_as(s, nurse):
                ids["first"] = get_or_create_patient(s, "RACE-1", "Una", "Known").id
                first_flushed.set()
                first_may_commit.wait(10)
        except BaseException as exc:
            errors.append(exc)

    def second() -> None:
        try:
            first_flushed.wait(10)
            with Session(engine) as s, s.begin(), acting_as(s, nurse):
                # its INSERT waits on the unique index until the first commits, then fails
                timer = threading.Timer(0.5, first_may_commit.set)
                timer.start()
                ids["second"] = get_or_create_patient(s, "RACE-1", "Una", "Known").id
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert ids["first"] == ids["second"]
    with Session(engine) as s:
        n = s.scalar(select(func.count()).select_from(Patient).where(Patient.mrn == "RACE-1"))
    assert n == 1
