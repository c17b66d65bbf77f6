"""Sign-off and addenda at the review desk (21 CFR 11.50, 11.200; clinical.md §6.3, §8 items
39-42), on the in-memory repository: who may sign, what a signature carries, what it hashes, and
the lock after it (desk and chair)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ketamon.core import commands as c
from ketamon.core import pmf
from ketamon.core.desk import Reviewed, SessionDesk
from ketamon.core.session import Refused
from ketamon.core.signing import (
    LOCKED_ALLOWED,
    MeaningsError,
    load_meanings,
    parse_meanings,
    refuse_if_signed,
)
from ketamon.domain.integrity import canonical_sha256
from ketamon.domain.record import EntryKind, SessionEntry, fold
from ketamon.domain.roles import Actor
from tests.core.helpers import (
    ADMIN,
    AUDITOR,
    IV,
    NURSE,
    PASSWORD,
    PHYSICIAN,
    SAM,
    Chair,
    Passwords,
    make_chair,
    screening,
    start_and_dose,
)

CHECKLIST = {"steady_gait": True, "escort_present": True, "instructions_given": True}
MEANING = "reviewed_discharge_criteria_met"
SITE = {"credentials": {"paul": "MD"}}


def finished(chair: Chair) -> int:
    """An esketamine session, dosed, observed for two hours and discharged."""
    start_and_dose(chair)
    chair.clock.advance(minutes=121)
    chair.readings(nibp_sys=125, nibp_dia=80, hr=72, spo2=98, rr=14)
    chair.do(c.RecordMoaas(5))
    chair.do(c.Discharge(CHECKLIST, 90, password=PASSWORD))
    state = chair.core.last_state
    assert state is not None and state.discharge is not None
    return state.session_id


def desk_for(chair: Chair) -> SessionDesk:
    return SessionDesk(chair.repo, Passwords(), chair.clock, site=SITE)


@pytest.fixture(autouse=True)
def _pmf_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PMF's required fields count as filled in (the PMF's own tests fill them); the tests
    about the PMF blocking a signature set their own ``missing_fields``."""
    monkeypatch.setattr(pmf, "missing_fields", lambda reviewed, site, **kw: [], raising=False)


@pytest.fixture
def chair() -> Chair:
    return make_chair()


def refused(desk: SessionDesk, sid: int, cmd: object, actor: Actor, *words: str) -> None:
    before = list(desk.repo.load(sid))
    with pytest.raises(Refused) as exc:
        desk.execute(sid, cmd, actor)
    for w in words:
        assert w in str(exc.value)
    assert list(desk.repo.load(sid)) == before  # nothing recorded


# ---- the controlled list ---------------------------------------------------------------------


def test_the_shipped_meanings() -> None:
    m = load_meanings()
    assert m.version
    sign = {x.id for x in m.for_use("sign")}
    assert {MEANING, "reviewed_with_exceptions", "prescriber_on_site"} <= sign
    assert [x.id for x in m.for_use("addendum")] == ["addendum"]
    assert m.get(MEANING) is not None
    assert m.get(MEANING).text == (  # type: ignore[union-attr]
        "Reviewed and approved; patient met discharge criteria; REMS form approved"
    )
    assert "prescriber on site" in m.get("prescriber_on_site").text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not = [toml", ["not valid TOML"]),
        ('schema_version = 1\n[meaning.a]\ntext = "x"\nuse = ["sign"]', ["'version'"]),
        (
            'schema_version = 1\nversion = "1"\n[meaning.a]\ntext = ""\nuse = ["sign"]',
            ["meaning 'a'", "'text'"],
        ),
        (
            'schema_version = 1\nversion = "1"\n[meaning.a]\ntext = "x"\nuse = ["approve"]',
            ["meaning 'a'", "'use'"],
        ),
        (
            'schema_version = 1\nversion = "1"\n[meaning.a]\ntext = "x"\nuse = ["sign"]\nx = 1',
            ["meaning 'a'", "unknown field"],
        ),
        (
            'schema_version = 1\nversion = "1"\n[meaning.a]\ntext = "x"\nuse = ["sign"]',
            ["no meaning may be used for 'addendum'"],
        ),
    ],
)
def test_a_malformed_list_names_the_file_and_the_entry(text: str, words: list[str]) -> None:
    with pytest.raises(MeaningsError) as exc:
        parse_meanings(text, "clinic_meanings.toml")
    assert str(exc.value).startswith("clinic_meanings.toml: ")
    for w in words:
        assert w in str(exc.value)


