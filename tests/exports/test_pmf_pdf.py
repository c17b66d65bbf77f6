"""The PMF as a filled PDF (QtGui only), and ``ketamon pmf``: JSON, text, PDF and the refusal
to print an incomplete form."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from ketamon.cli import main
from ketamon.core import commands as c
from ketamon.core import pmf
from ketamon.core.alarms import EngineAlarms
from ketamon.core.desk import Reviewed, SessionDesk
from ketamon.core.ports import AuthFailed, EntryDraft
from ketamon.core.session import ChairCore
from ketamon.domain.alarms import AlarmEngine
from ketamon.domain.record import EntryKind, fold
from ketamon.domain.roles import Actor, Role
from ketamon.exports.pmf_pdf import pmf_html, write_pmf_pdf
from ketamon.services import open_database
from ketamon.storage import users
from ketamon.storage.audit import acting_as
from ketamon.storage.models import Role as DbRole
from ketamon.storage.repository import SqlSessionRepository
from ketamon.storage.users import create_user, system_user_id
from tests.core.helpers import PASSWORD, Chair, Clock, make_chair, profile
from tests.core.test_pmf import CLINIC, FULL, SITE, esketamine_session, reviewed, sign

ROOT = Path(__file__).resolve().parent.parent.parent
PNG_DIR = ROOT / "build" / "pmf"  # rendered pages, kept to look at


def _signed_form(chair: Chair) -> pmf.PmfForm:
    sid = esketamine_session(chair)
    sign(chair, sid)
    return pmf.build_form(reviewed(chair, sid), CLINIC)


@pytest.mark.parametrize(("size", "points"), [("a4", "595 x 842"), ("letter", "612 x 792")])
def test_the_pdf_is_written_on_a4_and_letter_and_shows_every_field(
    size: str, points: str, tmp_path: Path
) -> None:
    form = _signed_form(make_chair())
    assert form.missing == []
    path = write_pmf_pdf(form, tmp_path / f"pmf-{size}.pdf", page_size=size)
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    html = pmf_html(form)
    for f in form.fields:
        assert f.spec.label.replace("'", "&#x27;") in html, f.spec.id
    assert "Dr Paul Physician" in html and "MD" in html and "ab" * 32 in html
    assert "Reviewed and approved" in html and form.sha256 in html
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True).stdout
        assert points in info
        pages = int(info.split("Pages:")[1].split()[0])
        assert 1 <= pages <= 2
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True
        ).stdout
        assert "138/88" in text and "LOT-A" in text and "Rita Nurse" in text


def test_missing_and_carried_over_fields_are_marked_on_the_page() -> None:
    chair = make_chair()
    first = esketamine_session(chair, replace(FULL, date_of_birth=None))
    SessionDesk(chair.repo, _NoOne(), chair.clock, site=SITE).execute(
        first, c.EnterPmfFields({"patient_date_of_birth": "1980-02-03"}, "2024"), _nurse()
    )
    second = esketamine_session(chair, replace(FULL, date_of_birth=None))
    form = pmf.build_form(reviewed(chair, second), SITE, reviewed(chair, first))
    html = pmf_html(form)
    assert "MISSING" in html and "INCOMPLETE" in html and "NOT SIGNED" in html
    assert "carried over, confirm" in html and "1980-02-03" in html


def test_the_first_page_renders_to_png(tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: the page is not rendered")
    form = _signed_form(make_chair())
    pdf = write_pmf_pdf(form, tmp_path / "pmf.pdf", page_size="letter")
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    prefix = PNG_DIR / "pmf-letter"
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "80",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(prefix),
        ],
        check=True,
        timeout=60,
    )
    png = prefix.with_suffix(".png")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000


def test_exports_import_only_qtcore_and_qtgui() -> None:
    bad = []
    for path in (ROOT / "ketamon" / "exports").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith("PySide6") and n not in ("PySide6.QtCore", "PySide6.QtGui")
            ]
    assert not bad


def test_a_bad_page_size_is_refused(tmp_path: Path) -> None:
    form = _signed_form(make_chair())
    with pytest.raises(ValueError, match="page size"):
        write_pmf_pdf(form, tmp_path / "x.pdf", page_size="a5")


# ---- ketamon pmf -----------------------------------------------------------------------------


class _NoOne:
    def verify(self, username: str, password: str) -> Actor:
        raise AuthFailed("no")


def _nurse() -> Actor:
    return Actor(10, "nina", "Nina Nurse", Role.NURSE)


class _DbPasswords:
    def __init__(self, people: dict[str, Actor]) -> None:
        self.people = people

    def verify(self, username: str, password: str) -> Actor:
        if username in self.people and password == PASSWORD:
            return self.people[username]
        raise AuthFailed("wrong username or password")


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A discharged esketamine session on a fresh SQLite database."""
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    monkeypatch.setattr(users, "_DUMMY_HASH", None)
    url = f"sqlite:///{tmp_path / 'ketamon.sqlite3'}"
    engine = open_database(url)
    try:
        with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
            n = create_user(
                s, username="nina", full_name="Nina Nurse", role=DbRole.NURSE, password=PASSWORD
            )
            d = create_user(
                s,
                username="paul",
                full_name="Dr Paul Physician",
                role=DbRole.PHYSICIAN,
                password=PASSWORD,
            )
            nurse = Actor(n.id, "nina", "Nina Nurse", Role.NURSE)
            doc = Actor(d.id, "paul", "Dr Paul Physician", Role.PHYSICIAN)
        repo = SqlSessionRepository(engine, profile=profile(), profile_origin="test")
        clock = Clock()
        alarm_engine = AlarmEngine(profile())
        auth = _DbPasswords({"nina": nurse, "paul": doc})
        core = ChairCore(
            "Chair 1", repo, auth, profile(), clock, alarms=EngineAlarms(alarm_engine, clock)
        )
        chair = Chair(core, alarm_engine, clock, repo)
        chair.do = lambda cmd, actor=nurse: core.execute(cmd, actor, chair.latest)  # type: ignore[method-assign]
        sid = esketamine_session(chair, FULL)
    finally:
        engine.dispose()
    return {
        "url": url,
        "sid": sid,
        "nurse": nurse,
        "doc": doc,
        "clock": clock,
        "data": tmp_path / "data",
    }


