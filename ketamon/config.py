"""Typed, versioned station configuration (TOML). Errors name the file and the key."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.protocols import PROTOCOLS
from devices.protocols.base import Parity, SerialSettings
from devices.scenarios import SCENARIOS

SCHEMA_VERSION = 1


class ConfigError(ValueError):
    """The configuration is invalid; the message names where."""


@dataclass(frozen=True, slots=True)
class ChairConfig:
    name: str
    protocol: str
    port: str | None = None
    tcp: tuple[str, int] | None = None
    listen: tuple[str, int] | None = None
    serial: SerialSettings | None = None
    scenario: str = "stable"


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str = ""
    thresholds_file: str = ""
    site_file: str = ""
    chairs: tuple[ChairConfig, ...] = field(default=())
    #: the [hl7_out] table as written (checked by ketamon.hl7out.parse_settings)
    hl7_out: dict[str, Any] = field(default_factory=dict)
    #: [encryption]: where the embedded database's key comes from (ketamon.storage.crypto)
    key_source: str = "keyring"
    passphrase_file: str = ""


def parse_tcp(text: str, where: str = "--tcp") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def serial_settings(
    base: SerialSettings,
    *,
    baud: int | None = None,
    parity: str | None = None,
    rtscts: bool | None = None,
    where: str = "serial settings",
) -> SerialSettings:
    """Apply overrides to a protocol's serial defaults, validating each one."""
    values: dict[str, Any] = {}
    if baud is not None:
        if baud not in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400):
            raise ConfigError(f"{where}: unsupported baud rate {baud}")
        values["baudrate"] = baud
    if parity is not None:
        try:
            values["parity"] = Parity(parity.upper()[:1])
        except ValueError:
            raise ConfigError(f"{where}: parity must be N, E or O, got {parity!r}") from None
    if rtscts is not None:
        values["rtscts"] = rtscts
    return SerialSettings(**{**_settings_dict(base), **values})


def _settings_dict(s: SerialSettings) -> dict[str, Any]:
    return {
        "baudrate": s.baudrate,
        "bytesize": s.bytesize,
        "parity": s.parity,
        "stopbits": s.stopbits,
        "rtscts": s.rtscts,
        "xonxoff": s.xonxoff,
    }


def parse_chair(raw: Any, where: str) -> ChairConfig:
    """One [[chair]] table, validated; errors name ``where`` and the key."""
    from devices.protocols import protocol_class

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    protocol = raw.get("protocol")
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"{where}: 'protocol' must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    unknown = set(raw) - {
        "name",
        "protocol",
        "port",
        "listen",
        "tcp",
        "baud",
        "parity",
        "rtscts",
        "scenario",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    port, tcp, serial = raw.get("port"), raw.get("tcp"), None
    if protocol == "simulator":
        scenario = raw.get("scenario", "stable")
        if scenario not in SCENARIOS:
            raise ConfigError(f"{where}: unknown scenario {scenario!r}")
        return ChairConfig(name=name, protocol=protocol, scenario=scenario)
    listen = raw.get("listen")
    if listen is not None:
        if protocol != "hl7":
            raise ConfigError(f"{where}: 'listen' is only for the hl7 protocol")
        return ChairConfig(
            name=name, protocol=protocol, listen=parse_tcp(str(listen), f"{where}: listen")
        )
    if tcp is not None:
        if protocol != "hl7":
            raise ConfigError(f"{where}: 'tcp' is only for the hl7 protocol")
        return ChairConfig(name=name, protocol=protocol, tcp=parse_tcp(str(tcp), f"{where}: tcp"))
    if not isinstance(port, str) or not port:
        raise ConfigError(f"{where}: needs 'port' (serial device path) or 'tcp'")
    baud = raw.get("baud")
    if baud is not None and (isinstance(baud, bool) or not isinstance(baud, int)):
        raise ConfigError(f"{where}: 'baud' must be a whole number")
    rtscts = raw.get("rtscts")
    if rtscts is not None and not isinstance(rtscts, bool):
        raise ConfigError(f"{where}: 'rtscts' must be true or false")
    serial = serial_settings(
        protocol_class(protocol).default_serial,
        baud=baud,
        parity=raw.get("parity"),
        rtscts=rtscts,
        where=where,
    )
    return ChairConfig(name=name, protocol=protocol, port=port, serial=serial)


def parse_config(text: str, origin: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from exc
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{origin}: schema_version {version!r} is not supported (expected 1)")
    unknown = set(data) - {
        "schema_version",
        "database_url",
        "thresholds_file",
        "site_file",
        "chair",
        "hl7_out",
        "encryption",
    }
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("database_url", "thresholds_file", "site_file"):
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"{origin}: {key!r} must be a string")
    if not isinstance(data.get("hl7_out", {}), dict):
        raise ConfigError(f"{origin}: 'hl7_out' must be a table ([hl7_out])")
    key_source, passphrase_file = (
        _encryption(data["encryption"], origin) if "encryption" in data else ("keyring", "")
    )
    chairs_raw = data.get("chair", [])
    if not isinstance(chairs_raw, list):
        raise ConfigError(f"{origin}: 'chair' must be an array of tables ([[chair]])")
    chairs = tuple(parse_chair(c, f"{origin}: chair[{i}]") for i, c in enumerate(chairs_raw))
    names = [c.name for c in chairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{origin}: chair names must be unique")
    return Config(
        database_url=data.get("database_url", ""),
        thresholds_file=data.get("thresholds_file", ""),
        site_file=data.get("site_file", ""),
        chairs=chairs,
        hl7_out=dict(data.get("hl7_out", {})),
        key_source=key_source,
        passphrase_file=passphrase_file,
    )


def _encryption(raw: Any, origin: str) -> tuple[str, str]:
    """The [encryption] table: key_source and passphrase_file (README: Encryption at rest)."""
    from ketamon.storage.crypto import KEY_SOURCES

    where = f"{origin}: [encryption]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(raw) - {"key_source", "passphrase_file"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    source = raw.get("key_source", "keyring")
    if source not in KEY_SOURCES:
        raise ConfigError(
            f"{where}: key_source must be one of {', '.join(KEY_SOURCES)}, got {source!r}"
        )
    pfile = raw.get("passphrase_file", "")
    if not isinstance(pfile, str):
        raise ConfigError(f"{where}: passphrase_file must be a string (a file path)")
    if pfile and source != "passphrase":
        raise ConfigError(f'{where}: passphrase_file needs key_source = "passphrase"')
    return str(source), pfile


def load_config(path: Path) -> Config:
    if not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_config(text, str(path))


def database_url(cli_url: str | None, config: Config, default_sqlite_url: str) -> str:
    """--db > KETAMON_DATABASE_URL > config file > embedded SQLite. A SQLite file is encrypted
    with the key from [encryption] key_source (``KETAMON_DB_KEY_SOURCE`` overrides it)."""
    from ketamon.storage.crypto import SOURCE_ENV, KeySettings, check_source, mark_url

    url = (
        cli_url
        or os.environ.get("KETAMON_DATABASE_URL")
        or config.database_url
        or (default_sqlite_url)
    )
    if not url.startswith("sqlite"):
        return url
    env = os.environ.get(SOURCE_ENV)
    source = check_source(env, SOURCE_ENV) if env else config.key_source
    pfile = config.passphrase_file if source == "passphrase" else ""
    return mark_url(url, KeySettings(source, pfile))
