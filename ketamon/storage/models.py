"""Typed SQLAlchemy 2.0 models. Every time is stored as UTC with its time zone.

The schema itself is created and changed only by the Alembic migrations in
``ketamon/storage/migrations`` (a test checks that they produce exactly these models).

Audited models carry ``__audit__ = True``: every insert, update and delete of them through the ORM
writes :class:`AuditEntry` rows in the same transaction (see :mod:`ketamon.storage.audit`).
Changing a recorded value (not-null → another value) needs a reason, except for the fields a model
lists in ``__audit_workflow__`` (state that moves on as the session runs). Event logs
(``__insert_only__``) may be added to but never changed.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ketamon.domain.session_rules import Phase, PrescriberDecision, Treatment

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: 64-bit keys on PostgreSQL (a busy clinic passes 2**31 readings within years); SQLite's
#: INTEGER PRIMARY KEY is already 64-bit and must be spelled INTEGER to alias the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


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


def _enum(cls: type[enum.Enum]) -> Enum:
    """Enums are stored as their lower-case values in a VARCHAR (no native types to migrate)."""
    return Enum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    __audit__: ClassVar[bool] = False
    __audit_workflow__: ClassVar[frozenset[str]] = frozenset()
    __audit_redact__: ClassVar[frozenset[str]] = frozenset()
    __insert_only__: ClassVar[bool] = False


# ---- enumerations ----------------------------------------------------------------------------


class Role(enum.StrEnum):
    NURSE = "nurse"
    PHYSICIAN = "physician"
    ADMIN = "admin"
    AUDITOR = "auditor"  # read-only review (clinical.md §8 item 42)
    THERAPIST = "therapist"  # notes on the sessions assigned to them (issue 15)
    SYSTEM = "system"  # the built-in account automatic writes are made under; cannot log in


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


class RemsEnrolment(enum.StrEnum):
    UNKNOWN = "unknown"
    NOT_ENROLLED = "not_enrolled"
    ENROLLED = "enrolled"
    NOT_APPLICABLE = "not_applicable"  # e.g. IV ketamine only, or an inpatient setting

    @classmethod
    def of(cls, enrolled: bool | None) -> RemsEnrolment:
        """The stored value for the domain's yes / no / not known."""
        if enrolled is None:
            return cls.UNKNOWN
        return cls.ENROLLED if enrolled else cls.NOT_ENROLLED

    @property
    def enrolled(self) -> bool | None:
        """The domain's yes / no / not known (not applicable counts as not known)."""
        return {RemsEnrolment.ENROLLED: True, RemsEnrolment.NOT_ENROLLED: False}.get(self)


# The treatment, the phase and the prescriber decision are the domain's own enumerations,
# stored by value: one definition each.
TreatmentType = Treatment
SessionPhase = Phase
__all__ = ["PrescriberDecision", "SessionPhase", "TreatmentType"]  # re-exported for storage


class StaffRole(enum.StrEnum):
    MONITORING = "monitoring"  # the healthcare provider conducting monitoring (PMF section 3)
    PRESCRIBER = "prescriber"  # prescriber on site
    ADMINISTERING = "administering"
    DISCHARGING = "discharging"


class DoseKind(enum.StrEnum):
    ESKETAMINE_DEVICE = "esketamine_device"  # one 28 mg nasal spray device
    IV_INFUSION = "iv_infusion"
    IM_INJECTION = "im_injection"
    ORAL = "oral"  # oral or sublingual
    OTHER = "other"


class ObservationKind(enum.StrEnum):
    MOAAS = "moaas"  # 0–5
    RASS = "rass"  # −5…+4
    CADSS = "cadss"  # item scores in ObservationItem (items 1–23, each 0–4)
    SIDE_EFFECT = "side_effect"
    NOTE = "note"
    # outcome scales (issue 15): the total in score, the items in ObservationItem
    PHQ9 = "phq9"
    BPRS_PLUS = "bprs_plus"
    CGI_S = "cgi_s"
    CGI_I = "cgi_i"
    MADRS = "madrs"


