"""Engine creation for embedded SQLite and clinic PostgreSQL.

The schema is made and changed only by the migrations (:mod:`ketamon.storage.migrate`);
``ketamon.services.open_database`` opens an engine and upgrades it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


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
    else:
        hint = "it cannot be used"
    return f"{where}: {hint} ({msg})"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
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
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700, exist_ok=True)
            _private_file(path)
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        hide_parameters=True,  # no SQL parameter (a password hash) in any error or log
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "ketamon"},
    )


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
