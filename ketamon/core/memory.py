"""An in-memory session repository: the same port as the database one, for tests of the core's
rules and for tools that replay a record without a database."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Sequence

from ketamon.core.ports import EntryDraft, OpenSessionRef
from ketamon.domain.record import EntryKind, PatientInfo, SessionEntry
from ketamon.domain.roles import Actor, Role

SYSTEM = Actor(1, "system", "ketamon (automatic)", Role.SYSTEM)


class MemoryRepository:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, list[SessionEntry]] = {}
        self._next_id = 1
        self._next_session = 1
        self.patients: dict[str, PatientInfo] = {}
        #: set to make the next append fail (a storage fault): nothing of it is kept
        self.fail_next: Exception | None = None

    def _entry(self, session_id: int, d: EntryDraft, actor: Actor) -> SessionEntry:
        who = d.author or actor
        # JSON round trip: what is stored is exactly what reads back
        data = json.loads(json.dumps(dict(d.data)))
        e = SessionEntry(
            id=self._next_id,
            session_id=session_id,
            kind=d.kind,
            at=d.at,
            author_id=who.id,
            author=who.full_name,
            data=data,
            authorised_by_id=d.authorised_by.id if d.authorised_by else None,
            authorised_by=d.authorised_by.full_name if d.authorised_by else "",
        )
        self._next_id += 1
        return e

    def create(self, draft: EntryDraft, actor: Actor) -> SessionEntry:
        with self._lock:
            self._raise()
            sid = self._next_session
            self._next_session += 1
            e = self._entry(sid, draft, actor)
            self._entries[sid] = [e]
            p = draft.data["patient"]
            self.patients[str(p["mrn"])] = PatientInfo(
                id=None,
                mrn=str(p["mrn"]),
                first_name=str(p["first_name"]),
                last_name=str(p["last_name"]),
            )
            return e

    def append(
        self, session_id: int, drafts: Sequence[EntryDraft], actor: Actor
    ) -> list[SessionEntry]:
        with self._lock:
            self._raise()
            out = [self._entry(session_id, d, actor) for d in drafts]
            self._entries[session_id].extend(out)
            return out

    def _raise(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def load(self, session_id: int) -> list[SessionEntry]:
        with self._lock:
            return copy.copy(self._entries.get(session_id, []))

    def open_sessions(self) -> list[OpenSessionRef]:
        with self._lock:
            out = []
            for sid, entries in self._entries.items():
                if any(e.kind in (EntryKind.DISCHARGED, EntryKind.CANCELLED) for e in entries):
                    continue
                d = entries[0].data
                out.append(
                    OpenSessionRef(sid, str(d["chair"]), str(d["patient"]["mrn"]), entries[0].at)
                )
            return out

    def find_patients(self, query: str) -> list[PatientInfo]:
        q = query.lower()
        return [p for p in self.patients.values() if q in p.label.lower()]

    def system_actor(self) -> Actor:
        return SYSTEM
