"""A session's readings read back for its chart (after a restart, or in review)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.readings import Quality, Reading
from ketamon.storage.models import VitalReading


def session_readings(engine: Engine, session_id: int) -> list[Reading]:
    """Every stored reading of the session, oldest first (monitor and manual alike)."""
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
