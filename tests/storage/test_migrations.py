"""Migrations: empty → head matches the models; backup before upgrade; newer schemas refused;
a failed upgrade leaves the database as it was."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from ketamon.services import get_or_create_patient, open_database
from ketamon.storage.audit import acting_as
from ketamon.storage.database import DatabaseVersionError, make_engine
from ketamon.storage.migrate import (
    HEAD,
    MIGRATIONS_DIR,
    alembic_config,
    head_revision,
    schema_status,
    upgrade_database,
    upgrade_sql,
)
from ketamon.storage.models import Base, Patient, User
from ketamon.storage.users import system_user_id

#: the probe revision a newer ketamon would add after ours
PROBE = f"{int(HEAD) + 1:04d}"

PROBE_REVISION = '''"""probe: add a column (test only)"""

import sqlalchemy as sa
from alembic import op

revision = "{probe}"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("probe", sa.String(20), nullable=True))
    {extra}


def downgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("probe")
'''


def scripts_with_probe(tmp_path: Path, extra: str = "pass") -> Path:
    """A copy of the packaged migrations plus a probe revision, as a newer ketamon would ship."""
    where = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, where, ignore=shutil.ignore_patterns("__pycache__"))
    (where / "versions" / f"v{PROBE}_probe.py").write_text(
        PROBE_REVISION.format(extra=extra, probe=PROBE, head=HEAD)
    )
    return where


def add_patient(engine: Engine, mrn: str = "MRN-1") -> None:
    with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        get_or_create_patient(s, mrn, "Ada", "Lovelace")


def test_empty_database_migrates_to_head_and_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        result = upgrade_database(engine)
        assert result.from_revision is None
        assert result.to_revision == head_revision()
        assert result.backup is None  # nothing to lose in a new database
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert ctx.get_current_revision() == head_revision()
            diff = compare_metadata(ctx, Base.metadata)
            assert diff == [], diff
            assert set(inspect(conn).get_table_names()) >= set(Base.metadata.tables)
        # Running it again is a no-op.
        assert upgrade_database(engine).from_revision == head_revision()
        status = schema_status(engine)
        assert status.up_to_date
    finally:
        engine.dispose()


def test_the_first_migration_makes_the_system_account_with_its_audit_entry(
    engine: Engine,
) -> None:
    with Session(engine) as s:
        system = s.scalars(select(User).where(User.username == "system")).one()
        assert system.password_hash is None and system.role.value == "system"
        n = s.execute(
            text("SELECT count(*) FROM audit_entry WHERE entity = 'app_user' AND entity_id = :i"),
            {"i": system.id},
        ).scalar()
        assert n == 1


def test_downgrade_to_nothing_and_back_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade_database(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        upgrade_database(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_keeps_the_data_and_backs_up_sqlite_first(db_url: str, tmp_path: Path) -> None:
    engine = open_database(db_url)
    try:
        add_patient(engine)
        scripts = scripts_with_probe(tmp_path)
        backups = tmp_path / "backups"
        result = upgrade_database(engine, script_location=scripts, backup_dir=backups)
        assert (result.from_revision, result.to_revision) == (HEAD, PROBE)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT mrn, probe FROM patient")).all() == [("MRN-1", None)]
        if engine.dialect.name != "sqlite":
            assert result.backup is None
            return
        assert result.backup is not None and result.backup.parent == backups
        db_name = Path(str(engine.url.database)).name
        assert result.backup.name.startswith(f"{db_name}.backup-{HEAD}-")
        assert result.backup.name.endswith(".sqlite3")
        stamp = result.backup.name.removeprefix(f"{db_name}.backup-{HEAD}-").split(".")[0]
        assert datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        with sqlite3.connect(result.backup) as b:  # the copy is the database before the upgrade
            assert b.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert b.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
            assert b.execute("SELECT mrn FROM patient").fetchall() == [("MRN-1",)]
            cols = [r[1] for r in b.execute("PRAGMA table_info(patient)")]
            assert "probe" not in cols
        # Up to date now: no second backup.
        again = upgrade_database(engine, script_location=scripts, backup_dir=backups)
        assert again.backup is None and len(list(backups.iterdir())) == 1
    finally:
        engine.dispose()


def test_default_backup_folder_is_beside_the_database(tmp_path: Path) -> None:
    db = tmp_path / "data" / "ketamon.sqlite3"
    engine = open_database(f"sqlite:///{db}")
    try:
        add_patient(engine)
        result = upgrade_database(engine, script_location=scripts_with_probe(tmp_path))
        assert result.backup is not None
        assert result.backup.parent == db.parent / "backups"
    finally:
        engine.dispose()


def test_a_failing_upgrade_changes_nothing(db_url: str, tmp_path: Path) -> None:
    engine = open_database(db_url)
    try:
        add_patient(engine)
        scripts = scripts_with_probe(tmp_path, extra='raise RuntimeError("probe failed")')
        with pytest.raises(RuntimeError, match="probe failed"):
            upgrade_database(engine, script_location=scripts, backup_dir=tmp_path / "b")
        with engine.connect() as conn:
            cols = [c["name"] for c in inspect(conn).get_columns("patient")]
            assert "probe" not in cols  # the ALTER was rolled back with the rest
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == HEAD
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Patient)) == 1
    finally:
        engine.dispose()


def test_a_database_from_a_newer_ketamon_is_refused(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    try:
        upgrade_database(engine, script_location=scripts_with_probe(tmp_path))
    finally:
        engine.dispose()
    with pytest.raises(DatabaseVersionError) as err:
        open_database(db_url)
    msg = str(err.value)
    assert f"written by a newer ketamon (schema revision {PROBE})" in msg
    assert "upgrade ketamon or use a backup" in msg
    assert ":ketamon_ci@" not in msg  # the password is never shown (***)


def test_ketamon_tables_without_a_revision_are_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        Base.metadata.tables["patient"].create(engine)
        with pytest.raises(DatabaseVersionError, match="no schema revision"):
            upgrade_database(engine)
    finally:
        engine.dispose()


def test_offline_sql_for_a_dba_creates_the_triggers() -> None:
    pg = upgrade_sql("postgresql+psycopg://clinic/ketamon")
    assert "CREATE TABLE audit_entry" in pg
    assert "CREATE TRIGGER audit_entry_append_only" in pg
    assert "INSERT INTO app_user" in pg
    lite = upgrade_sql("sqlite:///x.sqlite3")
    assert "CREATE TRIGGER audit_entry_no_update" in lite
    assert "CREATE TRIGGER session_entry_append_only" in pg
    assert "CREATE TRIGGER session_entry_no_truncate" in pg
    assert "CREATE TRIGGER session_entry_no_update" in lite
    assert "CREATE TRIGGER session_entry_no_delete" in lite


def test_stations_starting_together_upgrade_once(db_url: str) -> None:
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def station() -> None:
        try:
            barrier.wait(10)
            open_database(db_url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=station) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(HEAD,)]
            assert conn.execute(text("SELECT count(*) FROM app_user")).scalar() == 1
    finally:
        engine.dispose()


def test_the_head_constant_names_the_newest_revision() -> None:
    assert head_revision() == HEAD


def test_opening_a_current_database_does_not_load_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'k.sqlite3'}"
    open_database(url).dispose()
    code = (
        "import sys; from ketamon.services import open_database; "
        f"open_database({url!r}).dispose(); "
        "print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_migrations_ship_inside_the_package() -> None:
    import ketamon.storage

    pkg = Path(ketamon.storage.__file__).parent
    assert pkg / "migrations" == MIGRATIONS_DIR
    for name in ("env.py", "script.py.mako", "versions/v0001_initial.py"):
        assert (MIGRATIONS_DIR / name).is_file(), name
    assert not (Path(__file__).resolve().parents[2] / "alembic.ini").exists()
