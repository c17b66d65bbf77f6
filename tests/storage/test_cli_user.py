"""``ketamon user add|list|disable`` and the command line's handling of database versions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from ketamon.cli import main
from ketamon.services import authenticate, open_database
from ketamon.storage.database import make_engine
from ketamon.storage.records import audit_entries

GOOD = "a long enough secret"


def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_add_list_disable(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add = ["user", "add", "--db", db_url, "--username", "Nina", "--role", "nurse"]
    rc, _, err = run(
        monkeypatch,
        capsys,
        [*add, "--full-name", "Nina Nurse", "--credentials", "RN", "--password-stdin"],
        GOOD + "\n",
    )
    assert rc == 0 and "added nina (nurse)" in err
    rc, out, _ = run(monkeypatch, capsys, ["user", "list", "--db", db_url])
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "NAME", "STATUS"]
    assert any(line.split()[:2] == ["nina", "nurse"] and "active" in line for line in lines)
    assert any(line.startswith("system") and "cannot sign in" in line for line in lines)
    rc, out, _ = run(monkeypatch, capsys, ["user", "list", "--db", db_url, "--json"])
    users = {u["username"]: u for u in json.loads(out)}
    assert users["nina"]["role"] == "nurse" and users["nina"]["active"] is True
    assert users["nina"]["credentials"] == "RN" and users["nina"]["demo"] is False
    assert "password_hash" not in users["nina"]
    engine = open_database(db_url)
    try:
        assert authenticate(engine, "nina", GOOD).full_name == "Nina Nurse"
    finally:
        engine.dispose()
    rc, _, err = run(
        monkeypatch,
        capsys,
        ["user", "disable", "--db", db_url, "--username", "nina", "--reason", "left"],
    )
    assert rc == 0 and "disabled nina" in err
    rc, out, _ = run(monkeypatch, capsys, ["user", "list", "--db", db_url, "--json"])
    assert {u["username"]: u for u in json.loads(out)}["nina"]["active"] is False
    engine = open_database(db_url)
    try:
        entries = audit_entries(engine, entity="app_user")
        created = [e for e in entries if e.action.value == "create" and e.entity_id != 1]
        assert created and (created[0].reason or "").startswith("command line: ketamon user add")
        disabled = [e for e in entries if e.field == "active"]
        assert disabled and (disabled[0].reason or "").startswith("left (OS user")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["--password-stdin"], "short\n", "at least 8 characters"),
        (["--password-stdin"], "\n", "must not be empty"),
        ([], "", "no terminal to ask for the password on: use --password-stdin"),
        (["--role", "surgeon"], "", "invalid choice"),
    ],
)
def test_add_refuses_bad_input_with_one_clear_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    base = ["user", "add", "--db", f"sqlite:///{tmp_path / 'k.sqlite3'}"]
    base += ["--username", "ann", "--full-name", "Ann"]
    if "--role" not in argv:
        base += ["--role", "nurse"]
    try:
        rc, _, err = run(monkeypatch, capsys, [*base, *argv], stdin)
    except SystemExit as exc:  # argparse's own usage errors
        rc, err = int(exc.code or 0), capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert "Traceback" not in err


def test_add_asks_twice_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'k.sqlite3'}"
    answers = iter([GOOD, GOOD + "typo"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", tty)
    argv = ["user", "add", "--db", db, "--username", "ann", "--role", "admin"]
    assert main([*argv, "--full-name", "Ann Admin"]) == 2
    assert "do not match" in capsys.readouterr().err
    answers = iter([GOOD, GOOD])
    assert main([*argv, "--full-name", "Ann Admin"]) == 0
    engine = open_database(db)
    try:
        assert authenticate(engine, "ann", GOOD).role.value == "admin"
    finally:
        engine.dispose()


def test_disable_unknown_or_system_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'k.sqlite3'}"
    rc, _, err = run(monkeypatch, capsys, ["user", "disable", "--db", db, "--username", "x1"])
    assert rc == 2 and "no user 'x1'" in err
    rc, _, err = run(monkeypatch, capsys, ["user", "disable", "--db", db, "--username", "system"])
    assert rc == 2 and "cannot be disabled" in err


def test_a_newer_database_is_refused_by_every_command(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    open_database(db_url).dispose()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    rc, _, err = run(monkeypatch, capsys, ["user", "list", "--db", db_url])
    assert rc == 2
    assert err.startswith("ketamon: error: database at ")
    assert "newer ketamon (schema revision 9999)" in err and "Traceback" not in err
    rc, _, err = run(
        monkeypatch,
        capsys,
        ["record", "--protocol", "masimo", "--port", "/dev/null", "--db", db_url],
    )
    assert rc == 2 and "newer ketamon" in err


def test_the_default_database_lives_in_the_data_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc, out, _ = run(monkeypatch, capsys, ["--data-dir", str(tmp_path), "user", "list"])
    assert rc == 0 and "system" in out
    assert (tmp_path / "ketamon.sqlite3").is_file()


@pytest.mark.parametrize("action", [[], ["add"], ["list"], ["disable"]])
def test_user_help(action: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["user", *action, "--help"])
    assert exc.value.code == 0
    assert "usage: ketamon user" in capsys.readouterr().out
