"""Application services shared by the GUI wiring and the command line (no Qt, no widgets).

They build monitors from configuration, load the threshold profile, and open the database and
its writer. Sessions are created and resumed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devices.clock import Clock
from devices.protocols import protocol_class
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import SimulatedLink, SimulatorProtocol
from devices.transports import SerialTransport, TcpTransport, Transport
from ketamon.config import ChairConfig, Config
from ketamon.domain.thresholds import ThresholdError, ThresholdProfile, parse_profile
from ketamon.resources import read_text
from ketamon.storage.database import create_schema, make_engine
from ketamon.storage.models import (
    AlarmRecord,
    DeviceLinkEvent,
    Patient,
    TreatmentSession,
    TreatmentType,
)


def load_profile(config: Config) -> ThresholdProfile:
    if config.thresholds_file:
        path = Path(config.thresholds_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ThresholdError(f"{path}: cannot read threshold profile: {exc}") from exc
        return parse_profile(text, str(path))
    return parse_profile(read_text("thresholds.toml"), "resources/thresholds.toml")


@dataclass(frozen=True)
class Monitor:
    transport: Transport
    protocol: DeviceProtocol


def build_monitor(chair: ChairConfig, clock: Clock, *, source: str | None = None) -> Monitor:
    src = source or chair.name
    if chair.protocol == "simulator":
        proto = SimulatorProtocol(source=src, scenario=chair.scenario)
        return Monitor(SimulatedLink(proto, clock), proto)
    cls = protocol_class(chair.protocol)
    protocol = cls(source=src)
    if chair.tcp is not None:
        return Monitor(TcpTransport(*chair.tcp), protocol)
    assert chair.port is not None
    return Monitor(SerialTransport(chair.port, chair.serial or cls.default_serial), protocol)


def open_database(url: str) -> Engine:
    engine = make_engine(url)
    create_schema(engine)
    return engine


def find_open_session(s: Session, chair: str) -> TreatmentSession | None:
    return s.scalars(
        select(TreatmentSession)
        .where(TreatmentSession.chair == chair, TreatmentSession.ended_at.is_(None))
        .order_by(TreatmentSession.started_at.desc())
    ).first()


def get_or_create_patient(s: Session, mrn: str, first: str, last: str) -> Patient:
    p = s.scalars(select(Patient).where(Patient.mrn == mrn)).first()
    if p is None:
        p = Patient(mrn=mrn, first_name=first, last_name=last)
        s.add(p)
        s.flush()
    return p


def start_session(
    s: Session,
    *,
    chair: str,
    patient: Patient,
    device: str,
    started: datetime,
    treatment: TreatmentType = TreatmentType.OTHER,
) -> TreatmentSession:
    ts = TreatmentSession(
        patient_id=patient.id, chair=chair, device=device, started_at=started, treatment=treatment
    )
    s.add(ts)
    s.flush()
    return ts


def record_link_event(
    s: Session, session_id: int, state: str, reason: str, when: datetime
) -> None:
    s.add(DeviceLinkEvent(session_id=session_id, state=state, reason=reason, time=when))


def record_alarm(
    s: Session,
    session_id: int,
    *,
    key: str,
    action: str,
    priority: str,
    message: str,
    when: datetime,
    technical: bool = False,
    user: str | None = None,
) -> None:
    s.add(
        AlarmRecord(
            session_id=session_id,
            key=key,
            action=action,
            priority=priority,
            message=message,
            time=when,
            technical=technical,
            user=user,
        )
    )
