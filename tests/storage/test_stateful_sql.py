"""The session core's stateful test on the real database: random command sequences, by any
role, at any time, leave the live state equal to the state rebuilt from SQLite or PostgreSQL,
and a refused command records nothing (tests/core/stateful.py holds the machine)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role, User
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.users import system_user_id
from ketamon.storage.writer import DatabaseWriter
from tests.core.helpers import PEOPLE, profile
from tests.core.stateful import machine


@pytest.fixture
def people(engine: Engine) -> None:
    """The test persons of tests/core/helpers.py, with the same ids, in this database."""
    with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        for a in PEOPLE.values():
            s.add(
                User(
                    id=a.id,
                    username=a.username,
                    full_name=a.full_name,
                    role=Role(a.role.value),
                    password_hash=None,
                )
            )


@pytest.mark.slow
@pytest.mark.parametrize("through_writer", [False, True], ids=["own_session", "writer"])
def test_live_state_equals_the_database_record(
    engine: Engine, people: None, through_writer: bool
) -> None:
    writer = DatabaseWriter(engine, flush_interval_s=0.05).start() if through_writer else None
    try:
        m = machine(
            lambda: SqlSessionRepository(engine, writer, profile=profile(), timeout_s=30.0)
        )
        run_state_machine_as_test(
            m,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=False,
            ),
        )
    finally:
        if writer is not None:
            writer.stop()
