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
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "ketamon"},
    )


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def in_session(target: Engine | Session, op: Callable[[Session], T]) -> T:
    """Run ``op`` in the caller's Session (it commits), or in a new one committed here."""
    if isinstance(target, Session):
        return op(target)
    with Session(target, expire_on_commit=False) as s, s.begin():
        return op(s)
