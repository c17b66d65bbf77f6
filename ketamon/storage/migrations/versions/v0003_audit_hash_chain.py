"""The audit trail becomes a hash chain: ``audit_entry.subject_hash`` (the seal of the session
entry an audit row records) and a back-fill of ``prev_hash``/``entry_hash``/``subject_hash`` for
the rows already there, in id order (see :mod:`ketamon.storage.chain`).

The append-only triggers refuse UPDATE on ``audit_entry``: the back-fill lifts them for its own
UPDATEs and puts them back, all inside the upgrade's one transaction (held under the upgrade's
lock, and the chain's). The back-fill vouches for the rows as they are at the upgrade: the chain
shows changes made after it. Offline SQL (``--sql``) cannot compute hashes: it only adds the
column; such a database reports a broken chain until upgraded online.

Revision ID: 0003
Revises: 0002
Create Date: 2026-03-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ketamon.storage.chain import AUDIT_LOCK_KEY, GENESIS, audit_hash, session_entry_hash

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

#: exactly as revision 0001 made it
APPEND_ONLY = "audit_entry is append-only: entries cannot be changed or deleted"
SQLITE_NO_UPDATE = f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"""

AUDIT_COLUMNS = (
    "id, at, utc_offset_s, user_id, action, entity, entity_id, session_id, field, "
    "old_value, new_value, reason, station"
)
ENTRY_COLUMNS = "id, session_id, kind, at, recorded_at, author_id, authorised_by_id, data, ref_id"


def _backfill(conn: sa.Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})")
        conn.exec_driver_sql("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only")
    else:
        conn.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
    audit_cols = [c.strip() for c in AUDIT_COLUMNS.split(",")]
    entry_cols = [c.strip() for c in ENTRY_COLUMNS.split(",")]
    prev, last = GENESIS, 0
    update = sa.text(
        "UPDATE audit_entry SET prev_hash = :prev_hash, entry_hash = :entry_hash, "
        "subject_hash = :subject_hash WHERE id = :id"
    )
    while True:
        rows = conn.execute(
            sa.text(
                f"SELECT {AUDIT_COLUMNS} FROM audit_entry WHERE id > :last "
                f"ORDER BY id LIMIT {BATCH}"
            ),
            {"last": last},
        ).all()
        if not rows:
            break
        audits = [dict(zip(audit_cols, r, strict=True)) for r in rows]
        wanted = [
            a["entity_id"]
            for a in audits
            if a["entity"] == "session_entry" and a["entity_id"] is not None
        ]
        entries: dict[int, dict[str, Any]] = {}
        if wanted:
            found = conn.execute(
                sa.text(f"SELECT {ENTRY_COLUMNS} FROM session_entry WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": wanted},
            ).all()
            entries = {int(e[0]): dict(zip(entry_cols, e, strict=True)) for e in found}
        params = []
        for a in audits:
            entry = entries.get(a["entity_id"]) if a["entity"] == "session_entry" else None
            a["subject_hash"] = None if entry is None else session_entry_hash(entry)
            a["prev_hash"] = prev
            a["entry_hash"] = prev = audit_hash(a)
            params.append({k: a[k] for k in ("id", "prev_hash", "entry_hash", "subject_hash")})
        conn.execute(update, params)
        last = int(audits[-1]["id"])
    if postgres:
        conn.exec_driver_sql("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only")
    else:
        conn.exec_driver_sql(SQLITE_NO_UPDATE)


def upgrade() -> None:
    op.add_column("audit_entry", sa.Column("subject_hash", sa.String(length=128), nullable=True))
    if op.get_context().as_sql:
        op.execute("-- the audit hash chain is back-filled only by an online upgrade")
        return
    _backfill(op.get_bind())


def downgrade() -> None:
    # The hashes stay (revision 0002 had prev_hash/entry_hash already, unused). A plain DROP
    # COLUMN (SQLite 3.35+), not a batch table rebuild, which would lose the triggers.
    op.drop_column("audit_entry", "subject_hash")
