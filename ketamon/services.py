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

    A SQLite URL with a key policy (``ketamon.config.database_url``) opens an encrypted
    database; an unencrypted one from an earlier ketamon is encrypted in place first, after an
    encrypted, checked backup, and the change is audited.

    Raises :class:`DatabaseVersionError` for a database written by a newer ketamon,
    :class:`~ketamon.storage.crypto.DatabaseKeyError` for a wrong or missing key and
    :class:`~ketamon.storage.database.DatabaseConfigError` when it cannot be reached.
    """
    encrypted_from_plain = _encrypt_plain_database(url, backup_dir)
    engine = make_engine(url)
    try:
        upgrade_database(engine, backup_dir=backup_dir)
        if encrypted_from_plain is not None:
            _audit_encryption(engine, encrypted_from_plain)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _encrypt_plain_database(url: str, backup_dir: Path | None) -> tuple[str, Path] | None:
    """Encrypt an unencrypted SQLite file in place when the URL's policy wants a key: returns
    (the key source, the backup), or None when there was nothing to do."""
    from sqlalchemy.engine import make_url

    from ketamon.storage import crypto
    from ketamon.storage.database import normalise_url, sqlite_path
    from ketamon.storage.migrate import default_backup_dir

    u = make_url(normalise_url(url))
    if u.get_backend_name() != "sqlite":
        return None
    u, settings = crypto.settings_of(u)
    path = sqlite_path(u)
    if settings is None or path is None or crypto.file_state(path) != "plain":
        return None
    key = crypto.resolve_key(path, settings)
    backup = crypto.encrypt_in_place(path, key, backup_dir or default_backup_dir(path))
    return settings.source, backup


def _audit_encryption(engine: Engine, done: tuple[str, Path]) -> None:
    from sqlalchemy.orm import Session

    from ketamon.storage.audit import acting_as, append_entry
    from ketamon.storage.models import AuditAction

    source, backup = done
    with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        append_entry(
            s,
            action=AuditAction.UPDATE,
            entity="database",
            field="encryption",
            old="none",
            new={"cipher": "sqlcipher", "key_source": source, "backup": backup.name},
            why="an unencrypted database from an earlier ketamon, encrypted at rest",
        )
