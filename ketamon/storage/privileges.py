"""Least privilege on PostgreSQL (issue 11 §6): the tables belong to an owner role that runs
the migrations (and a retention purge); the stations connect as an app role that may read and
write session data but can only insert into and read the audit trail and the session record.

Only a table's owner (or a superuser) can disable or drop its triggers, so the app role cannot
lift the append-only triggers; and without UPDATE, DELETE or TRUNCATE on ``audit_entry``,
``session_entry`` and ``audit_gap`` it cannot change them even with the triggers gone.

:func:`grant_app_role` (``ketamon db grant``) applies the grants; run it as the owner after
each ``ketamon db upgrade`` (a new table gets its grants then).
"""

from __future__ import annotations

import re

from sqlalchemy import Engine

from ketamon.storage.models import Base

#: tables the app may only insert into and read
APPEND_ONLY = ("audit_entry", "session_entry", "audit_gap", "course_entry")
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PrivilegeError(ValueError):
    """A grant refused: what is wrong, in words."""


def grant_app_role(engine: Engine, role: str) -> list[str]:
    """Give ``role`` what a station needs and no more; returns the statements run."""
    if engine.dialect.name != "postgresql":
        raise PrivilegeError("roles and grants are for PostgreSQL; SQLite has none")
    if not _ROLE.fullmatch(role):
        raise PrivilegeError(
            f"{role!r} is not a plain role name (lower-case letters, digits and _)"
        )
    tables = sorted(set(Base.metadata.tables) - set(APPEND_ONLY))
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {role}" for t in tables),
        *(f"REVOKE UPDATE, DELETE, TRUNCATE ON {t} FROM {role}" for t in APPEND_ONLY),
        *(f"GRANT SELECT, INSERT ON {t} TO {role}" for t in APPEND_ONLY),
        f"REVOKE ALL ON alembic_version FROM {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    with engine.begin() as conn:
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM pg_roles WHERE rolname = %(r)s", {"r": role}
        ).first()
        if exists is None:
            raise PrivilegeError(
                f"there is no role {role!r}: create it first (CREATE ROLE {role} LOGIN "
                "PASSWORD '…'), as in the README's PostgreSQL section"
            )
        for s in statements:
            conn.exec_driver_sql(s)
    return statements


__all__ = ["APPEND_ONLY", "PrivilegeError", "grant_app_role"]
