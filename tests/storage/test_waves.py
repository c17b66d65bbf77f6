"""The pleth stored with its session and read back for review (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devices.readings import Quality, Waveform, make_reading
from ketamon.acquisition.buffers import TrendBuffers
from ketamon.services import get_or_create_patient, start_session
from ketamon.storage.audit import acting_as
from ketamon.storage.history import session_readings, session_series
from ketamon.storage.models import WaveformBlock
from ketamon.storage.waves import WaveformRecorder, session_waveform
from ketamon.storage.writer import DatabaseWriter

from .conftest import Staff

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RATE = 125.0


def new_session(engine: Engine, staff: Staff, mrn: str = "W-1") -> int:
    with Session(engine) as s, s.begin(), acting_as(s, staff.nurse):
        p = get_or_create_patient(s, mrn, "Wave", "Form")
        return start_session(s, chair="c1", patient=p, device="sim", started=T0).id


def blocks(start: datetime, seconds: float, per_block: int = 12) -> list[Waveform]:
    """The pleth as a monitor hands it over: small blocks, a sine of sample numbers."""
    out, n, k = [], int(seconds * RATE), 0
    while k < n:
        m = min(per_block, n - k)
        t = start + timedelta(seconds=k / RATE)
        out.append(Waveform("pleth", t, RATE, tuple(float(k + i) for i in range(m))))
        k += m
    return out


def stored_rows(engine: Engine, sid: int) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(WaveformBlock).where(WaveformBlock.session_id == sid)
        return int(s.scalar(q) or 0)


def test_blocks_join_into_ten_second_rows_and_read_back_sample_for_sample(
    engine: Engine, writer: DatabaseWriter, staff: Staff
) -> None:
    sid = new_session(engine, staff)
    rec = WaveformRecorder(writer.submit, source="c1")
    for w in blocks(T0, 65.0):
        rec.add(sid, [w])
    rec.flush()
    assert writer.wait_idle(10)
    assert stored_rows(engine, sid) == 7  # six full rows of 10 s and the last 5 s
    t, v = session_waveform(engine, sid)
    assert len(v) == int(65 * RATE) == rec.samples_submitted
    assert np.array_equal(v, np.arange(len(v), dtype=np.float64))  # float32 keeps these exact
    assert t[0] == pytest.approx(T0.timestamp())
    assert np.allclose(np.diff(t), 1 / RATE, atol=1e-6)  # epoch doubles: ~1e-7 s


def test_a_gap_starts_a_new_row_and_reads_back_as_a_break(
    engine: Engine, writer: DatabaseWriter, staff: Staff
) -> None:
    sid = new_session(engine, staff)
    rec = WaveformRecorder(writer.submit, source="c1")
    for w in blocks(T0, 3.0):
        rec.add(sid, [w])
    later = T0 + timedelta(seconds=20)  # a cable pull of 17 s
    for w in blocks(later, 2.0):
        rec.add(sid, [w])
    rec.flush()
    assert writer.wait_idle(10)
    assert stored_rows(engine, sid) == 2
    t, v = session_waveform(engine, sid)
    assert len(v) == int(5 * RATE) + 1
    gap = int(np.nonzero(np.isnan(v))[0][0])
    assert gap == int(3 * RATE)
    assert t[gap - 1] < t[gap] < t[gap + 1] == pytest.approx(later.timestamp())


def test_no_session_stores_nothing_and_a_new_session_starts_its_own_rows(
    engine: Engine, writer: DatabaseWriter, staff: Staff
) -> None:
    first, second = new_session(engine, staff, "W-1"), new_session(engine, staff, "W-2")
    rec = WaveformRecorder(writer.submit)
    w = blocks(T0, 1.0)
    rec.add(first, w[:5])
    rec.add(None, w[5:7])  # the session ended: what was open is stored, these are not
    rec.add(second, w[7:])
    rec.flush()
    assert writer.wait_idle(10)
    assert len(session_waveform(engine, first)[1]) == 60
    assert len(session_waveform(engine, second)[1]) == RATE - 7 * 12


def test_session_series_matches_the_readings_row_for_row(
    engine: Engine, writer: DatabaseWriter, staff: Staff
) -> None:
    sid = new_session(engine, staff)
    readings = []
    for s in range(120):
        at = T0 + timedelta(seconds=s, microseconds=123456)
        readings += [make_reading("hr", 60 + s % 7, at), make_reading("spo2", 99 - s % 5, at)]
        if s % 30 == 0:
            q = Quality.INVALID if s == 60 else Quality.NONE
            readings.append(make_reading("nibp_sys", 120 + s, at, quality=q))
    writer.submit_readings(sid, readings)
    assert writer.wait_idle(10)
    series = session_series(engine, sid)
    rows = session_readings(engine, sid)
    assert series.count == len(rows) == len(readings)
    for p in ("hr", "spo2", "nibp_sys"):
        mine = [r for r in rows if r.parameter == p]
        col = series.columns[p]
        assert list(col.v) == [r.value for r in mine]
        assert list(col.valid) == [r.valid for r in mine]
        assert list(col.t) == [r.host_time.timestamp() for r in mine]
    assert series.valid_tuples(["nibp_sys"]) == [
        (r.parameter, r.value, r.host_time) for r in rows if r.parameter == "nibp_sys" and r.valid
    ]
    low = series.lowest_valid("spo2", T0 + timedelta(seconds=10))
    assert low[1] == 95
    with pytest.raises(LookupError):
        series.lowest_valid("rr", None)


def test_buffers_load_a_column_as_extend_would() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([70.0, 71.0, 300.0, 72.0])
    bad = np.array([False, False, True, False])
    loaded, extended = TrendBuffers(capacity=3), TrendBuffers(capacity=3)
    loaded.load("hr", t, v, bad, unit="/min")
    extended.extend(
        make_reading("hr", float(x), datetime.fromtimestamp(float(s), UTC), quality=q)
        for s, x, q in zip(
            t, v, [Quality.INVALID if b else Quality.NONE for b in bad], strict=True
        )
    )
    a, b = loaded.series("hr"), extended.series("hr")
    assert a is not None and b is not None
    for f in ("t", "v", "invalid"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)
    assert a.invalid.any() and np.isnan(a.v[a.invalid]).all()  # never drawn as real
    assert loaded.latest()["hr"][0].value == extended.latest()["hr"][0].value == 72.0


def test_readings_keep_their_origin_and_channel(
    engine: Engine, writer: DatabaseWriter, staff: Staff
) -> None:
    sid = new_session(engine, staff)
    two = [
        make_reading("spo2", 97, T0, origin="pleth", channel="1.2.1.1"),
        make_reading("spo2", 95, T0, origin="pleth", channel="1.2.1.2"),
        make_reading("pr", 72, T0, origin="ecg"),
    ]
    writer.submit_readings(sid, two)
    assert writer.wait_idle(10)
    back = session_readings(engine, sid)
    assert sorted((r.parameter, r.origin, r.channel) for r in back) == sorted(
        (r.parameter, r.origin, r.channel) for r in two
    )