# ---- who may sign, and when ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "words"),
    [
        (NURSE, ["Only a physician", "nurse"]),
        (ADMIN, ["Only a physician"]),
        (AUDITOR, ["Auditors have read-only access"]),
    ],
)
def test_only_a_physician_signs(chair: Chair, actor: Actor, words: list[str]) -> None:
    sid = finished(chair)
    refused(desk_for(chair), sid, c.Sign(MEANING, PASSWORD), actor, *words)


def test_signing_asks_for_the_signers_own_password(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    refused(desk, sid, c.Sign(MEANING, "wrong"), PHYSICIAN, "Sign with your password")
    refused(desk, sid, c.Sign(MEANING, ""), PHYSICIAN, "Sign with your password")


def test_an_unfinished_session_is_not_signed(chair: Chair) -> None:
    start_and_dose(chair)
    state = chair.core.state
    assert state is not None
    refused(desk_for(chair), state.session_id, c.Sign(MEANING, PASSWORD), PHYSICIAN, "running")


def test_the_meaning_comes_from_the_list(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    refused(desk, sid, c.Sign("looked_at_it", PASSWORD), PHYSICIAN, "looked_at_it", MEANING)
    # the addendum's meaning is not a sign-off's
    refused(desk, sid, c.Sign("addendum", PASSWORD), PHYSICIAN, "'addendum'")


def test_a_session_is_signed_once(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    refused(desk, sid, c.Sign(MEANING, PASSWORD), PHYSICIAN, "signed by Dr Paul Physician")


def test_a_cancelled_session_can_be_signed(chair: Chair) -> None:
    chair.do(c.StartSession(SAM, IV, confirmed=True))
    chair.do(c.Cancel("wrong patient"))
    state = chair.core.last_state
    assert state is not None and state.cancelled is not None
    out = desk_for(chair).execute(state.session_id, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    assert out.state.signed


# ---- the PMF ---------------------------------------------------------------------------------


def test_missing_pmf_fields_block_a_spravato_signature(
    chair: Chair, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Reviewed] = []

    def missing(reviewed: Reviewed, site: object, **kw: object) -> list[str]:
        asked.append(reviewed)
        return ["Lot number", "Serious adverse event"]

    monkeypatch.setattr(pmf, "missing_fields", missing, raising=False)
    sid = finished(chair)
    desk = desk_for(chair)
    refused(desk, sid, c.Sign(MEANING, PASSWORD), PHYSICIAN, "Lot number, Serious adverse event")
    assert asked and asked[0].state.session_id == sid
    monkeypatch.setattr(pmf, "missing_fields", lambda r, s, **kw: [], raising=False)
    assert desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN).state.signed


def test_the_pmf_is_not_asked_for_iv_sessions(
    chair: Chair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pmf, "missing_fields", lambda r, s, **kw: ["everything"], raising=False)
    chair.do(c.StartSession(SAM, IV, confirmed=True))
    chair.do(screening())
    chair.do(c.Cancel("patient declined"))
    state = chair.core.last_state
    assert state is not None
    assert desk_for(chair).execute(state.session_id, c.Sign(MEANING, PASSWORD), PHYSICIAN)


def test_the_real_pmf_rules_block_an_incomplete_spravato_form(
    chair: Chair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the PMF's own rules, not the stand-in
    if not hasattr(pmf, "missing_fields"):
        pytest.skip("ketamon.core.pmf.missing_fields is not there yet")
    sid = finished(chair)
    refused(desk_for(chair), sid, c.Sign(MEANING, PASSWORD), PHYSICIAN, "Patient Monitoring Form")


# ---- what a signature carries --------------------------------------------------------------


def test_the_signature_manifestation(chair: Chair) -> None:
    sid = finished(chair)
    before = tuple(chair.repo.load(sid))
    chair.clock.advance(minutes=30)
    out = desk_for(chair).execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    entry = out.entries[-1]
    assert entry.kind is EntryKind.SIGNED and entry.author_id == PHYSICIAN.id
    assert entry.at == chair.clock.now
    sig = out.state.signature
    assert sig is not None and out.state.signed
    assert (sig.name, sig.credentials, sig.meaning_id) == ("Dr Paul Physician", "MD", MEANING)
    assert sig.meaning == load_meanings().get(MEANING).text  # type: ignore[union-attr]
    assert sig.at == chair.clock.now and sig.signer_id == PHYSICIAN.id
    assert sig.covers_entry_id == before[-1].id
    assert sig.content_sha256 == canonical_sha256(before)
    assert entry.data["meanings_version"] == load_meanings().version
    assert "password" not in str(entry.data).lower()


def test_credentials_are_empty_when_the_site_does_not_know_them(chair: Chair) -> None:
    sid = finished(chair)
    desk = SessionDesk(chair.repo, Passwords(), chair.clock)
    sig = desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN).state.signature
    assert sig is not None and sig.credentials == ""


def test_the_hash_is_of_exactly_the_covered_entries(chair: Chair) -> None:
    sid = finished(chair)
    out = desk_for(chair).execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    sig = out.state.signature
    assert sig is not None
    covered = [e for e in out.entries if e.id <= sig.covers_entry_id]
    assert covered == list(out.entries[:-1])
    assert canonical_sha256(covered) == sig.content_sha256
    assert canonical_sha256(reversed(covered)) == sig.content_sha256  # id order, not list order

    def changed(i: int, **kw: object) -> list[SessionEntry]:
        return [replace(e, **kw) if n == i else e for n, e in enumerate(covered)]  # type: ignore[arg-type]

    moaas = next(i for i, e in enumerate(covered) if e.kind is EntryKind.MOAAS)
    assert canonical_sha256(changed(moaas, data={"score": 4})) != sig.content_sha256
    assert canonical_sha256(changed(0, author_id=99)) != sig.content_sha256
    later = covered[moaas].at.replace(microsecond=1)
    assert canonical_sha256(changed(moaas, at=later)) != sig.content_sha256
    assert canonical_sha256(covered[:-1]) != sig.content_sha256  # one left out
    # the author's printed name is not hashed (ids are): renaming an account breaks nothing
    assert canonical_sha256(changed(0, author="Someone Else")) == sig.content_sha256


# ---- addenda ---------------------------------------------------------------------------------


def test_an_addendum_follows_the_signature_with_its_own(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    signed = desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    chair.clock.advance(minutes=60)
    out = desk.execute(
        sid, c.AddAddendum("  Patient called: felt well at home.  ", PASSWORD), PHYSICIAN
    )
    assert out.entries[:-1] == signed.entries  # the signed part stays as it was
    assert out.state.signature == signed.state.signature
    (add,) = out.state.addenda
    assert add.text == "Patient called: felt well at home."
    assert add.entry_id > signed.entries[-1].id and add.at == chair.clock.now
    s = add.signature
    assert (s.name, s.credentials, s.meaning_id) == ("Dr Paul Physician", "MD", "addendum")
    assert s.meaning == "Addendum: authored and approved"
    assert s.covers_entry_id == signed.entries[-1].id
    assert s.content_sha256 == canonical_sha256(signed.entries)  # chained to the signature
    second = desk.execute(sid, c.AddAddendum("And again.", PASSWORD), PHYSICIAN)
    assert len(second.state.addenda) == 2
    assert second.state.addenda[1].signature.content_sha256 == canonical_sha256(out.entries)


def test_addendum_refusals(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    refused(desk, sid, c.AddAddendum("late", PASSWORD), PHYSICIAN, "not signed")
    desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    refused(desk, sid, c.AddAddendum("   ", PASSWORD), PHYSICIAN, "addendum's text")
    refused(desk, sid, c.AddAddendum("late", "nope"), PHYSICIAN, "with your password")
    refused(desk, sid, c.AddAddendum("late", PASSWORD), NURSE, "Only a physician")
    refused(desk, sid, c.AddAddendum("late", PASSWORD), AUDITOR, "read-only")


# ---- the lock ----------------------------------------------------------------------------------


def test_a_signed_session_takes_only_addenda_and_the_pmf_submission(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    signed = desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    assert {
        c.AddAddendum,
        c.AddLateEntry,
        c.CountersignAddendum,
        c.RecordPmfSubmission,
    } == LOCKED_ALLOWED
    refuse_if_signed(signed, c.AddAddendum("x", PASSWORD))
    refuse_if_signed(signed, c.RecordPmfSubmission("fax", "2026-11-30T15:00:00Z", "R1"))
    for cmd in (
        c.Sign(MEANING, PASSWORD),
        c.EnterPmfFields({"lot": "LOT-A"}, "v1"),
        c.AddNote("late"),
    ):
        with pytest.raises(Refused, match="locked"):
            refuse_if_signed(signed, cmd)
        refused(desk, sid, cmd, PHYSICIAN)
    # an unsigned session is not locked
    refuse_if_signed(
        Reviewed(signed.entries[:-1], replace(signed.state, signature=None)), c.AddNote("x")
    )


def test_the_chair_cannot_take_a_signed_session_up_again(chair: Chair) -> None:
    sid = finished(chair)
    desk_for(chair).execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    record = list(chair.repo.load(sid))
    fresh = make_chair(chair.repo, chair.clock)
    with pytest.raises(Refused, match="has ended"):
        fresh.core.resume(sid)
    assert fresh.core.state is None  # ended (and signed): nothing runs at the chair
    for cmd in (
        c.AddNote("late"),
        c.RecordMoaas(5),
        c.RecordVitals({"hr": 70}),
        c.Correct(record[3].id, {"score": 4}, "typo"),
        c.Cancel("oops"),
        c.Discharge(CHECKLIST, 90, password=PASSWORD),
        c.EndMonitoring("stop"),
        c.Acknowledge(),
    ):
        with pytest.raises(Refused):
            fresh.do(cmd, PHYSICIAN)
    with pytest.raises(Refused):  # nor do the monitor's events reach it
        fresh.do(c.RecordLink("lost", "cable"), fresh.core.system())
    assert list(chair.repo.load(sid)) == record


# ---- a nurse's addendum, countersigned -------------------------------------------------------


def test_a_nurses_addendum_is_pending_until_a_physician_countersigns_it(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    signed = desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    assert not signed.state.addendum_pending
    chair.clock.advance(minutes=30)
    late = desk.execute(
        sid, c.AddLateEntry(" Escort confirmed she drove him home. ", PASSWORD), NURSE
    )
    (add,) = late.state.addenda
    assert add.text == "Escort confirmed she drove him home."
    assert add.pending and late.state.addendum_pending
    assert add.signature.name == "Nina Nurse" and add.signature.meaning_id == "late_entry"
    assert add.signature.content_sha256 == canonical_sha256(signed.entries)
    assert late.entries[: len(signed.entries)] == signed.entries  # the signed part stays
    chair.clock.advance(minutes=5)
    done = desk.execute(sid, c.CountersignAddendum(add.entry_id, PASSWORD), PHYSICIAN)
    (add2,) = done.state.addenda
    assert not add2.pending and not done.state.addendum_pending
    cs = add2.countersignature
    assert cs is not None and cs.name == "Dr Paul Physician" and cs.meaning_id == "countersign"
    assert cs.content_sha256 == canonical_sha256(late.entries)
    # the fold of the stored record gives the same state (a restart, an export, the review)
    assert fold(chair.repo.load(sid)) == done.state
    refused(desk, sid, c.CountersignAddendum(add.entry_id, PASSWORD), PHYSICIAN, "countersigned")


def test_late_entry_and_countersign_refusals(chair: Chair) -> None:
    sid = finished(chair)
    desk = desk_for(chair)
    refused(desk, sid, c.AddLateEntry("late", PASSWORD), NURSE, "not signed yet")
    desk.execute(sid, c.Sign(MEANING, PASSWORD), PHYSICIAN)
    refused(desk, sid, c.AddLateEntry("  ", PASSWORD), NURSE, "addendum's text")
    refused(desk, sid, c.AddLateEntry("late", "wrong"), NURSE, "password")
    refused(desk, sid, c.AddLateEntry("late", PASSWORD), AUDITOR, "read-only")
    out = desk.execute(sid, c.AddLateEntry("late", PASSWORD), NURSE)
    aid = out.state.addenda[0].entry_id
    refused(desk, sid, c.CountersignAddendum(aid, PASSWORD), NURSE, "Only a physician")
    refused(desk, sid, c.CountersignAddendum(aid + 99, PASSWORD), PHYSICIAN, "no addendum")
    refused(desk, sid, c.CountersignAddendum(aid, "wrong"), PHYSICIAN, "password")
    own = desk.execute(sid, c.AddAddendum("mine", PASSWORD), PHYSICIAN)
    mine = own.state.addenda[1].entry_id
    refused(desk, sid, c.CountersignAddendum(mine, PASSWORD), PHYSICIAN, "needs no")
