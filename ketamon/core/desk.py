"""The review desk: finished sessions by id, for review, sign-off, addenda and the REMS form.

The chair's :class:`~ketamon.core.session.ChairCore` runs a session while the patient is in the
chair; once it has ended, what remains is done here, at a physician's (or nurse's) desk:

* reading it (any role but the system: auditors read too);
* a physician's signature, and after it only signed addenda (the signed part never changes);
* the Patient Monitoring Form's fields and its submission.

Each command is checked against the actor's role and the rules, recorded with its audit rows in
one transaction, and folded into the session's state, exactly as at the chair. Command handlers
live beside their rules (``ketamon.core.signing``, ``ketamon.core.pmf``) and register here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ketamon.core.ports import Authenticator, EntryDraft, SessionRepository
from ketamon.core.session import Refused
from ketamon.domain.record import SessionEntry, SessionState, apply, fold
from ketamon.domain.roles import Action, Actor, Role, refusal

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A session as the record has it: its entries (in order) and their fold."""

    entries: tuple[SessionEntry, ...]
    state: SessionState


@dataclass(frozen=True, slots=True)
class DeskContext:
    """What a desk command's handler may use besides the session itself."""

    now: datetime
    actor: Actor
    auth: Authenticator
    #: the site's settings a form or a signature needs (HCP, setting, deadlines, meanings)
    site: Mapping[str, Any] = field(default_factory=dict)
    #: the session's monitor and manual readings (the form's 40-minute BP comes from them)
    readings: Sequence[Any] = ()


#: a handler: (the session as recorded, the command, the context) -> the entries to record
Handler = Callable[[Reviewed, Any, DeskContext], Sequence[EntryDraft]]
_HANDLERS: dict[type, tuple[Action, Handler]] = {}


def handles(command: type[C], action: Action) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``command``; ``action`` is what the role matrix checks."""

    def register(handler: Handler) -> Handler:
        _HANDLERS[command] = (action, handler)
        return handler

    return register


def _load_handlers() -> None:
    # The handlers register themselves on import (kept beside their rules).
    from ketamon.core import pmf, signing  # noqa: F401


class SessionDesk:
    def __init__(
        self,
        repository: SessionRepository,
        authenticator: Authenticator,
        clock: Callable[[], datetime],
        *,
        site: Mapping[str, Any] | None = None,
        load_readings: Callable[[int], Sequence[Any]] | None = None,
    ) -> None:
        _load_handlers()
        self.repo = repository
        self.auth = authenticator
        self.clock = clock
        self.site: Mapping[str, Any] = dict(site or {})
        self._readings = load_readings
        self._lock = threading.Lock()  # one command at a time: the fold follows the record

    def open(self, session_id: int, actor: Actor) -> Reviewed:
        why = refusal(actor.role, Action.REVIEW)
        if why:
            raise Refused([why])
        entries = tuple(self.repo.load(session_id))
        state = fold(entries)
        if state is None:
            raise Refused([f"There is no session {session_id}"])
        if actor.role is Role.THERAPIST and actor.id not in state.therapist_ids:
            raise Refused(["A therapist reads only the sessions they are assigned to"])
        return Reviewed(entries, state)

    def execute(self, session_id: int, command: object, actor: Actor) -> Reviewed:
        found = _HANDLERS.get(type(command))
        if found is None:
            raise Refused([f"{type(command).__name__} is not done at the review desk"])
        action, handler = found
        why = refusal(actor.role, action)
        if why:
            raise Refused([why])
        with self._lock:
            reviewed = self.open(session_id, actor)
            from ketamon.core.signing import refuse_if_signed  # (it imports this module)

            refuse_if_signed(reviewed, command)  # signed: locked but for addenda and the PMF
            readings = self._readings(session_id) if self._readings is not None else ()
            ctx = DeskContext(self.clock(), actor, self.auth, self.site, readings)
            drafts = handler(reviewed, command, ctx)
            if not drafts:
                return reviewed
            recorded = self.repo.append(session_id, drafts, actor)
            state = reviewed.state
            for e in recorded:
                state = apply(state, e)
            return Reviewed(reviewed.entries + tuple(recorded), state)