class Severity(enum.StrEnum):
    NONE = "none"
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class AuditAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LOGIN = "login"
    RESUME = "resume"


# ---- people ----------------------------------------------------------------------------------


class User(Base):
    """A person who signs in (or the built-in ``system`` account). Never deleted, only disabled."""

    __tablename__ = "app_user"
    __audit__ = True
    __audit_workflow__ = frozenset(
        {
            "active",
            "disabled_at",
            "last_login_at",
            "password_hash",
            "full_name",
            "failed_logins",
            "locked_at",
        }
    )
    __audit_redact__ = frozenset({"password_hash"})

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    credentials: Mapped[str] = mapped_column(String(64), default="")  # e.g. "RN", "MD"
    phone: Mapped[str] = mapped_column(String(64), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    #: argon2id hash; NULL for accounts that cannot log in (the system account)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: failed sign-ins since the last good one; at the site's limit the account locks
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EmergencyAccess(Base):
    """A break-glass sign-in: physician rights for a limited time, with a typed reason; open
    for an admin's review until reviewed."""

    __tablename__ = "emergency_access"
    __audit__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    reason: Mapped[str] = mapped_column(Text)
    station: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_note: Mapped[str] = mapped_column(Text, default="", server_default="")


class Patient(Base):
    __tablename__ = "patient"
    __audit__ = True
    __audit_workflow__ = frozenset({"weight_kg", "rems_enrolment", "rems_enrolled_on"})
    __table_args__ = (CheckConstraint("weight_kg > 0", name="weight_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    middle_initial: Mapped[str] = mapped_column(String(4), default="")
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[Sex | None] = mapped_column(_enum(Sex))
    weight_kg: Mapped[float | None] = mapped_column(Float)
    rems_enrolment: Mapped[RemsEnrolment] = mapped_column(
        _enum(RemsEnrolment), default=RemsEnrolment.UNKNOWN
    )
    rems_enrolled_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    sessions: Mapped[list[TreatmentSession]] = relationship(back_populates="patient")


# ---- the session -----------------------------------------------------------------------------


class TreatmentSession(Base):
    """One treatment at one chair. Total minutes and the three PMF blood pressures are derived
    from dose times, ``ended_at`` and the readings; they are not stored twice."""

    __tablename__ = "treatment_session"
    __audit__ = True
    __audit_workflow__ = frozenset({"phase", "device"})
    __table_args__ = (
        CheckConstraint("weight_kg > 0", name="weight_positive"),
        CheckConstraint("ready_to_leave_min >= 0", name="ready_to_leave_not_negative"),
        Index("ix_treatment_session_open", "chair", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    chair: Mapped[str] = mapped_column(String(64))
    treatment: Mapped[TreatmentType] = mapped_column(
        _enum(TreatmentType), default=TreatmentType.OTHER
    )
    phase: Mapped[SessionPhase] = mapped_column(_enum(SessionPhase), default=SessionPhase.PRE_DOSE)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    first_dose_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the monitor feeding this session (protocol / port); readings name it in their ``source``
    device: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    #: weight recorded for this session (IV mg/kg)
    weight_kg: Mapped[float | None] = mapped_column(Float)
    # REMS Patient Monitoring Form answers (clinical.md §1.4, §8 item 30); NULL = not answered.
    first_treatment: Mapped[bool | None] = mapped_column(Boolean)
    concomitant_benzodiazepine: Mapped[bool | None] = mapped_column(Boolean)
    concomitant_hypnotic: Mapped[bool | None] = mapped_column(Boolean)
    concomitant_opioid: Mapped[bool | None] = mapped_column(Boolean)
    concomitant_psychostimulant: Mapped[bool | None] = mapped_column(Boolean)
    concomitant_maoi: Mapped[bool | None] = mapped_column(Boolean)
    vitals_ok_before: Mapped[bool | None] = mapped_column(Boolean)
    vitals_ok_end: Mapped[bool | None] = mapped_column(Boolean)
    sedation: Mapped[bool | None] = mapped_column(Boolean)
    dissociation: Mapped[bool | None] = mapped_column(Boolean)
    respiratory_depression: Mapped[bool | None] = mapped_column(Boolean)
    pulse_oximetry_used: Mapped[bool | None] = mapped_column(Boolean)
    serious_adverse_event: Mapped[bool | None] = mapped_column(Boolean)
    #: "If there were no 2-hour minimum, when would this patient have been ready to leave?"
    ready_to_leave_min: Mapped[int | None] = mapped_column(Integer)
    # The plan (esketamine 56/84 mg; IV mg/kg over minutes).
    planned_dose_mg: Mapped[float | None] = mapped_column(Float)
    planned_mg_per_kg: Mapped[float | None] = mapped_column(Float)
    planned_minutes: Mapped[float | None] = mapped_column(Float)
    # Pre-dose screening (clinical.md §8 items 3, 4) and discharge (items 9, 10).
    fasting_confirmed: Mapped[bool | None] = mapped_column(Boolean)
    escort_confirmed: Mapped[bool | None] = mapped_column(Boolean)
    predose_decision: Mapped[PrescriberDecision | None] = mapped_column(_enum(PrescriberDecision))
    predose_decision_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    predose_decision_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: physician override for a missing pre-dose blood pressure
    predose_override_reason: Mapped[str | None] = mapped_column(Text)
    predose_override_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    #: discharge checklist answers, a JSON object {item: true/false}
    discharge_checklist: Mapped[str | None] = mapped_column(Text)
    #: physician override for discharge before the minimum observation time
    early_discharge_reason: Mapped[str | None] = mapped_column(Text)
    early_discharge_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))

    patient: Mapped[Patient] = relationship(back_populates="sessions")
    staff: Mapped[list[SessionStaff]] = relationship(back_populates="session")
    doses: Mapped[list[DoseEvent]] = relationship(
        back_populates="session", order_by="DoseEvent.given_at"
    )


class SessionStaff(Base):
    """Who looked after the session, and as what."""

    __tablename__ = "session_staff"
    __audit__ = True
    __table_args__ = (UniqueConstraint("session_id", "user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    session: Mapped[TreatmentSession] = relationship(back_populates="staff")
    user: Mapped[User] = relationship()


class SessionThresholdProfile(Base):
    """The threshold profile in force for a session, as a snapshot (JSON) from ``effective_from``
    until the next snapshot of the same session."""

    __tablename__ = "session_threshold_profile"
    __audit__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(500), default="")
    content: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())


class DoseEvent(Base):
    """One esketamine device, one IV infusion (start … stop), or another dose."""

    __tablename__ = "dose_event"
    __audit__ = True
    __table_args__ = (
        CheckConstraint("mg > 0", name="mg_positive"),
        CheckConstraint("device_number >= 1", name="device_number_positive"),
        CheckConstraint("weight_kg > 0", name="weight_positive"),
        CheckConstraint("rate >= 0", name="rate_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    kind: Mapped[DoseKind] = mapped_column(_enum(DoseKind))
    #: time of the device (esketamine) or start of the infusion (IV)
    given_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    drug: Mapped[str] = mapped_column(String(64), default="")
    mg: Mapped[float] = mapped_column(Float)
    device_number: Mapped[int | None] = mapped_column(Integer)
    lot: Mapped[str | None] = mapped_column(String(64))
    #: the weight the mg/kg figure was worked out from, kept with the dose
    weight_kg: Mapped[float | None] = mapped_column(Float)
    mg_per_kg: Mapped[float | None] = mapped_column(Float)
    rate: Mapped[float | None] = mapped_column(Float)
    rate_unit: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    session: Mapped[TreatmentSession] = relationship(back_populates="doses")


class VitalReading(Base):
    """One reading as a tidy row: time, parameter, value, unit, source, quality flags.

    Monitor readings are bulk-inserted by the writer (device data, not audited: ``source`` names
    the chair/monitor, the session names the device). Manual entries go through the ORM, carry
    ``Quality.MANUAL``, ``source='manual'`` and the nurse in ``entered_by_id``, and are audited.
    """

    __tablename__ = "vital_reading"
    __audit__ = True
    __table_args__ = (Index("ix_vital_reading_session_time", "session_id", "host_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"))
    parameter: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    mdc: Mapped[str | None] = mapped_column(String(64))
    host_time: Mapped[datetime] = mapped_column(UTCDateTime())
    device_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    quality: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(200), default="")
    #: what measured it (ecg, pleth, cuff, impedance, co2, a temperature site…) and the device's
    #: channel when it has several of one kind (HL7 OBX-4, Datex T1-T4); "" when not said
    origin: Mapped[str] = mapped_column(String(32), default="", server_default="")
    channel: Mapped[str] = mapped_column(String(32), default="", server_default="")
    entered_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    #: the server's time of the writing transaction (PostgreSQL ``now()``; NULL on SQLite, where
    #: the station is the server): with ``host_time`` (the station's clock) for clock honesty
    server_time: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), server_default=FetchedValue()
    )


class WaveformBlock(Base):
    """A contiguous block of one waveform's samples (the pleth, about ten seconds of it).

    Device data, like :class:`VitalReading`: written by the one writer, never updated, not
    audited row by row. ``samples`` are little-endian float32; sample ``i`` was taken at
    ``start_at + i / rate_hz``.
    """

    __tablename__ = "waveform_block"
    __table_args__ = (
        Index("ix_waveform_block_session_time", "session_id", "parameter", "start_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"))
    parameter: Mapped[str] = mapped_column(String(32))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rate_hz: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    samples: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(200), default="")


class Observation(Base):
    """A nurse's observation: MOAA/S, RASS, CADSS (items below), a side effect, or a note."""

    __tablename__ = "observation"
    __audit__ = True
    __table_args__ = (Index("ix_observation_session_time", "session_id", "observed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"))
    kind: Mapped[ObservationKind] = mapped_column(_enum(ObservationKind))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    author_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    #: MOAA/S or RASS level (CADSS: the items hold the scores)
    score: Mapped[int | None] = mapped_column(Integer)
    #: side-effect checklist item id (clinical.md §4), e.g. "nausea"
    item: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[Severity | None] = mapped_column(_enum(Severity))
    onset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    serious: Mapped[bool | None] = mapped_column(Boolean)
    text: Mapped[str] = mapped_column(Text, default="")
    #: an addendum or correction points at the observation it amends (signed sessions, later)
    amends_id: Mapped[int | None] = mapped_column(ForeignKey("observation.id"))

    items: Mapped[list[ObservationItem]] = relationship(
        back_populates="observation", order_by="ObservationItem.item"
    )

    @property
    def total(self) -> int | None:
        """CADSS total (sum of the item scores); None for other kinds."""
        if self.kind is not ObservationKind.CADSS:
            return None
        return sum(i.score for i in self.items)


class ObservationItem(Base):
    """One item score of a multi-item scale (CADSS: item 1–23, score 0–4)."""

    __tablename__ = "observation_item"
    __audit__ = True
    __table_args__ = (
        UniqueConstraint("observation_id", "item"),
        CheckConstraint("item >= 1", name="item_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    observation_id: Mapped[int] = mapped_column(ForeignKey("observation.id"), index=True)
    item: Mapped[int] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)

    observation: Mapped[Observation] = relationship(back_populates="items")


class AlarmRecord(Base):
    """An alarm event (raised, escalated, acknowledged, cleared) as it happened.

    Raised and cleared events come from the alarm engine (no user); an acknowledgement names
    the user who acted. An event log: rows are added, never changed.
    """

    __tablename__ = "alarm_event"
    __insert_only__ = True

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    technical: Mapped[bool] = mapped_column(Boolean, default=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    #: the server's time of the writing transaction (PostgreSQL; NULL on SQLite)
    server_time: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), server_default=FetchedValue()
    )


class DeviceLinkEvent(Base):
    """Connection state changes of a chair's monitor (become technical alarms in the app)."""

    __tablename__ = "device_link_event"
    __insert_only__ = True

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(UTCDateTime())


class SessionEntryRow(Base):
    """One entry of a session's record (:class:`ketamon.domain.record.SessionEntry`): the
    session's state is the fold of its entries in id order. An event log: rows are added, never
    changed (the ORM refuses to, and database triggers refuse raw SQL). Each row gets its audit
    entry from the repository that writes it (``ketamon.storage.repository``), in the same
    transaction; the tidy tables (doses, observations, ...) are kept as a projection of them.
    """

    __tablename__ = "session_entry"
    __insert_only__ = True
    __table_args__ = (Index("ix_session_entry_session", "session_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    author_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    authorised_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    #: the entry's data, a JSON object
    data: Mapped[str] = mapped_column(Text)
    #: the id of the tidy row the entry produced (observation, dose_event, ...), if any
    ref_id: Mapped[int | None] = mapped_column(BigInteger)


class AuditEntry(Base):
    """One append-only audit record: who, when (UTC, plus the station's offset for local time),
    what (entity, id, field), old → new (JSON), and why.

    Nothing in ketamon updates or deletes these rows; the ORM refuses to, and database triggers
    (created by the migrations) refuse raw SQL too. The rows form a hash chain (tamper
    evidence): ``entry_hash`` is the SHA-256 of every other column, ``prev_hash`` the previous
    row's ``entry_hash``, and ``subject_hash`` seals the whole ``session_entry`` row an entry
    records; see :mod:`ketamon.storage.chain`.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    utc_offset_s: Mapped[int] = mapped_column(Integer, default=0)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    action: Mapped[AuditAction] = mapped_column(_enum(AuditAction))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    #: the treatment session the change belongs to, if any (no foreign key: audit outlives all)
    session_id: Mapped[int | None] = mapped_column(Integer, index=True)
    field: Mapped[str | None] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    station: Mapped[str] = mapped_column(String(200), default="")
    prev_hash: Mapped[str | None] = mapped_column(String(128))
    entry_hash: Mapped[str | None] = mapped_column(String(128))
    #: SHA-256 of the whole append-only row this entry records (a session_entry), else NULL
    subject_hash: Mapped[str | None] = mapped_column(String(128))


# ---- outbound HL7 v2 (ketamon.storage.outbox, ketamon.hl7out) ---------------------------------


class Hl7Outbox(Base):
    """One ORU^R01 message for the clinic's interface engine, from queued until acknowledged.

    ``control_id`` (MSH-10) is fixed when the message is made and unique, so neither a second
    scan nor a restart makes a second message for the same batch or signature. Not audited row
    by row: the message is derived from data that is.
    """

    __tablename__ = "hl7_outbox"
    __table_args__ = (Index("ix_hl7_outbox_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    control_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # readings | signed
    session_id: Mapped[int] = mapped_column(Integer, index=True)
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # queued | sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ack_code: Mapped[str] = mapped_column(String(8), default="")


class Hl7OutCursor(Base):
    """How far the outbound scan has read (``readings``: the last vital_reading id queued;
    ``entries``: the last session_entry id looked at for signatures)."""

    __tablename__ = "hl7_out_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class AuditGap(Base):
    """A tombstone in the audit hash chain, left by ``ketamon purge`` where it deleted a run of
    audit rows past the retention period (see :mod:`ketamon.storage.retention`)."""

    __tablename__ = "audit_gap"
    __table_args__ = (UniqueConstraint("next_id", name="uq_audit_gap_next_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purge_audit_id: Mapped[int] = mapped_column(BigInteger)
    after_id: Mapped[int | None] = mapped_column(BigInteger)
    next_id: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    first_prev_hash: Mapped[str] = mapped_column(String(64))
    last_entry_hash: Mapped[str] = mapped_column(String(64))


# ---- the clinic: stations on one PostgreSQL (ketamon.clinic) ---------------------------------


class Station(Base):
    """A ketamon station (a PC with its chairs, with or without a window) in a clinic.

    ``heartbeat_at`` is the server's clock at the last heartbeat, ``station_time`` the station's
    clock then, ``clock_offset_s`` their difference (station minus server, half the round trip
    allowed for). A central view shows a station whose heartbeat is older than 10 s as offline.
    """

    __tablename__ = "station"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16), default="headless")  # headless | app
    version: Mapped[str] = mapped_column(String(32), default="")
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    station_time: Mapped[datetime] = mapped_column(UTCDateTime())
    clock_offset_s: Mapped[float] = mapped_column(Float, default=0.0)
    #: readings held on the station's disk, not yet in the database (its last report)
    spooled: Mapped[int] = mapped_column(Integer, default=0)


class StationChair(Base):
    """A chair run by a station: its session now, its monitor link and its next item due (the
    station updates the row when they change; the commit is published to central views)."""

    __tablename__ = "station_chair"

    chair: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("treatment_session.id"))
    link: Mapped[str] = mapped_column(String(200), default="")
    next_due: Mapped[str] = mapped_column(String(200), default="")
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# ---- the treatment course (issue 15) ---------------------------------------------------------


class TreatmentCourse(Base):
    """A patient's course: its plan and where its screening stands (a projection of its
    ``course_entry`` rows, which are the record)."""

    __tablename__ = "treatment_course"
    __audit__ = True
    #: kept in step with the course's record by the repository (the entries say why)
    __audit_workflow__ = frozenset(
        {"screened_at", "contraindications_open", "precautions", "closed_at"}
    )
    __table_args__ = (Index("ix_treatment_course_patient", "patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    indication: Mapped[str] = mapped_column(String(200))
    treatment: Mapped[str] = mapped_column(String(32))
    start_date: Mapped[date] = mapped_column(Date)
    induction_sessions: Mapped[int] = mapped_column(Integer)
    induction_per_week: Mapped[float] = mapped_column(Float)
    maintenance_sessions: Mapped[int] = mapped_column(Integer)
    maintenance_interval_days: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    screened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: contraindications found at the latest screening and not overridden (comma-separated)
    contraindications_open: Mapped[str] = mapped_column(Text, default="")
    precautions: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CourseEntryRow(Base):
    """One entry of a course's record (:class:`ketamon.domain.course.CourseEntry`): opened,
    screened, overridden, closed. Append-only like ``session_entry``; each has its audit row."""

    __tablename__ = "course_entry"
    __insert_only__ = True
    __table_args__ = (Index("ix_course_entry_course", "course_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("treatment_course.id"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    author_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    data: Mapped[str] = mapped_column(Text)


class DoseWaste(Base):
    """Drug wasted, or a partly used esketamine device disposed, witnessed by a second user."""

    __tablename__ = "dose_waste"
    __audit__ = True
    __table_args__ = (
        CheckConstraint("mg > 0", name="mg_positive"),
        CheckConstraint("witnessed_by_id <> recorded_by_id", name="witness_is_second_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("treatment_session.id"), index=True)
    wasted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    product: Mapped[str] = mapped_column(String(64))
    lot: Mapped[str] = mapped_column(String(64))
    mg: Mapped[float] = mapped_column(Float)
    device_number: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    witnessed_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
