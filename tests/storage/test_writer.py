from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from devices.readings import Quality, make_reading
from ketamon.services import get_or_create_patient, open_database, start_session
from ketamon.storage.models import TreatmentSession, VitalReading
from ketamon.storage.writer import DatabaseWriter

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_sqlite_is_opened_in_wal_with_full_sync_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_database(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_writer_batches_readings_from_many_threads_and_keeps_utc(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_database(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    writer = DatabaseWriter(engine, flush_interval_s=0.05).start()
    try:

        def create(s: Session) -> int:
            p = get_or_create_patient(s, "M1", "A", "B")
            return start_session(s, chair="c1", patient=p, device="sim", started=T0).id

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
    finally:
        writer.stop()
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(VitalReading)) == 800
        row = s.scalars(select(VitalReading).order_by(VitalReading.id)).first()
        assert row is not None and row.host_time.tzinfo is not None
        assert row.quality == Quality.DEMO.value
        ts = s.get(TreatmentSession, sid)
        assert ts is not None and ts.started_at == T0


def test_failed_operation_reports_its_error_and_writer_keeps_going(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_database(f"sqlite:///{tmp_path / 'k.sqlite3'}")
    writer = DatabaseWriter(engine).start()
    try:

        def bad(s: Session) -> None:
            raise ValueError("nope")

        fut = writer.submit(bad)
        try:
            fut.result(5)
        except ValueError as exc:
            assert "nope" in str(exc)
        else:
            raise AssertionError("expected the error back")
        assert writer.call(lambda s: 41 + 1) == 42
    finally:
        writer.stop()
