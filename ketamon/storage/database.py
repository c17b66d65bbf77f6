"""Engine creation for embedded SQLite and clinic PostgreSQL.

The schema is made and changed only by the migrations (:mod:`ketamon.storage.migrate`);
``ketamon.services.open_database`` opens an engine and upgrades it.

A SQLite URL that carries a key policy (:func:`ketamon.storage.crypto.mark_url`) opens an
encrypted database (SQLCipher); a PostgreSQL URL naming a remote host gets ``sslmode=require``
unless it (or ``PGSSLMODE``) says otherwise (:func:`with_tls`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

T = TypeVar("T")
log = logging.getLogger(__name__)

#: hosts that never leave the machine (a host starting with "/" is a Unix socket folder)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: libpq's sslmodes that refuse a connection without TLS
TLS_MODES = ("require", "verify-ca", "verify-full")


class DatabaseConfigError(ValueError):
    """The database URL is unusable (or the server unreachable); the message says why."""


class DatabaseVersionError(DatabaseConfigError):
    """The database's schema cannot be used by this ketamon (newer, or unversioned)."""


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"not a database URL: {url!r}") from exc
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseConfigError(
            f"unsupported database {u.get_backend_name()!r}: use sqlite or postgresql"
        )
    if u.get_backend_name() == "postgresql" and u.get_driver_name() != "psycopg":
        raise DatabaseConfigError(
            f"unsupported PostgreSQL driver {u.get_driver_name()!r}: use postgresql+psycopg"
        )
    return u.render_as_string(hide_password=False)


def describe(url: str | URL) -> str:
    """The URL for messages: SQLite as its file, PostgreSQL without the password."""
    u = make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return u.render_as_string(hide_password=True)


def short_error(exc: BaseException) -> str:
    """A database error for people and logs: the driver's first line, never the SQL or its
    parameters (a user's password hash must never reach a message)."""
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError) and exc.orig is not None:
        inner: BaseException = exc.orig
    else:
        inner = exc
    text = str(inner).strip().splitlines()
    first = text[0] if text else type(inner).__name__
    return f"{type(inner).__name__}: {first}"


def user_message(exc: BaseException, url: str | URL | None = None) -> str:
    """What to tell the user when the database cannot be used (locked, read-only, missing)."""
    where = f"the database {describe(url)}" if url is not None else "the database"
    msg = short_error(exc).split(": ", 1)[-1]
    low = msg.lower()
    if "locked" in low:
        hint = "another program holds it locked; close it (or wait) and try again"
    elif "readonly" in low or "read-only" in low:
        hint = "it is read-only: check the file's and its folder's permissions"
    elif "unable to open" in low:
        hint = "it cannot be opened: check the path and its folder's permissions"
    elif "disk" in low and "full" in low:
        hint = "the disk is full"
    elif "not a database" in low:
        hint = (
            "it does not open: it is encrypted with another key, or it is not a ketamon "
            "database (see the README, 'Encryption at rest')"
        )
    else:
        hint = "it cannot be used"
    return f"{where}: {hint} ({msg})"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    if type(dbapi_conn).__module__.startswith("sqlcipher3"):
        cur.execute("PRAGMA cipher_log_level = NONE")  # ketamon says what is wrong, once
    # WAL lets the UI read while the writer commits; FULL makes a commit survive a power cut.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def sqlite_path(url: str | URL) -> str | None:
    """The database file of a SQLite URL (None for in-memory or other backends)."""
    u = make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return u.database


def make_engine(url: str) -> Engine:
    """An engine for the URL. SQLite: the file (and its folder) owner-only, WAL; with a key
    policy on the URL the key is found (or made) and checked first, so a wrong or missing key
    raises :class:`~ketamon.storage.crypto.DatabaseKeyError` before anything is written.
    PostgreSQL: TLS for a remote host (:func:`with_tls`)."""
    u = make_url(normalise_url(url))
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u)
    return create_engine(
        with_tls(u),
        hide_parameters=True,  # no SQL parameter (a password hash) in any error or log
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "ketamon"},
    )


def _sqlite_engine(u: URL) -> Engine:
    from ketamon.storage import crypto

    u, settings = crypto.settings_of(u)
    path = sqlite_path(u)
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
    state = crypto.file_state(path) if path else "new"
    if settings is not None and path:
        if state != "plain":  # a plain file is opened as it is (open_database encrypts it)
            key = crypto.resolve_key(path, settings)
            if state == "encrypted":
                crypto.check_key(path, key, settings)
            u = u.set(drivername="sqlite+pysqlcipher", password=key)
    elif state == "encrypted" and u.get_driver_name() != "pysqlcipher":
        raise crypto.DatabaseKeyError(
            f"the database {path} is encrypted (or is not a SQLite database) and no key is set "
            f'for it (key_source = "none"): set key_source in [encryption] of config.toml '
            f"({crypto.HELP})"
        )
    if path:
        _private_file(path)
    cipher = u.get_driver_name() == "pysqlcipher"
    engine = create_engine(
        u,
        connect_args={"check_same_thread": False},
        hide_parameters=True,
        # the pysqlcipher dialect would keep one connection per thread; use pysqlite's pool
        **({"poolclass": QueuePool} if cipher else {}),
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def is_encrypted(engine: Engine) -> bool:
    """The engine opens its SQLite database with a SQLCipher key."""
    return engine.url.get_driver_name() == "pysqlcipher" and bool(engine.url.password)


def with_tls(u: URL) -> URL:
    """A PostgreSQL URL naming a host other than this machine gets ``sslmode=require`` (libpq
    then refuses a server without TLS). A URL that sets ``sslmode`` itself is used as written
    (a weaker mode to a remote host is logged), as is a strong ``PGSSLMODE`` in the
    environment; localhost and Unix sockets are exempt. ``require`` encrypts but does not check
    the server's certificate: ``sslmode=verify-full`` with ``sslrootcert`` does."""
    hosts = [h for h in (u.host or "").split(",") if h]
    qhost = u.query.get("host")
    for h in [qhost] if isinstance(qhost, str) else list(qhost or ()):
        hosts += [x for x in h.split(",") if x]
    remote = [h for h in hosts if not h.startswith("/") and h.strip("[]") not in LOCAL_HOSTS]
    if not remote:
        return u
    mode = u.query.get("sslmode")
    if mode is not None:
        if mode not in TLS_MODES:
            log.warning(
                "the PostgreSQL URL for %s sets sslmode=%s: the connection may be unencrypted",
                remote[0],
                mode,
            )
        return u
    if os.environ.get("PGSSLMODE") in TLS_MODES:
        return u
    return u.update_query_dict({"sslmode": "require"})


def _private_file(path: str) -> None:
    """The SQLite file (and its WAL and shared-memory files) readable by its owner only: a new
    one is created 0600; an existing one with looser modes is tightened."""
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if not os.path.exists(name):
                if name == path:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600))
                continue
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            pass  # a read-only folder or someone else's file: SQLite itself will say so


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def in_session(target: Engine | Session, op: Callable[[Session], T]) -> T:
    """Run ``op`` in the caller's Session (it commits), or in a new one committed here."""
    if isinstance(target, Session):
        return op(target)
    with Session(target, expire_on_commit=False) as s, s.begin():
        return op(s)
