"""Sign-off and addenda at the review desk (21 CFR 11.50, 11.200; clinical.md §8 items 39-41).

* A physician signs a *finished* session (discharged, cancelled or ended) once, choosing the
  meaning of the signature from the controlled list (``resources/signature_meanings.toml``) and
  typing their password again (the second component, §11.200: asked at every signing). The
  ``signed`` entry carries the manifestation (§11.50): printed name, credentials, the meaning, the
  time (the entry's own), and the SHA-256 of the canonical form of every entry recorded before it
  (``covers_entry_id`` is the last of them), so the signature is tied to exactly what was signed.
* For Spravato (esketamine) sessions signing is refused while required Patient Monitoring Form
  fields are missing (``ketamon.core.pmf.missing_fields``).
* After signing, the session is locked: only signed addenda and the PMF's submission may be added
  (:data:`LOCKED_ALLOWED`, :func:`refuse_if_signed`; the database repository refuses the rest too).
  An addendum carries its own signature, hashed over every entry before it, so it chains to the
  signature and to earlier addenda.

Qt-free and database-free: only the domain, the core's ports and ``ketamon.resources``.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ketamon.core.commands import (
    AddAddendum,
    AddLateEntry,
    CountersignAddendum,
    RecordPmfSubmission,
    Sign,
)
from ketamon.core.desk import DeskContext, Reviewed, handles
from ketamon.core.ports import AuthFailed, EntryDraft
from ketamon.core.session import Refused
from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, SessionState
from ketamon.domain.roles import Action, Actor
from ketamon.domain.session_rules import Treatment
from ketamon.resources import read_text

MEANINGS_FILE = "signature_meanings.toml"
USES = frozenset({"sign", "addendum", "late_entry", "countersign"})
REQUIRED_USES = frozenset({"sign", "addendum"})
ADDENDUM_MEANING = "addendum"

#: desk commands still allowed on a signed (locked) session
LOCKED_ALLOWED: frozenset[type] = frozenset(
    {AddAddendum, AddLateEntry, CountersignAddendum, RecordPmfSubmission}
)
#: entry kinds still recorded on a signed session (the repository enforces the same)
LOCKED_KINDS: frozenset[EntryKind] = frozenset(
    {EntryKind.ADDENDUM, EntryKind.COUNTERSIGNED, EntryKind.PMF_SUBMITTED}
)


# ---- the controlled list of meanings -------------------------------------------------------


class MeaningsError(ValueError):
    """The list of signature meanings is malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Meaning:
    id: str
    text: str
    uses: frozenset[str]


@dataclass(frozen=True, slots=True)
class Meanings:
    version: str
    meanings: tuple[Meaning, ...]

    def get(self, meaning_id: str) -> Meaning | None:
        return next((m for m in self.meanings if m.id == meaning_id), None)

    def for_use(self, use: str) -> list[Meaning]:
        """The meanings that may be chosen for ``use`` (one of :data:`USES`), in file order."""
        return [m for m in self.meanings if use in m.uses]


def parse_meanings(text: str, origin: str = MEANINGS_FILE) -> Meanings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MeaningsError(f"{origin}: not valid TOML: {exc}") from exc
    if data.get("schema_version") != 1:
        raise MeaningsError(f"{origin}: schema_version must be 1")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise MeaningsError(f"{origin}: 'version' must be a non-empty string")
    table = data.get("meaning")
    if not isinstance(table, dict) or not table:
        raise MeaningsError(f"{origin}: no [meaning.<id>] entries")
    out: list[Meaning] = []
    for mid, entry in table.items():
        where = f"{origin}: meaning {mid!r}"
        if not mid.replace("_", "").isalnum() or not mid.islower():
            raise MeaningsError(f"{where}: an id is lower-case letters, digits and _")
        if not isinstance(entry, dict):
            raise MeaningsError(f"{where}: must be a table with 'text' and 'use'")
        unknown = set(entry) - {"text", "use"}
        if unknown:
            raise MeaningsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        txt = entry.get("text")
        if not isinstance(txt, str) or not txt.strip():
            raise MeaningsError(f"{where}: 'text' must be a non-empty string")
        use = entry.get("use")
        if (
            not isinstance(use, list)
            or not use
            or not all(isinstance(u, str) and u in USES for u in use)
        ):
            raise MeaningsError(f"{where}: 'use' must list some of {', '.join(sorted(USES))}")
        out.append(Meaning(mid, " ".join(txt.split()), frozenset(use)))
    result = Meanings(version.strip(), tuple(out))
    for use in sorted(REQUIRED_USES):  # a list without late entries still loads
        if not result.for_use(use):
            raise MeaningsError(f"{origin}: no meaning may be used for {use!r}")
    return result


