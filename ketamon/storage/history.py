"""A session's readings read back for its chart (after a restart, or in review)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.readings import Quality, Reading
from ketamon.storage.models import VitalReading


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
        )
        for r in rows
    ]


def _sqlite_readings(engine: Engine, session_id: int) -> list[Reading]:
    """The same rows read without the ORM's per-value date parsing: SQLite keeps UTC times as
    ISO text, which ``datetime.fromisoformat`` reads about ten times faster (a 3-hour session
    is some 30,000 readings, and the review desk and a restart wait for them)."""
    sql = (
        "SELECT parameter, value, unit, mdc, host_time, device_time, quality, source "
        "FROM vital_reading WHERE session_id = ? ORDER BY host_time, id"
    )
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, (session_id,)).fetchall()
    out: list[Reading] = []
    qualities: dict[int, Quality] = {}  # a Flag enum built per row is the slowest part
    parse = datetime.fromisoformat
    for parameter, value, unit, mdc, host, device, quality, source in rows:
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
            )
        )
    return out
