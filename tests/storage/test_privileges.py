"""PostgreSQL least privilege: the owner migrates, the app role records sessions but cannot
lift the append-only triggers or change the audit trail (a real server; skipped without one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ketamon.services import open_database
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role
from ketamon.storage.privileges import PrivilegeError, grant_app_role
from ketamon.storage.users import create_user, system_user_id
from ketamon.storage.verify import verify_audit
from tests.storage.conftest import PASSWORD, PG_ENV, PG_SKIP, Staff
from tests.storage.test_integrity import run_session


@pytest.fixture
def roles() -> Iterator[tuple[Engine, Engine]]:
    """(owner engine, app engine) on a fresh database the owner owns."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    url = make_url(base).set(drivername="postgresql+psycopg")
    tag = uuid.uuid4().hex[:10]
    owner, app, db = f"kt_owner_{tag}", f"kt_app_{tag}", f"kt_priv_{tag}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    engines: list[Engine] = []
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE ROLE {owner} LOGIN PASSWORD 'owner pw'"))
            c.execute(text(f"CREATE ROLE {app} LOGIN PASSWORD 'app pw'"))
            c.execute(text(f'CREATE DATABASE "{db}" OWNER {owner}'))
        own = url.set(database=db, username=owner, password="owner pw")
        mine = url.set(database=db, username=app, password="app pw")
        owner_engine = open_database(own.render_as_string(hide_password=False))
        engines.append(owner_engine)
        grant_app_role(owner_engine, app)
        app_engine = open_database(mine.render_as_string(hide_password=False))
        engines.append(app_engine)
        yield owner_engine, app_engine
    finally:
        for e in engines:
            e.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            c.execute(text(f"DROP ROLE IF EXISTS {app}"))
            c.execute(text(f"DROP ROLE IF EXISTS {owner}"))
        admin.dispose()


def refused(engine: Engine, sql: str, words: str) -> None:
    with pytest.raises(DBAPIError) as exc, engine.begin() as c:
        c.execute(text(sql))
    assert words in str(exc.value.orig), exc.value.orig


def test_the_app_role_records_sessions_but_cannot_touch_the_trail(
    roles: tuple[Engine, Engine],
) -> None:
    owner, app = roles
    with Session(owner) as s, s.begin():
        sys_id = system_user_id(s)
        with acting_as(s, sys_id):
            nurse = create_user(
                s, username="nina", full_name="Nina Nurse", role=Role.NURSE, password=PASSWORD
            ).id
            doc = create_user(
                s, username="paul", full_name="Paul P", role=Role.PHYSICIAN, password=PASSWORD
            ).id
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    sid = run_session(app, Staff(sys_id, nurse, doc), "MRN-P", start, finish=True)
    assert sid > 0 and verify_audit(app).intact
    for table in ("audit_entry", "session_entry"):
        refused(app, f"ALTER TABLE {table} DISABLE TRIGGER USER", "must be owner")
        refused(app, f"UPDATE {table} SET id = id", "permission denied")
        refused(app, f"DELETE FROM {table}", "permission denied")
        refused(app, f"TRUNCATE {table}", "permission denied")
    refused(app, "DROP TRIGGER audit_entry_append_only ON audit_entry", "must be owner")
    refused(app, "UPDATE alembic_version SET version_num = 'x'", "permission denied")
    refused(app, "CREATE TABLE sneaky (id int)", "permission denied")
    assert verify_audit(app).intact
    with pytest.raises(PrivilegeError, match="no role"):
        grant_app_role(owner, "nobody_here")
    with pytest.raises(PrivilegeError, match="plain role name"):
        grant_app_role(owner, "x; DROP TABLE patient")


def test_ketamon_db_upgrade_and_grant(
    roles: tuple[Engine, Engine], capsys: pytest.CaptureFixture[str]
) -> None:
    from ketamon.cli import main

    owner, _ = roles
    url = owner.url.render_as_string(hide_password=False)
    assert main(["db", "upgrade", "--db", url]) == 0
    assert "is up to date" in capsys.readouterr().out
    app_role = str(roles[1].url.username)
    assert main(["db", "grant", "--db", url, "--app-role", app_role]) == 0
    assert f"granted {app_role}" in capsys.readouterr().out
    assert main(["db", "grant", "--db", url, "--app-role", "Bad-Name"]) == 2
    assert "plain role name" in capsys.readouterr().err


def test_the_app_role_does_not_migrate_a_database_that_is_behind() -> None:
    from ketamon.storage.database import DatabaseVersionError

    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    url = make_url(base).set(drivername="postgresql+psycopg")
    tag = uuid.uuid4().hex[:10]
    app, db = f"kt_app_{tag}", f"kt_behind_{tag}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE ROLE {app} LOGIN PASSWORD 'app pw'"))
            c.execute(text(f'CREATE DATABASE "{db}"'))  # owned by the test's superuser
        mine = url.set(database=db, username=app, password="app pw")
        with pytest.raises(DatabaseVersionError, match=r"run 'ketamon db upgrade'.*owner"):
            open_database(mine.render_as_string(hide_password=False))
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            c.execute(text(f"DROP ROLE IF EXISTS {app}"))
        admin.dispose()
