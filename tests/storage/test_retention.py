"""Retention: nothing is purged before its period ends; a purge deletes whole sessions, is
audited, and leaves tombstones so 'audit verify' still passes (both backends)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from devices.readings import Waveform, make_reading
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.retention import RetentionError, purge, retention_end
from ketamon.storage.verify import verify_audit
from ketamon.storage.waves import WaveformRecorder
from ketamon.storage.writer import DatabaseWriter
from tests.storage.conftest import PASSWORD, Staff
from tests.storage.test_integrity import run_session

OLD = datetime(2019, 3, 1, 9, 0, tzinfo=UTC)
NEW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 30)


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text(sql)).scalar() or 0)


def snapshot(engine: Engine) -> dict[str, int]:
    tables = (
        "treatment_session",
        "patient",
        "session_entry",
        "audit_entry",
        "vital_reading",
        "waveform_block",
        "observation",
        "dose_event",
    )
    return {t: count(engine, f"SELECT count(*) FROM {t}") for t in tables}


def clinic(engine: Engine, staff: Staff, writer: DatabaseWriter) -> dict[str, int]:
    """Two sessions of 2019 (one patient seen only then, one seen again in 2026) and one of
    2026, recorded in an order that interleaves their audit rows."""
    a = run_session(engine, staff, "OLD-ONLY", OLD, finish=True)
    c = run_session(engine, staff, "KEEP-1", NEW, finish=True)
    b = run_session(engine, staff, "KEEP-1", OLD + timedelta(days=7), finish=False)
    for sid, when in ((a, OLD), (b, OLD), (c, NEW)):
        writer.submit_readings(sid, [make_reading("hr", 70 + i, when) for i in range(5)])
        pleth = WaveformRecorder(writer.submit)
        pleth.add(sid, [Waveform("pleth", when, 125.0, (1.0,) * 10)])
        pleth.flush()
    assert writer.wait_idle(10)
    # and one more audited change after them all (a user), so no purged run ends the chain
    return {"a": a, "b": b, "c": c}


def test_nothing_is_purged_before_the_retention_period_ends(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    ids = clinic(engine, staff, writer)
    before = snapshot(engine)
    old = f"SELECT count(*) FROM vital_reading WHERE session_id IN ({ids['a']}, {ids['b']})"
    assert retention_end(TODAY, 6) == date(2020, 11, 30)
    with pytest.raises(RetentionError, match=r"6 years.*2020-11-30"):
        purge(engine, date(2020, 12, 1), user_id=staff.system, today=TODAY)
    with pytest.raises(RetentionError, match="10 years"):
        purge(engine, date(2019, 6, 1), user_id=staff.system, today=TODAY, retention_years=10)
    dry = purge(engine, date(2020, 1, 1), user_id=staff.system, today=TODAY, dry_run=True)
    assert dry.dry_run and len(dry.sessions) == 2
    assert dry.rows["vital_reading"] == count(engine, old) >= 10
    assert snapshot(engine) == before  # refused or dry: nothing changed
    assert verify_audit(engine).intact


def test_a_purge_deletes_whole_sessions_and_the_chain_still_verifies(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    ids = clinic(engine, staff, writer)
    before = snapshot(engine)
    old = count(
        engine, f"SELECT count(*) FROM vital_reading WHERE session_id IN ({ids['a']}, {ids['b']})"
    )
    kept_entries = SqlSessionRepository(engine).load(ids["c"])
    report = purge(
        engine, date(2020, 1, 1), user_id=staff.system, today=TODAY, reason="annual purge"
    )
    assert report.sessions == sorted([ids["a"], ids["b"]])
    assert len(report.patients) == 1  # OLD-ONLY; KEEP-1 still has a session
    assert report.rows["vital_reading"] == old and report.rows["waveform_block"] == 2
    assert report.gaps >= 2 and report.audit_rows > 0
    after = snapshot(engine)
    assert after["treatment_session"] == before["treatment_session"] - 2
    assert after["patient"] == before["patient"] - 1
    assert after["vital_reading"] == before["vital_reading"] - old
    assert after["waveform_block"] == 1
    assert after["audit_entry"] == before["audit_entry"] - report.audit_rows + 1  # + the purge
    assert SqlSessionRepository(engine).load(ids["c"]) == kept_entries
    assert SqlSessionRepository(engine).load(ids["a"]) == []
    result = verify_audit(engine)
    assert result.intact, result.first_break
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT action, reason FROM audit_entry WHERE entity = 'purge'")
        ).one()
    assert tuple(row) == ("delete", "annual purge")
    # the trail stays append-only after the purge, tombstones included
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entry WHERE entity = 'purge'"))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_gap SET rows = rows + 1"))


def test_a_forged_or_edited_tombstone_is_reported(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    clinic(engine, staff, writer)
    purge(engine, date(2020, 1, 1), user_id=staff.system, today=TODAY)
    with engine.begin() as conn:  # an attacker with file access lifts the trigger
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_gap DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_gap_no_update"))
        conn.execute(
            text("UPDATE audit_gap SET rows = rows + 1 WHERE id = (SELECT min(id) FROM audit_gap)")
        )
    result = verify_audit(engine)
    assert not result.intact and result.first_break is not None
    assert "tombstones" in result.first_break.problem


def test_ketamon_purge_is_for_admins_and_refuses_within_retention(
    engine: Engine,
    db_url: str,
    staff: Staff,
    writer: DatabaseWriter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io
    import json

    from sqlalchemy.orm import Session

    from ketamon.cli import main
    from ketamon.storage.audit import acting_as
    from ketamon.storage.models import Role
    from ketamon.storage.users import create_user

    clinic(engine, staff, writer)
    with Session(engine) as s, s.begin(), acting_as(s, staff.system):
        create_user(s, username="ada", full_name="Ada Admin", role=Role.ADMIN, password=PASSWORD)

    def run(password: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        rc = main(["purge", "--db", db_url, "--password-stdin", *args])
        out, err = capsys.readouterr()
        return rc, out, err

    before = snapshot(engine)
    rc, _, err = run(PASSWORD, "--before", "2020-01-01", "--user", "nina")
    assert rc == 2 and "only an admin" in err
    rc, _, err = run("wrong", "--before", "2020-01-01", "--user", "ada")
    assert rc == 2 and err.startswith("ketamon: error: purge:")
    rc, _, err = run(PASSWORD, "--before", "2026-01-01", "--user", "ada")
    assert rc == 2 and "purge refused" in err and "6 years" in err
    rc, _, err = run(PASSWORD, "--before", "01/01/2020", "--user", "ada")
    assert rc == 2 and "--before" in err and "YYYY-MM-DD" in err
    rc, out, _ = run(PASSWORD, "--before", "2020-01-01", "--user", "ada", "--dry-run", "--json")
    assert rc == 0 and json.loads(out)["dry_run"] is True and len(json.loads(out)["sessions"]) == 2
    after = snapshot(engine)
    assert after.pop("audit_entry") >= before.pop("audit_entry")  # sign-ins are audited
    assert after == before  # nothing else changed
    rc, out, _ = run(PASSWORD, "--before", "2020-01-01", "--user", "ada")
    assert rc == 0 and out.startswith("purge: deleted 2 sessions")
    assert verify_audit(engine).intact