@functools.cache
def load_meanings() -> Meanings:
    """The shipped list (``resources/signature_meanings.toml``)."""
    return parse_meanings(read_text(MEANINGS_FILE), MEANINGS_FILE)


def _meanings(site: Mapping[str, Any]) -> Meanings:
    given = site.get("signature_meanings")
    return given if isinstance(given, Meanings) else load_meanings()


# ---- the lock ------------------------------------------------------------------------------


def _signed_by(state: SessionState) -> str:
    sig = state.signature
    assert sig is not None
    return f"Session {state.session_id} was signed by {sig.name} at {sig.at.isoformat()}"


def locked_refusal(state: SessionState) -> str:
    return f"{_signed_by(state)} and is locked: corrections are signed addenda"


def refuse_if_signed(reviewed: Reviewed, command: object) -> None:
    """Raise :class:`Refused` for a command a signed session no longer takes."""
    if reviewed.state.signed and type(command) not in LOCKED_ALLOWED:
        raise Refused([locked_refusal(reviewed.state)])


# ---- rules -----------------------------------------------------------------------------------


def sign_blockers(
    reviewed: Reviewed, site: Mapping[str, Any], readings: Sequence[Any] = ()
) -> list[str]:
    """Required PMF fields still missing (Spravato sessions only); empty: nothing blocks."""
    if reviewed.state.plan.treatment is not Treatment.ESKETAMINE:
        return []
    from ketamon.core import pmf

    missing = getattr(pmf, "missing_fields", None)
    if missing is None:  # the form's rules are not there yet: nothing to wait for
        return []
    fields = [str(f) for f in missing(reviewed, site, readings=list(readings) or None)]
    if not fields:
        return []
    return [
        "Complete the REMS Patient Monitoring Form before signing; missing: " + ", ".join(fields)
    ]


def _credentials(who: Actor, site: Mapping[str, Any]) -> str:
    own = getattr(who, "credentials", "")  # should the Actor carry them one day
    if isinstance(own, str) and own.strip():
        return own.strip()
    table = site.get("credentials")
    if isinstance(table, Mapping):
        return str(table.get(who.username, "") or "").strip()
    return ""


def _verify(ctx: DeskContext, password: str, what: str) -> Actor:
    """The actor again, from their re-typed password (§11.200: asked at every signing)."""
    if not password:
        raise Refused([f"{what} with your password: type it again to sign"])
    try:
        who = ctx.auth.verify(ctx.actor.username, password)
    except AuthFailed as exc:
        why = str(exc) or "the password is not correct"
        raise Refused([f"{what} with your password: {why}"]) from None
    if who.id != ctx.actor.id:
        raise Refused([f"{what} with your password: it is not {ctx.actor.full_name}'s"])
    return who


def _manifestation(
    reviewed: Reviewed, who: Actor, site: Mapping[str, Any], meaning: Meaning, version: str
) -> dict[str, Any]:
    covered = reviewed.entries
    return {
        "meaning_id": meaning.id,
        "meaning": meaning.text,
        "meanings_version": version,
        "name": who.full_name,
        "credentials": _credentials(who, site),
        "username": who.username,
        "content_sha256": canonical_sha256(covered),
        "covers_entry_id": covered[-1].id,
    }


