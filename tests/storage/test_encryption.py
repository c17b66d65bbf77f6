"""Encryption at rest (issue 13 §5, clinical.md §8 45): the embedded SQLite database under
SQLCipher, its key from the OS credential store (a test keyring backend set with
``keyring.set_keyring``, never the user's own) or from a passphrase; a plain database from an
earlier ketamon encrypted in place; wrong and missing keys; TLS for a remote PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import keyring
import pytest
import sqlcipher3
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ketamon.cli import main
from ketamon.config import Config, ConfigError, database_url, parse_config
from ketamon.services import get_or_create_patient, open_database, start_session
from ketamon.storage import crypto
from ketamon.storage.audit import acting_as
from ketamon.storage.crypto import DatabaseKeyError
from ketamon.storage.database import DatabaseConfigError, is_encrypted, make_engine
from ketamon.storage.migrate import backup_sqlite
from ketamon.storage.models import AuditEntry, Patient
from ketamon.storage.users import system_user_id

NAME = ("Zebulon", "Quartermaine")
PASSPHRASE = "a clinic passphrase, long enough"


class MemoryKeyring(KeyringBackend):
    """A credential store in a dict: the tests' stand-in for the OS one."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def store() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(before)


@pytest.fixture(autouse=True)
def _no_remembered_passphrase() -> Iterator[None]:
    crypto.forget_passphrases()
    yield
    crypto.forget_passphrases()
    crypto.set_passphrase_prompt(None)


