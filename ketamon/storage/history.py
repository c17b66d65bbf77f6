"""A session's readings read back for its chart (after a restart, or in review)."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.readings import Quality, Reading
from ketamon.storage.models import VitalReading

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def session_readings(engine: Engine, session_id: int) -> list[Reading]:
    """Every stored reading of the session, oldest first (monitor and manual alike)."""
    if engine.dialect.name == "sqlite":
        return _sqlite_readings(engine, session_id)
    with Session(engine) as s:
        rows = s.execute(
            select(
                VitalReading.parameter,
                VitalReading.value,
                VitalReading.unit,
                VitalReading.mdc,
                VitalReading.host_time,
                VitalReading.device_time,
                VitalReading.quality,
                VitalReading.source,
                VitalReading.origin,
                VitalReading.channel,
            )
            .where(VitalReading.session_id == session_id)
            .order_by(VitalReading.host_time, VitalReading.id)
        ).all()
    return [
        Reading(
            parameter=r.parameter,
            value=r.value,
            unit=r.unit,
            mdc=r.mdc,
            host_time=r.host_time,
            device_time=r.device_time,
            quality=Quality(r.quality),
            source=r.source,
            origin=r.origin,
            channel=r.channel,
        )
        for r in rows
    ]


def _sqlite_readings(engine: Engine, session_id: int) -> list[Reading]:
    """The same rows read without the ORM's per-value date parsing: SQLite keeps UTC times as
    ISO text, which ``datetime.fromisoformat`` reads about ten times faster (a 3-hour session
    is some 30,000 readings, and the review desk and a restart wait for them)."""
    sql = (
        "SELECT parameter, value, unit, mdc, host_time, device_time, quality, source, origin, "
        "channel FROM vital_reading WHERE session_id = ? ORDER BY host_time, id"
    )
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, (session_id,)).fetchall()
    out: list[Reading] = []
    qualities: dict[int, Quality] = {}  # a Flag enum built per row is the slowest part
    parse = datetime.fromisoformat
    for parameter, value, unit, mdc, host, device, quality, source, origin, channel in rows:
        q = qualities.get(quality)
        if q is None:
            q = qualities[quality] = Quality(quality)
        out.append(
            Reading(  # positional, in Reading's field order (keywords cost here)
                parameter,
                value,
                unit,
                parse(host).replace(tzinfo=UTC),
                mdc,
                None if device is None else parse(device).replace(tzinfo=UTC),
                q,
                source,
                origin,
                channel,
            )
        )
    return out


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us_sql(engine: Engine, column: str) -> str:
    """SQL giving ``column`` (a stored UTC time) as exact integer microseconds since 1970 on
    PostgreSQL, and as its stored ISO text on SQLite (see :func:`epoch_us`)."""
    if engine.dialect.name == "sqlite":
        return column
    return f"(extract(epoch from {column}) * 1000000)::int8"


def epoch_us(values: Sequence[object]) -> IntArray:
    """Microseconds since 1970 from what :func:`epoch_us_sql` selected: integers as they are;
    SQLite's ISO text parsed by numpy in one go (some ten times faster than one
    ``datetime.fromisoformat`` per value, and exact to the microsecond)."""
    if values and isinstance(values[0], str):
        stamps = np.array(values, dtype="datetime64[us]")
        us: IntArray = stamps.astype(np.int64)
        return us
    return np.fromiter((int(v) for v in values), dtype=np.int64, count=len(values))  # type: ignore[call-overload]


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Column:
    """One parameter's stored readings as arrays, oldest first."""

    us: IntArray  # host receive time, microseconds since 1970 (exact)
    v: FloatArray
    quality: IntArray  # Quality bits as stored

    @property
    def t(self) -> FloatArray:
        """Epoch seconds, as the chart draws them."""
        t: FloatArray = self.us / 1e6
        return t

    @property
    def valid(self) -> BoolArray:
        ok: BoolArray = (self.quality & Quality.INVALID.value) == 0
        return ok


@dataclass(frozen=True, slots=True)
class SessionSeries:
    """A session's readings by parameter, as numpy columns: what the review chart, the session's
    figures and the REMS form read, without building a Python object per reading (a 3-hour
    session is some 32,000 readings; an 8-hour one 150,000)."""

    columns: dict[str, Column]

    @property
    def count(self) -> int:
        return sum(len(c.us) for c in self.columns.values())

    def valid_tuples(self, parameters: Iterable[str]) -> list[tuple[str, float, datetime]]:
        """(parameter, value, time) of the valid readings of ``parameters``, oldest first; the
        times equal the stored ones exactly."""
        out: list[tuple[str, float, datetime]] = []
        for p in parameters:
            c = self.columns.get(p)
            if c is None:
                continue
            ok = c.valid
            out += [
                (p, float(v), from_epoch_us(int(us)))
                for us, v in zip(c.us[ok], c.v[ok], strict=True)
            ]
        out.sort(key=lambda x: x[2])
        return out

    def lowest_valid(self, parameter: str, since: datetime | None) -> tuple[str, float, datetime]:
        """The lowest valid reading of ``parameter`` from ``since`` on, or LookupError."""
        c = self.columns.get(parameter)
        if c is None:
            raise LookupError(parameter)
        ok = c.valid
        if since is not None:
            ok = ok & (c.us >= (since - EPOCH) // timedelta(microseconds=1))
        if not ok.any():
            raise LookupError(parameter)
        i = int(np.argmin(np.where(ok, c.v, np.inf)))
        return parameter, float(c.v[i]), from_epoch_us(int(c.us[i]))


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while many tuples are made at once (no cycles are
    made; it would only rescan them, about 80 ms for an 8-hour session's readings)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def fetch_raw(engine: Engine, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
    """Rows as the database driver gives them (plain tuples: SQLAlchemy's Row objects cost
    about as much again as the fetch itself for 150,000 readings)."""
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql, args)
            return list(cur.fetchall())
        finally:
            cur.close()
    finally:
        conn.close()


def session_series(engine: Engine, session_id: int) -> SessionSeries:
    """Every stored reading of the session, by parameter, as arrays (:class:`SessionSeries`)."""
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = (
        f"SELECT parameter, value, {epoch_us_sql(engine, 'host_time')}, quality "
        f"FROM vital_reading WHERE session_id = {mark} ORDER BY host_time, id"
    )
    with _no_gc():  # 600,000 new objects for 8 hours: the collector would run every 700
        rows = fetch_raw(engine, sql, (session_id,))
        if not rows:
            return SessionSeries({})
        # one transposition in C, then one numpy conversion per column
        names_t, values_t, times_t, quality_t = zip(*rows, strict=True)
        del rows
    names = np.array(names_t)
    values = np.array(values_t, dtype=np.float64)
    us = epoch_us(times_t)
    quality = np.array(quality_t, dtype=np.int64)
    columns: dict[str, Column] = {}
    for name in np.unique(names):
        sel = names == name
        columns[str(name)] = Column(us[sel], values[sel], quality[sel])
    return SessionSeries(columns)