@handles(Sign, Action.SIGN)
def sign(reviewed: Reviewed, cmd: Sign, ctx: DeskContext) -> Sequence[EntryDraft]:
    state = reviewed.state
    if state.signed:
        raise Refused([f"{_signed_by(state)}; a session is signed once, then takes addenda"])
    reasons: list[str] = []
    if not state.ended:
        reasons.append(
            f"Session {state.session_id} is still running: it is signed once discharged, "
            "cancelled or ended"
        )
    meanings = _meanings(ctx.site)
    meaning = meanings.get(cmd.meaning_id)
    if meaning is None or "sign" not in meaning.uses:
        choices = ", ".join(m.id for m in meanings.for_use("sign"))
        reasons.append(f"Choose what your signature means ({choices}), not {cmd.meaning_id!r}")
    reasons += sign_blockers(reviewed, ctx.site, ctx.readings)
    if reasons:
        raise Refused(reasons)
    assert meaning is not None
    who = _verify(ctx, cmd.password, "Sign")
    data = _manifestation(reviewed, who, ctx.site, meaning, meanings.version)
    return [EntryDraft(EntryKind.SIGNED, ctx.now, data)]


@handles(AddAddendum, Action.ADDENDUM)
def add_addendum(reviewed: Reviewed, cmd: AddAddendum, ctx: DeskContext) -> Sequence[EntryDraft]:
    state = reviewed.state
    reasons: list[str] = []
    if not state.signed:
        reasons.append(
            f"Session {state.session_id} is not signed: correct it, or sign it, instead"
        )
    text = cmd.text.strip()
    if not text:
        reasons.append("Write the addendum's text")
    if reasons:
        raise Refused(reasons)
    meanings = _meanings(ctx.site)
    meaning = meanings.get(ADDENDUM_MEANING) or meanings.for_use("addendum")[0]
    who = _verify(ctx, cmd.password, "Sign the addendum")
    data = {"text": text, **_manifestation(reviewed, who, ctx.site, meaning, meanings.version)}
    return [EntryDraft(EntryKind.ADDENDUM, ctx.now, data)]


def _meaning_for(ctx: DeskContext, use: str) -> tuple[Meaning, str]:
    meanings = _meanings(ctx.site)
    found = meanings.get(use) or next(iter(meanings.for_use(use)), None)
    if found is None:
        raise Refused([f"{MEANINGS_FILE} has no meaning for {use.replace('_', ' ')}"])
    return found, meanings.version


@handles(AddLateEntry, Action.LATE_ENTRY)
def add_late_entry(
    reviewed: Reviewed, cmd: AddLateEntry, ctx: DeskContext
) -> Sequence[EntryDraft]:
    state = reviewed.state
    reasons: list[str] = []
    if not state.signed:
        reasons.append(
            f"Session {state.session_id} is not signed yet: record it in the session instead"
        )
    text = cmd.text.strip()
    if not text:
        reasons.append("Write the addendum's text")
    if reasons:
        raise Refused(reasons)
    meaning, version = _meaning_for(ctx, "late_entry")
    who = _verify(ctx, cmd.password, "Sign the addendum as its author")
    data = {
        "text": text,
        "countersign_required": True,
        **_manifestation(reviewed, who, ctx.site, meaning, version),
    }
    return [EntryDraft(EntryKind.ADDENDUM, ctx.now, data)]


@handles(CountersignAddendum, Action.SIGN)
def countersign_addendum(
    reviewed: Reviewed, cmd: CountersignAddendum, ctx: DeskContext
) -> Sequence[EntryDraft]:
    state = reviewed.state
    target = next((a for a in state.addenda if a.entry_id == cmd.addendum_id), None)
    if target is None:
        raise Refused([f"Session {state.session_id} has no addendum {cmd.addendum_id}"])
    if not target.pending:
        why = (
            f"was countersigned by {target.countersignature.name}"
            if target.countersignature is not None
            else "was signed by a physician and needs no countersignature"
        )
        raise Refused([f"Addendum {cmd.addendum_id} {why}"])
    meaning, version = _meaning_for(ctx, "countersign")
    who = _verify(ctx, cmd.password, "Countersign")
    data = {
        "addendum_id": target.entry_id,
        **_manifestation(reviewed, who, ctx.site, meaning, version),
    }
    return [EntryDraft(EntryKind.COUNTERSIGNED, ctx.now, data)]


__all__ = [
    "LOCKED_ALLOWED",
    "LOCKED_KINDS",
    "Meaning",
    "Meanings",
    "MeaningsError",
    "add_addendum",
    "add_late_entry",
    "countersign_addendum",
    "load_meanings",
    "parse_meanings",
    "refuse_if_signed",
    "sign",
    "sign_blockers",
]