def url_for(db: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """The URL as the command line makes it for this key source."""
    monkeypatch.setenv(crypto.SOURCE_ENV, source)
    return database_url(f"sqlite:///{db}", Config(), "unused")


def add_patient(engine: Engine, mrn: str = "MRN-7") -> int:
    with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
        p = get_or_create_patient(s, mrn, *NAME)
        sess = start_session(
            s, chair="Chair 1", patient=p, device="spravato", started=datetime.now(UTC)
        )
        return int(sess.id)


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cli(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def make_encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> Path:
    folder = tmp_path / "station"
    folder.mkdir()
    db = folder / "ketamon.sqlite3"
    engine = open_database(url_for(db, monkeypatch, source))
    try:
        assert is_encrypted(engine)
        add_patient(engine)
    finally:
        engine.dispose()
    return db


# ---- the file ---------------------------------------------------------------------------------


def test_plain_file_shows_the_name_so_the_check_can_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "plain" / "ketamon.sqlite3"
    engine = open_database(url_for(db, monkeypatch, "none"))
    try:
        assert not is_encrypted(engine)
        add_patient(engine)
    finally:
        engine.dispose()
    assert NAME[1].encode() in all_bytes(db.parent)


def test_encrypted_file_holds_no_patient_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryKeyring
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    data = all_bytes(db.parent)  # the database, its WAL and shared memory, any backup
    assert NAME[0].encode() not in data and NAME[1].encode() not in data
    assert NAME[1].encode("utf-16-le") not in data
    assert not db.read_bytes().startswith(crypto.PLAIN_HEADER)
    assert crypto.file_state(db) == "encrypted"
    hex_key = store.items[(crypto.KEYRING_SERVICE, crypto.KEYRING_ENTRY)]
    assert len(hex_key) == 64 and int(hex_key, 16) >= 0
    assert os.stat(db).st_mode & 0o777 == 0o600


def test_opens_with_the_key_and_not_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryKeyring
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    engine = open_database(url_for(db, monkeypatch, "keyring"))
    try:
        with Session(engine) as s:
            assert s.scalars(select(Patient.last_name)).all() == [NAME[1]]
    finally:
        engine.dispose()
    # without a key: ketamon says so, SQLite and SQLCipher without one cannot read it
    with pytest.raises(DatabaseKeyError, match=r"is encrypted .* and no key is set"):
        make_engine(f"sqlite:///{db}")
    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        raw.execute("SELECT count(*) FROM sqlite_master")
    raw.close()
    con = sqlcipher3.connect(str(db))
    with pytest.raises(sqlcipher3.DatabaseError, match="not a database"):
        con.execute("SELECT count(*) FROM sqlite_master")
    con.close()


def test_no_key_on_the_command_line_is_one_error_line_and_nothing_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    store: MemoryKeyring,
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    before = snapshot(db.parent)
    # key_source = none on an encrypted file
    monkeypatch.setenv(crypto.SOURCE_ENV, "none")
    rc, out, err = cli(["user", "list", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 2 and out == ""
    assert err.startswith("ketamon: error: ") and err.count("\n") == 1
    assert f"the database {db} is encrypted (or is not a SQLite database) and no key" in err
    # keyring, but the key is gone from the store
    store.items.clear()
    monkeypatch.setenv(crypto.SOURCE_ENV, "keyring")
    rc, out, err = cli(["audit", "verify", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "is encrypted but the OS credential store" in err and "holds no key" in err
    assert "key backup" in err and "ERROR CORE" not in err
    assert store.items == {}  # no new key made for a file that has one
    assert snapshot(db.parent) == before


def test_wrong_key_is_refused_and_nothing_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    store: MemoryKeyring,
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    before = snapshot(db.parent)
    store.items[(crypto.KEYRING_SERVICE, crypto.KEYRING_ENTRY)] = "ab" * 32
    monkeypatch.setenv(crypto.SOURCE_ENV, "keyring")
    rc, out, err = cli(["user", "list", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(
        f"ketamon: error: the database {db} does not open with the OS credential"
    )
    assert "the key is wrong" in err and "nothing was changed" in err
    assert "ERROR CORE" not in err  # SQLCipher's own log stays quiet
    assert snapshot(db.parent) == before
    with pytest.raises(DatabaseKeyError, match="does not open with"):
        open_database(url_for(db, monkeypatch, "keyring"))
    assert snapshot(db.parent) == before


def test_a_store_that_forgets_or_is_missing_encrypts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = keyring.get_keyring()
    db = tmp_path / "new" / "ketamon.sqlite3"
    try:
        keyring.set_keyring(fail.Keyring())  # a headless Linux box: no backend at all
        with pytest.raises(DatabaseKeyError) as missing:
            open_database(url_for(db, monkeypatch, "keyring"))
        msg = str(missing.value)
        assert "cannot be read from the OS credential store" in msg
        assert 'key_source = "passphrase"' in msg and crypto.PASSPHRASE_ENV in msg
        keyring.set_keyring(null.Keyring())  # accepts the key and keeps nothing
        with pytest.raises(DatabaseKeyError, match="did not keep the database key"):
            open_database(url_for(db, monkeypatch, "keyring"))
    finally:
        keyring.set_keyring(previous)
    assert not db.exists() or db.stat().st_size == 0


# ---- a plain database from an earlier ketamon ------------------------------------------------


def table_rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as c:
        names = sorted(inspect(c).get_table_names())
        return {
            n: [tuple(r) for r in c.execute(text(f'SELECT * FROM "{n}" ORDER BY 1'))]
            for n in names
        }


def test_plain_database_is_encrypted_in_place_keeping_every_row_and_the_chain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    store: MemoryKeyring,
) -> None:
    db = tmp_path / "old" / "ketamon.sqlite3"
    plain = open_database(url_for(db, monkeypatch, "none"))
    try:
        add_patient(plain, "MRN-1")
        add_patient(plain, "MRN-2")
        rows_before = table_rows(plain)
    finally:
        plain.dispose()
    assert rows_before["audit_entry"] and rows_before["patient"]
    rc, out, _ = cli(["audit", "verify", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 0 and "intact" in out
    # the first start of this ketamon, with the default key source
    monkeypatch.setenv(crypto.SOURCE_ENV, "keyring")
    rc, out, err = cli(["user", "list", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 0, err
    assert crypto.file_state(db) == "encrypted"
    assert NAME[1].encode() not in db.read_bytes()
    backups = list((db.parent / "backups").glob("ketamon.sqlite3.backup-encrypted-*.sqlite3"))
    assert len(backups) == 1 and crypto.file_state(backups[0]) == "encrypted"
    assert NAME[1].encode() not in all_bytes(db.parent)
    assert not list(db.parent.glob("*.partial")) and not list(db.parent.glob("*.encrypting"))
    rc, out, err = cli(["audit", "verify", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 0 and "intact" in out, err
    engine = open_database(url_for(db, monkeypatch, "keyring"))
    try:
        rows_after = table_rows(engine)
        with Session(engine) as s:
            last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    finally:
        engine.dispose()
    for table, rows in rows_before.items():  # every row kept exactly
        assert rows_after[table][: len(rows)] == rows, table
        extra = len(rows_after[table]) - len(rows)
        assert extra == (1 if table == "audit_entry" else 0), table
    assert last is not None and last.entity == "database" and last.field == "encryption"
    assert last.new_value is not None and '"keyring"' in last.new_value
    # the backup is the encrypted database as it was: it opens with the same key
    key = crypto.resolve_key(db, crypto.KeySettings("keyring"))
    con = crypto.connect(backups[0], key)
    try:
        assert con.execute("SELECT count(*) FROM patient").fetchone()[0] == 2
    finally:
        con.close()


def test_plain_database_in_use_elsewhere_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryKeyring
) -> None:
    import subprocess
    import sys

    db = tmp_path / "busy" / "ketamon.sqlite3"
    plain = open_database(url_for(db, monkeypatch, "none"))
    add_patient(plain)
    plain.dispose()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('SELECT count(*) FROM patient').fetchall(); print('open', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "open"
            with pytest.raises(DatabaseConfigError, match="in use by another program"):
                open_database(url_for(db, monkeypatch, "keyring"))
        finally:
            holder.stdin.close()
            holder.wait(10)
    assert crypto.file_state(db) == "plain"
    assert NAME[1].encode() in all_bytes(db.parent)  # untouched, still readable


def test_schema_backup_of_an_encrypted_database_is_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryKeyring
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    key = crypto.resolve_key(db, crypto.KeySettings("keyring"))
    copy = backup_sqlite(db, tmp_path / "bk", "0008", key=key)
    assert crypto.file_state(copy) == "encrypted" and NAME[1].encode() not in copy.read_bytes()
    con = crypto.connect(copy, key)
    try:
        assert con.execute("SELECT last_name FROM patient").fetchall() == [(NAME[1],)]
    finally:
        con.close()


def test_rekey_changes_the_key_and_keeps_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MemoryKeyring
) -> None:
    db = make_encrypted(tmp_path, monkeypatch, "keyring")
    old = crypto.resolve_key(db, crypto.KeySettings("keyring"))
    new = crypto.raw_key(bytes(range(32)))
    backup = crypto.rekey(db, old, new, tmp_path / "bk")
    crypto.check_key(db, new)
    crypto.check_key(backup, new)
    with pytest.raises(DatabaseKeyError, match="does not open with the key given"):
        crypto.check_key(db, old)
    con = crypto.connect(db, new)
    try:
        assert con.execute("SELECT last_name FROM patient").fetchall() == [(NAME[1],)]
    finally:
        con.close()
    assert NAME[1].encode() not in all_bytes(db.parent) + backup.read_bytes()


# ---- a passphrase ------------------------------------------------------------------------------


def test_key_from_a_passphrase_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(crypto.PASSPHRASE_ENV, PASSPHRASE)
    db = make_encrypted(tmp_path, monkeypatch, "passphrase")
    assert NAME[1].encode() not in all_bytes(db.parent)
    rc, out, err = cli(["audit", "verify", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 0 and "intact" in out, err
    # SQLCipher's own derivation: the passphrase opens the file in any SQLCipher 4 tool
    con = sqlcipher3.connect(str(db))
    con.execute("PRAGMA key = '" + PASSPHRASE.replace("'", "''") + "'")
    assert con.execute("SELECT last_name FROM patient").fetchall() == [(NAME[1],)]
    con.close()
    before = snapshot(db.parent)
    monkeypatch.setenv(crypto.PASSPHRASE_ENV, "not the passphrase at all")
    rc, out, err = cli(["audit", "verify", "--db", f"sqlite:///{db}"], monkeypatch, capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"does not open with the passphrase in {crypto.PASSPHRASE_ENV}" in err
    assert snapshot(db.parent) == before


def test_key_from_a_passphrase_file_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "db.pass"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    secret.chmod(0o644)
    home = tmp_path / "home"
    config = home / "config" / "config.toml"
    config.write_text(
        f'[encryption]\nkey_source = "passphrase"\npassphrase_file = "{secret}"\n',
        encoding="utf-8",
    )
    monkeypatch.delenv(crypto.SOURCE_ENV)
    rc, _, err = cli(["user", "list"], monkeypatch, capsys)
    assert rc == 2 and f"passphrase_file {secret}: others can read it (mode 644)" in err
    assert f"chmod 600 {secret}" in err and err.count("\n") == 1
    db = home / "data" / "ketamon.sqlite3"
    assert not db.exists() or db.stat().st_size == 0
    secret.chmod(0o600)
    rc, _, err = cli(["user", "list"], monkeypatch, capsys)
    assert rc == 0, err
    assert crypto.file_state(db) == "encrypted"
    con = crypto.connect(db, crypto.raw_key(crypto.derive_key(PASSPHRASE, db.read_bytes()[:16])))
    assert con.execute("SELECT count(*) FROM app_user").fetchone()[0] >= 1
    con.close()


def test_passphrase_asked_at_start_and_rules_for_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, bool]] = []

    def prompt(db: str, new: bool) -> str | None:
        asked.append((db, new))
        return PASSPHRASE

    db = tmp_path / "asked" / "ketamon.sqlite3"
    url = url_for(db, monkeypatch, "passphrase")
    # nobody to ask (no terminal, no variable, no file): said so
    with pytest.raises(DatabaseKeyError, match=f"no passphrase for the database {db}: set"):
        open_database(url)
    crypto.set_passphrase_prompt(lambda db, new: "too short")
    with pytest.raises(DatabaseKeyError, match="at least 12 characters"):
        open_database(url)
    crypto.set_passphrase_prompt(prompt)
    open_database(url).dispose()
    assert asked == [(str(db), True)]
    crypto.forget_passphrases()
    engine = open_database(url)  # a second start asks again, for the existing database
    try:
        add_patient(engine)
    finally:
        engine.dispose()
    assert asked == [(str(db), True), (str(db), False)]
    assert NAME[1].encode() not in all_bytes(db.parent)


# ---- configuration ----------------------------------------------------------------------------


def test_encryption_table_in_config_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config('[encryption]\nkey_source = "passphrase"\n', "c.toml")
    assert (cfg.key_source, cfg.passphrase_file) == ("passphrase", "")
    assert Config().key_source == "keyring"
    for text_, message in [
        ('[encryption]\nkey_source = "vault"\n', "key_source must be one of"),
        ("[encryption]\nkey = 1\n", r"unknown key\(s\) key"),
        ('encryption = "yes"\n', r"\[encryption\]: must be a table"),
        ('[encryption]\npassphrase_file = "/x"\n', "needs key_source"),
    ]:
        with pytest.raises(ConfigError, match=message) as exc:
            parse_config(text_, "c.toml")
        assert str(exc.value).startswith("c.toml: [encryption]")
    monkeypatch.delenv(crypto.SOURCE_ENV)
    url = database_url(None, Config(), "sqlite:////d/ketamon.sqlite3")
    assert make_url(url).query == {"ketamon_key": "keyring"}
    pg = "postgresql+psycopg://u:p@db.clinic.example/ketamon"
    assert database_url(pg, Config(), "sqlite:////d/k.sqlite3") == pg
    monkeypatch.setenv(crypto.SOURCE_ENV, "none")
    assert database_url(None, Config(), "sqlite:////d/k.sqlite3") == "sqlite:////d/k.sqlite3"
    monkeypatch.setenv(crypto.SOURCE_ENV, "plaintext")
    with pytest.raises(DatabaseKeyError, match="KETAMON_DB_KEY_SOURCE: key_source must be"):
        database_url(None, Config(), "sqlite:////d/k.sqlite3")


# ---- PostgreSQL: TLS to a remote host ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sslmode"),
    [
        ("postgresql://u:p@db.clinic.example/k", "require"),
        ("postgresql://u:p@10.0.0.5:5433/k", "require"),
        ("postgresql://u:p@db.clinic.example/k?sslmode=verify-full", "verify-full"),
        ("postgresql://u:p@db.clinic.example/k?sslmode=disable", "disable"),
        ("postgresql://u:p@localhost/k", None),
        ("postgresql://u:p@127.0.0.1/k", None),
        ("postgresql://u:p@[::1]/k", None),
        ("postgresql://u:p@/k?host=/var/run/postgresql", None),
        ("postgresql://u:p@/k", None),
    ],
)
def test_remote_postgresql_needs_tls(
    url: str,
    sslmode: str | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    with caplog.at_level(logging.WARNING, logger="ketamon.storage.database"):
        engine = make_engine(url)  # no connection is made here
    try:
        assert engine.url.query.get("sslmode") == sslmode
    finally:
        engine.dispose()
    assert ("may be unencrypted" in caplog.text) == (sslmode == "disable")


def test_strong_pgsslmode_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    engine = make_engine("postgresql://u:p@db.clinic.example/k")
    try:
        assert "sslmode" not in engine.url.query  # libpq uses the stronger PGSSLMODE
    finally:
        engine.dispose()


# ---- the window asks for the passphrase ---------------------------------------------------------


def test_the_window_asks_for_the_passphrase_at_start(
    qtbot: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog

    from ketamon.app import ask_database_passphrase

    labels: list[str] = []

    def answer(texts: list[str]) -> None:
        def fill() -> None:
            dialog = QApplication.activeModalWidget()
            assert isinstance(dialog, QInputDialog)
            labels.append(dialog.labelText())
            if texts[1:]:
                answer(texts[1:])
            dialog.setTextValue(texts[0])
            dialog.accept()

        QTimer.singleShot(0, fill)

    db = tmp_path / "gui" / "ketamon.sqlite3"
    url = url_for(db, monkeypatch, "passphrase")
    crypto.set_passphrase_prompt(ask_database_passphrase)
    answer([PASSPHRASE, PASSPHRASE + "x"])
    with pytest.raises(DatabaseKeyError, match="the two passphrases differ"):
        open_database(url)
    answer([PASSPHRASE, PASSPHRASE])
    open_database(url).dispose()
    assert "A new passphrase for the database" in labels[0] and str(db) in labels[0]
    assert labels[1] == "The same passphrase again:"
    crypto.forget_passphrases()
    answer([PASSPHRASE])
    engine = open_database(url)
    try:
        add_patient(engine)
    finally:
        engine.dispose()
    assert labels[-1] == f"The passphrase of the database {db}:"
    assert NAME[1].encode() not in all_bytes(db.parent)