def _run(recorded: dict[str, Any], *extra: str) -> list[str]:
    return [
        "pmf",
        str(recorded["sid"]),
        "--db",
        recorded["url"],
        "--data-dir",
        str(recorded["data"]),
        *extra,
    ]


def test_cli_prints_the_form_as_json_and_refuses_an_incomplete_pdf(
    recorded: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(_run(recorded, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["form_version"] == "2024" and doc["session_id"] == recorded["sid"]
    assert doc["status"] == "due" and doc["due_date"] == "2026-12-07"
    byid = {f["id"]: f for f in doc["fields"]}
    assert byid["bp_40min"]["value"] == [138, 88] and byid["bp_40min"]["source"] == "bp.40min"
    assert byid["lot_numbers"]["value"] == "LOT-A" and byid["lot_numbers"]["origin"] == "record"
    assert "Monitoring HCP first and last name" in doc["missing"]  # the site is not filled in
    assert doc["submissions"] == [] and len(doc["form_sha256"]) == 64

    pdf = tmp_path / "out.pdf"
    assert main(_run(recorded, "--pdf", str(pdf))) == 2
    err = capsys.readouterr().err
    assert err.startswith("ketamon: error: the form is incomplete")
    assert "Monitoring HCP email" in err and "Setting ZIP code" in err
    assert not pdf.exists()

    assert main(_run(recorded)) == 0
    text = capsys.readouterr().out
    assert "Blood pressure about 40 minutes after administration (mmHg): 138/88" in text
    assert "MISSING" in text and "Missing (" in text


def test_cli_writes_the_pdf_once_the_form_is_complete(
    recorded: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = {k: CLINIC[k] for k in CLINIC if k.startswith(("hcp_", "setting_"))}
    values = {
        ("setting_rems_certified" if k == "rems_certified" else k): v for k, v in values.items()
    }
    values.pop("setting_address2", None)
    engine = open_database(recorded["url"])
    try:
        repo = SqlSessionRepository(engine)
        desk = SessionDesk(repo, _NoOne(), recorded["clock"], site=SITE)
        desk.execute(recorded["sid"], c.EnterPmfFields(values, "2024"), recorded["nurse"])
    finally:
        engine.dispose()
    pdf = tmp_path / "pmf.pdf"
    assert main(_run(recorded, "--pdf", str(pdf), "--page-size", "letter", "--json")) == 0
    out = capsys.readouterr()
    assert "pmf: wrote" in out.err
    assert json.loads(out.out)["missing"] == []
    assert pdf.read_bytes().startswith(b"%PDF")
    assert main(["pmf", "999", "--db", recorded["url"], "--data-dir", str(recorded["data"])]) == 2
    assert "there is no session 999" in capsys.readouterr().err


def test_cli_shows_a_recorded_submission(
    recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = open_database(recorded["url"])
    try:
        repo = SqlSessionRepository(engine)
        entries = repo.load(recorded["sid"])
        state = fold(entries)
        assert state is not None
        data = {
            "name": "Dr Paul Physician",
            "credentials": "MD",
            "meaning_id": "reviewed",
            "meaning": "Reviewed and approved",
            "content_sha256": "cd" * 32,
            "covers_entry_id": state.last_entry_id,
        }
        clock = recorded["clock"]
        repo.append(
            recorded["sid"], [EntryDraft(EntryKind.SIGNED, clock.now, data)], recorded["doc"]
        )
        desk = SessionDesk(repo, _NoOne(), clock, site=SITE)
        desk.execute(
            recorded["sid"],
            c.RecordPmfSubmission("portal", clock.now.isoformat(), "SPR-42"),
            recorded["nurse"],
        )
        signed = Reviewed(tuple(repo.load(recorded["sid"])), fold(repo.load(recorded["sid"])))  # type: ignore[arg-type]
    finally:
        engine.dispose()
    assert main(_run(recorded, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "submitted" and doc["signed"] is True
    (sub,) = doc["submissions"]
    assert (sub["method"], sub["reference"], sub["form_version"]) == ("portal", "SPR-42", "2024")
    assert sub["form_sha256"] == pmf.build_form(signed, SITE).sha256
