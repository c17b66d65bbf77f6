"""Application services shared by the GUI wiring and the command line (no Qt, no widgets).

They build monitors from configuration, load the threshold profile, and open (and upgrade) the
database. Sessions are created and resumed here; the session-record operations (doses,
observations, manual vitals, corrections) and users/sign-in come from :mod:`ketamon.storage`
and are re-exported, so the UI needs only this module.

Record operations take the writer's Session: ``writer.call(lambda s: record_moaas(s, sid, 4,
now), user_id=user.id)``; the user is taken from there, stored as the author, and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

from devices.clock import Clock
from devices.protocols import protocol_class
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import SimulatedLink, SimulatorProtocol
from devices.transports import SerialTransport, TcpListenTransport, TcpTransport, Transport
from ketamon.config import ChairConfig, Config
from ketamon.domain.thresholds import ThresholdError, ThresholdProfile, parse_profile
from ketamon.resources import read_text
from ketamon.storage.database import DatabaseVersionError, make_engine
from ketamon.storage.migrate import UpgradeResult, upgrade_database
from ketamon.storage.records import (
    OpenSession,
    RecordError,
    assign_staff,
    audit_entries,
    discharge_session,
    edit_with_reason,
    end_session,
    find_patients,
    get_or_create_patient,
    list_open_sessions,
    profile_in_force,
    record_alarm,
    record_cadss,
    record_esketamine_device,
    record_manual_vitals,
    record_moaas,
    record_note,
    record_profile,
    record_rass,
    record_screening,
    record_side_effect,
    resume_session,
    set_phase,
    start_infusion,
    start_session,
    stop_infusion,
)
from ketamon.storage.users import (
    AuthenticatedUser,
    AuthError,
    UserError,
    authenticate,
    ensure_demo_users,
    system_user_id,
)

__all__ = [
    "AuthError",
    "AuthenticatedUser",
    "DatabaseVersionError",
    "Monitor",
    "OpenSession",
    "RecordError",
    "UpgradeResult",
    "UserError",
    "assign_staff",
    "audit_entries",
    "authenticate",
    "build_monitor",
    "discharge_session",
    "edit_with_reason",
    "end_session",
    "ensure_demo_users",
    "find_patients",
    "get_or_create_patient",
    "list_open_sessions",
    "load_profile",
    "open_database",
    "profile_in_force",
    "record_alarm",
    "record_cadss",
    "record_esketamine_device",
    "record_manual_vitals",
    "record_moaas",
    "record_note",
    "record_profile",
    "record_rass",
    "record_screening",
    "record_side_effect",
    "resume_session",
    "set_phase",
    "start_infusion",
    "start_session",
    "stop_infusion",
    "system_user_id",
]


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


def build_monitor(
    chair: ChairConfig,
    clock: Clock,
    *,
    source: str | None = None,
    raw_log: IO[bytes] | None = None,
) -> Monitor:
    """The transport and protocol for a chair; ``raw_log`` keeps the received bytes."""
    src = source or chair.name
    if chair.protocol == "simulator":
        proto = SimulatorProtocol(source=src, scenario=chair.scenario)
        return Monitor(SimulatedLink(proto, clock), proto)
    cls = protocol_class(chair.protocol)
    protocol = cls(source=src)
    if chair.listen is not None:
        return Monitor(TcpListenTransport(*chair.listen, raw_log=raw_log), protocol)
    if chair.tcp is not None:
        return Monitor(TcpTransport(*chair.tcp, raw_log=raw_log), protocol)
    assert chair.port is not None
    serial = chair.serial or cls.default_serial
    return Monitor(SerialTransport(chair.port, serial, raw_log=raw_log), protocol)


def open_database(url: str, *, backup_dir: Path | None = None) -> Engine:
    """Open the database and bring its schema up to date (SQLite: backup first).

    Raises :class:`DatabaseVersionError` for a database written by a newer ketamon and
    :class:`~ketamon.storage.database.DatabaseConfigError` when it cannot be reached.
    """
    engine = make_engine(url)
    try:
        upgrade_database(engine, backup_dir=backup_dir)
    except BaseException:
        engine.dispose()
        raise
    return engine
