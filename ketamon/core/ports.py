"""What the session core needs from the outside, implemented by storage and acquisition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ketamon.domain.alarms import ActiveAlarm, AlarmEvent
from ketamon.domain.record import EntryKind, PatientInfo, SessionEntry
from ketamon.domain.roles import Actor
from ketamon.domain.thresholds import Priority, ThresholdProfile


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry decided by the core, not yet recorded (no id)."""

    kind: EntryKind
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    authorised_by: Actor | None = None
    #: who the entry is recorded as (None: the command's actor)
    author: Actor | None = None


@dataclass(frozen=True, slots=True)
class OpenSessionRef:
    session_id: int
    chair: str
    patient: str
    started: datetime


class SessionRepository(Protocol):
    """The session record. Every call is one transaction, with its audit rows."""

    def create(self, draft: EntryDraft, actor: Actor) -> SessionEntry:
        """Create the session (and its patient, if new) and record its 'started' entry."""
        ...

    def append(
        self, session_id: int, drafts: Sequence[EntryDraft], actor: Actor
    ) -> list[SessionEntry]: ...

    def load(self, session_id: int) -> list[SessionEntry]: ...

    def open_sessions(self) -> list[OpenSessionRef]: ...

    def find_patients(self, query: str) -> list[PatientInfo]: ...

    def system_actor(self) -> Actor: ...


class Authenticator(Protocol):
    def verify(self, username: str, password: str) -> Actor:
        """The person, when the password is theirs; raises :class:`AuthFailed` otherwise."""
        ...


class AuthFailed(Exception):
    pass


class AlarmPort(Protocol):
    """The chair's live alarm engine. Each call returns the events it caused; the core records
    them (the engine lives with the monitor's thread and is guarded by its own lock)."""

    def set_condition(
        self, key: str, priority: Priority | None, message: str, *, technical: bool = False
    ) -> list[AlarmEvent]: ...

    def acknowledge(self, key: str) -> list[AlarmEvent]: ...

    def acknowledge_all(self) -> list[AlarmEvent]: ...

    def reset(self) -> list[AlarmEvent]: ...

    def reset_key(self, key: str) -> list[AlarmEvent]: ...

    def clear_all(self) -> list[AlarmEvent]: ...

    def configure(
        self,
        *,
        profile: ThresholdProfile,
        first_dose: datetime | None,
        baseline: tuple[float, float] | None,
        infusing: bool,
    ) -> list[AlarmEvent]: ...

    def restore(self, alarms: Iterable[ActiveAlarm]) -> None: ...
