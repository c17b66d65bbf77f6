from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from devices.readings import Quality, make_reading
from ketamon.services import get_or_create_patient, open_database, start_session
from ketamon.storage.audit import MissingUserError
from ketamon.storage.models import AuditEntry, TreatmentSession, VitalReading
from ketamon.storage.writer import MAX_FLUSH_INTERVAL_S, CommitInfo, DatabaseWriter

from .conftest import Staff

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def create(s: Session) -> int:
    p = get_or_create_patient(s, "M1", "A", "B")
    return start_session(s, chair="c1", patient=p, device="sim", started=T0).id


def count(engine: Engine, session_id: int | None = None) -> int:
    q = select(func.count()).select_from(VitalReading)
    if session_id is not None:
        q = q.where(VitalReading.session_id == session_id)
    with Session(engine) as s:
        return int(s.scalar(q) or 0)


def test_sqlite_is_opened_in_wal_with_full_sync_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_database(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_writer_batches_readings_from_many_threads_and_keeps_utc(
    engine: Engine, writer: DatabaseWriter
) -> None:
    sid = writer.call(create)

    def produce(k: int) -> None:
        for i in range(200):
            writer.submit_readings(
                sid,
                [make_reading("hr", 60 + k, T0 + timedelta(seconds=i), quality=Quality.DEMO)],
            )

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.wait_idle(10)
    assert writer.stats.readings_committed == 800
    assert writer.stats.commits < 800  # batched, not one commit per reading
    assert writer.stats.max_exposure_s < 0.25 + 0.5
    assert count(engine) == 800
    with Session(engine) as s:
        row = s.scalars(select(VitalReading).order_by(VitalReading.id)).first()
        assert row is not None and row.host_time.tzinfo is not None
        assert row.quality == Quality.DEMO.value
        ts = s.get(TreatmentSession, sid)
        assert ts is not None and ts.started_at == T0
        # Device data is not audited row by row.
        n = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.entity == "vital_reading")
        )
        assert n == 0


def test_failed_operation_reports_its_error_and_writer_keeps_going(
    writer: DatabaseWriter,
) -> None:
    def bad(s: Session) -> None:
        raise ValueError("nope")

    fut = writer.submit(bad)
    with pytest.raises(ValueError, match="nope"):
        fut.result(5)
    assert writer.call(lambda s: 41 + 1) == 42
    assert writer.stats.errors == 1 and "nope" in writer.stats.last_error


def test_operations_run_as_the_given_user_or_the_writers(
    engine: Engine, staff: Staff, writer: DatabaseWriter
) -> None:
    writer.call(create)
    writer.call(lambda s: get_or_create_patient(s, "M2", "C", "D"), user_id=staff.physician)
    with Session(engine) as s:
        by = dict(
            s.execute(
                select(AuditEntry.entity_id, AuditEntry.user_id).where(
                    AuditEntry.entity == "patient"
                )
            ).all()
        )
    assert sorted(by.values()) == [staff.nurse, staff.physician]
    anonymous = DatabaseWriter(engine).start()
    try:
        with pytest.raises(MissingUserError):
            anonymous.call(create)
        assert anonymous.call(lambda s: 1) == 1  # reading needs no user
    finally:
        anonymous.stop()


def test_a_steady_stream_is_committed_at_least_every_250_ms(engine: Engine, staff: Staff) -> None:
    commits: list[CommitInfo] = []
    writer = DatabaseWriter(
        engine,
        flush_interval_s=MAX_FLUSH_INTERVAL_S,
        user_id=staff.nurse,
        on_commit=commits.append,
    ).start()
    try:
        sid = writer.call(create)
        end = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < end:
            writer.submit_readings(sid, [make_reading("spo2", 97, T0 + timedelta(seconds=i))])
            i += 1
            time.sleep(0.01)
        assert writer.wait_idle(10)
    finally:
        writer.stop()
    assert count(engine, sid) == i
    assert writer.stats.max_exposure_s <= MAX_FLUSH_INTERVAL_S + 0.15  # scheduling slack
    assert 4 <= len(commits) < i / 5
    assert commits[-1].total == i and sum(c.rows for c in commits) == i
    assert commits[-1].last_host_time == T0 + timedelta(seconds=i - 1)


def test_readings_wait_out_a_database_outage(
    engine: Engine, writer: DatabaseWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = writer.call(create)
    real = writer._insert
    failures = 3

    def flaky(rows: list[dict[str, Any]]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        real(rows)

    monkeypatch.setattr(writer, "_insert", flaky)
    for i in range(50):
        writer.submit_readings(sid, [make_reading("hr", 70, T0 + timedelta(seconds=i))])
        time.sleep(0.01)
    assert writer.wait_idle(15)
    assert count(engine, sid) == 50
    assert writer.stats.retries == 3 and writer.stats.readings_dropped == 0
    assert writer.stats.readings_committed == 50


def test_a_rejected_submission_loses_only_itself(engine: Engine, writer: DatabaseWriter) -> None:
    sid = writer.call(create)
    writer.submit_readings(sid, [make_reading("hr", 70, T0)])
    writer.submit_readings(sid + 1000, [make_reading("hr", 71, T0)])  # no such session: FK
    writer.submit_readings(sid, [make_reading("hr", 72, T0)])
    assert writer.wait_idle(10)
    assert count(engine) == 2
    assert writer.stats.readings_dropped == 1
    assert writer.stats.readings_committed == 2


def test_stop_commits_what_is_queued(engine: Engine, staff: Staff) -> None:
    writer = DatabaseWriter(engine, flush_interval_s=0.25, user_id=staff.nurse).start()
    sid = writer.call(create)
    for i in range(100):
        writer.submit_readings(sid, [make_reading("hr", 70, T0 + timedelta(seconds=i))])
    writer.stop()
    assert count(engine, sid) == 100
