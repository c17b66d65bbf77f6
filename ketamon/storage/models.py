"""Typed SQLAlchemy 2.0 models. Every time is stored as UTC with its time zone."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zone type)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TreatmentType(enum.StrEnum):
    ESKETAMINE = "esketamine"
    IV_KETAMINE = "iv_ketamine"
    OTHER = "other"


class SessionPhase(enum.StrEnum):
    PRE_DOSE = "pre_dose"
    DOSING = "dosing"
    OBSERVATION = "observation"
    READY_FOR_DISCHARGE = "ready_for_discharge"
    DISCHARGED = "discharged"
    ABANDONED = "abandoned"


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    sessions: Mapped[list[TreatmentSession]] = relationship(back_populates="patient")


class TreatmentSession(Base):
    __tablename__ = "treatment_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    chair: Mapped[str] = mapped_column(String(64))
    treatment: Mapped[TreatmentType] = mapped_column(
        Enum(TreatmentType, native_enum=False, length=32), default=TreatmentType.OTHER
    )
    phase: Mapped[SessionPhase] = mapped_column(
        Enum(SessionPhase, native_enum=False, length=32), default=SessionPhase.PRE_DOSE
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    first_dose_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    device: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")

    patient: Mapped[Patient] = relationship(back_populates="sessions")


class VitalReading(Base):
    """One reading as a tidy row: time, parameter, value, unit, source, quality flags."""

    __tablename__ = "vital_reading"
    __table_args__ = (Index("ix_vital_reading_session_time", "session_id", "host_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"))
    parameter: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    mdc: Mapped[str | None] = mapped_column(String(64))
    host_time: Mapped[datetime] = mapped_column(UTCDateTime())
    device_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    quality: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(200), default="")


class AlarmRecord(Base):
    """An alarm event (raised, escalated, acknowledged, cleared) as it happened."""

    __tablename__ = "alarm_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    technical: Mapped[bool] = mapped_column(default=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    user: Mapped[str | None] = mapped_column(String(64))


class DeviceLinkEvent(Base):
    """Connection state changes of a chair's monitor (become technical alarms in the app)."""

    __tablename__ = "device_link_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
