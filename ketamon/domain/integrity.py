"""What a signature (and later the audit verifier) hashes: the canonical form of entries.

For each entry, in id order, the object ``{"id", "kind", "at" (UTC, ISO 8601), "author_id",
"authorised_by_id", "data"}``; the list as JSON with sorted keys, no spaces and UTF-8 kept as
is; its SHA-256 in hex. Names (which a user account may change) are not part of it: ids are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ketamon.domain.record import SessionEntry


def _utc(at: datetime) -> str:
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat()


def canonical_entries(entries: Iterable[SessionEntry]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "kind": e.kind.value,
            "at": _utc(e.at),
            "author_id": e.author_id,
            "authorised_by_id": e.authorised_by_id,
            "data": dict(e.data),
        }
        for e in sorted(entries, key=lambda e: e.id)
    ]


def canonical_json(entries: Iterable[SessionEntry]) -> bytes:
    return json.dumps(
        canonical_entries(entries), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def canonical_sha256(entries: Iterable[SessionEntry]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``entries``."""
    return hashlib.sha256(canonical_json(entries)).hexdigest()
