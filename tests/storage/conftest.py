"""Storage tests run on both backends: embedded SQLite always, PostgreSQL whenever
``KETAMON_TEST_POSTGRES_URL`` names a server (the role must be allowed to CREATE DATABASE);
otherwise the PostgreSQL cases skip, and ``-ra`` shows why. Every test gets a fresh database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ketamon.services import open_database
from ketamon.storage import users
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role
from ketamon.storage.users import create_user, system_user_id
from ketamon.storage.writer import DatabaseWriter

PG_ENV = "KETAMON_TEST_POSTGRES_URL"
PG_SKIP = f"{PG_ENV} not set: PostgreSQL storage tests skipped"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, uniquely named database on the test server, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"ketamon_t_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'ketamon.sqlite3'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The database migrated to head, as the app opens it."""
    e = open_database(db_url)
    try:
        yield e
    finally:
        e.dispose()


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with small costs, so tests that make users stay fast."""
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    monkeypatch.setattr(users, "_DUMMY_HASH", None)


@dataclass(frozen=True)
class Staff:
    system: int
    nurse: int
    physician: int


PASSWORD = "correct horse battery"


@pytest.fixture
def staff(engine: Engine) -> Staff:
    with Session(engine) as s, s.begin():
        sys_id = system_user_id(s)
        with acting_as(s, sys_id):
            nurse = create_user(
                s, username="nina", full_name="Nina Nurse", role=Role.NURSE, password=PASSWORD
            )
            doc = create_user(
                s,
                username="paul",
                full_name="Paul Physician",
                role=Role.PHYSICIAN,
                password=PASSWORD,
            )
        return Staff(sys_id, nurse.id, doc.id)


@pytest.fixture
def writer(engine: Engine, staff: Staff) -> Iterator[DatabaseWriter]:
    w = DatabaseWriter(engine, flush_interval_s=0.05, user_id=staff.nurse).start()
    try:
        yield w
    finally:
        w.stop()
