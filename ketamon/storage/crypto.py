"""Encryption at rest for the embedded SQLite database: SQLCipher 4 through ``sqlcipher3``.

The key (256 bits, used by SQLCipher as a raw key, AES-256 with an HMAC-SHA512 per page) comes
from one of these sources, chosen by ``[encryption] key_source`` in config.toml (or the
``KETAMON_DB_KEY_SOURCE`` environment variable):

* ``keyring`` (the default): a random key made when the database is first encrypted and kept in
  the operating system's credential store through :mod:`keyring` (service ``ketamon``, entry
  ``database-key``): Windows Credential Manager, the macOS Keychain, the Secret Service
  (GNOME Keyring, KWallet) on a Linux desktop.
* ``passphrase``: the key is derived from an admin's passphrase with SQLCipher's own KDF
  (PBKDF2-HMAC-SHA512, 256 000 rounds, the 16-byte salt at the start of the file), so the file
  also opens in the ``sqlcipher`` shell with ``PRAGMA key = 'the passphrase'``. The passphrase
  comes from ``KETAMON_DB_PASSPHRASE``, else from ``passphrase_file`` (owner-only), else it is
  asked for at start on the terminal (or by the window, see :func:`set_passphrase_prompt`).
* ``none``: not encrypted (the demo database; never for patient data).

The policy travels with the database URL: :func:`mark_url` adds it to a ``sqlite:///`` URL as
query parameters, and :func:`ketamon.storage.database.make_engine` resolves it to an engine on
``sqlite+pysqlcipher`` whose URL holds the key (SQLAlchemy never shows it: ``***``). A plain
database from an earlier ketamon is encrypted in place by :func:`encrypt_in_place` (an encrypted,
checked backup first); :func:`rekey` changes the key the same way.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ketamon.storage.database import DatabaseConfigError

log = logging.getLogger(__name__)

KEY_SOURCES = ("keyring", "passphrase", "none")
SOURCE_ENV = "KETAMON_DB_KEY_SOURCE"
PASSPHRASE_ENV = "KETAMON_DB_PASSPHRASE"
KEYRING_SERVICE = "ketamon"
KEYRING_ENTRY = "database-key"
#: the first 16 bytes of every unencrypted SQLite 3 file
PLAIN_HEADER = b"SQLite format 3\x00"
#: SQLCipher 4's key derivation, which :func:`derive_key` repeats (so a passphrase also opens
#: the file in the sqlcipher shell)
KDF_ROUNDS = 256_000
SALT_BYTES = 16
MIN_PASSPHRASE = 12
#: query parameters that carry the policy on a ``sqlite:///`` URL (never the key itself)
MARK_SOURCE = "ketamon_key"
MARK_FILE = "ketamon_key_file"
HELP = "see the README, 'Encryption at rest'"

_RAW_KEY = re.compile(r"^x'([0-9a-fA-F]{64}|[0-9a-fA-F]{96})'$")


class DatabaseKeyError(DatabaseConfigError):
    """The database key is missing, wrong or cannot be kept; the message says what to do."""


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Where the key of the embedded database comes from (``[encryption]`` in config.toml)."""

    source: str = "keyring"
    passphrase_file: str = ""

    def describe(self) -> str:
        if self.source == "keyring":
            return (
                f"the OS credential store (keyring service {KEYRING_SERVICE!r}, "
                f"entry {KEYRING_ENTRY!r})"
            )
        if self.source == "passphrase":
            if os.environ.get(PASSPHRASE_ENV):
                return f"the passphrase in {PASSPHRASE_ENV}"
            if self.passphrase_file:
                return f"the passphrase in {self.passphrase_file}"
            return "the passphrase entered"
        return "no key"


def check_source(source: object, where: str) -> str:
    if source not in KEY_SOURCES:
        raise DatabaseKeyError(
            f"{where}: key_source must be one of {', '.join(KEY_SOURCES)}, got {source!r}"
        )
    return str(source)


# ---- the policy on the URL --------------------------------------------------------------------


def mark_url(url: str, settings: KeySettings) -> str:
    """A ``sqlite:///FILE`` URL with the key policy added (other URLs, in-memory databases, URLs
    that name their own driver or key, and ``none`` are returned as they are)."""
    if settings.source == "none":
        return url
    try:
        u = make_url(url)
    except ArgumentError:  # make_engine says what is wrong with it
        return url
    if (
        u.drivername != "sqlite"
        or not u.database
        or u.database == ":memory:"
        or u.password is not None
    ):
        return url
    query: dict[str, str] = {MARK_SOURCE: settings.source}
    if settings.passphrase_file:
        query[MARK_FILE] = settings.passphrase_file
    return u.update_query_dict(query).render_as_string(hide_password=False)


def settings_of(u: URL) -> tuple[URL, KeySettings | None]:
    """The URL without the policy, and the policy (None: the URL carries none)."""
    source = u.query.get(MARK_SOURCE)
    if source is None:
        return u, None
    if not isinstance(source, str):
        raise DatabaseKeyError(f"{MARK_SOURCE} given twice in the database URL")
    pfile = u.query.get(MARK_FILE, "")
    settings = KeySettings(
        check_source(source, "database URL"), pfile if isinstance(pfile, str) else ""
    )
    return u.difference_update_query([MARK_SOURCE, MARK_FILE]), settings


# ---- the file ---------------------------------------------------------------------------------


def file_state(path: str | Path) -> str:
    """``new`` (missing or empty), ``plain`` (an unencrypted SQLite file) or ``encrypted``."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PLAIN_HEADER))
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise DatabaseConfigError(f"the database {path}: cannot read it: {exc.strerror}") from exc
    if not head:
        return "new"
    return "plain" if head == PLAIN_HEADER else "encrypted"


def _salt(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(SALT_BYTES)


def raw_key(key: bytes, salt: bytes | None = None) -> str:
    """SQLCipher's raw-key form: ``x'<key hex>'`` (the file's salt) or with a salt to use."""
    return f"x'{key.hex()}{salt.hex() if salt else ''}'"


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """SQLCipher 4's key derivation from a passphrase (PBKDF2-HMAC-SHA512, 256 000 rounds)."""
    return hashlib.pbkdf2_hmac("sha512", passphrase.encode("utf-8"), salt, KDF_ROUNDS, 32)


def connect(path: str | Path, key: str | None, **kwargs: Any) -> Any:
    """A DB-API connection (sqlcipher3) on the file, with the key when one is given. SQLCipher's
    own error log (it writes to stderr on a wrong key) is silenced: ketamon says it once."""
    import sqlcipher3

    con = sqlcipher3.connect(str(path), **kwargs)
    try:
        con.execute("PRAGMA cipher_log_level = NONE")
        if key is not None:
            con.execute(f'PRAGMA key = "{_checked_key(key)}"')
    except BaseException:
        con.close()
        raise
    return con


def _checked_key(key: str) -> str:
    if not _RAW_KEY.match(key):  # never a passphrase or anything else spliced into SQL
        raise DatabaseKeyError("the database key is not a raw SQLCipher key")
    return key


def check_key(path: str | Path, key: str, settings: KeySettings | None = None) -> None:
    """Open the file with the key and read its schema; a wrong key raises DatabaseKeyError."""
    import sqlcipher3

    con = connect(path, key)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as exc:
        if "not a database" not in str(exc):
            raise DatabaseConfigError(f"the database {path}: {exc}") from exc
        from_ = settings.describe() if settings else "the key given"
        raise DatabaseKeyError(
            f"the database {path} does not open with {from_}: the key is wrong, or the file "
            f"is not a ketamon database; nothing was changed ({HELP}: restore the key from "
            "your key backup)"
        ) from None
    finally:
        con.close()


# ---- the key ----------------------------------------------------------------------------------

#: asks for a passphrase: (database file, new) -> the passphrase, or None if none was given
PassphrasePrompt = Callable[[str, bool], "str | None"]


def _terminal_prompt(db: str, new: bool) -> str | None:
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    what = "a new passphrase" if new else "the passphrase"
    try:
        first = getpass.getpass(f"ketamon: {what} for the database {db}: ")
        if new and getpass.getpass("ketamon: the same passphrase again: ") != first:
            raise DatabaseKeyError("the two passphrases differ; nothing was changed")
    except EOFError:
        return None
    return first


_prompt: PassphrasePrompt = _terminal_prompt
_cache: dict[tuple[str, str], str] = {}


def set_passphrase_prompt(prompt: PassphrasePrompt | None) -> None:
    """Who asks for the passphrase when no variable or file gives it (None: the terminal)."""
    global _prompt
    _prompt = prompt or _terminal_prompt


def forget_passphrases() -> None:
    """Drop the passphrases this process remembers (a test, or after a rotation)."""
    _cache.clear()


def _passphrase(settings: KeySettings, db: str, *, new: bool) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return _long_enough(env, PASSPHRASE_ENV, new=new)
    if settings.passphrase_file:
        return _long_enough(
            read_passphrase_file(settings.passphrase_file), settings.passphrase_file, new=new
        )
    cache_key = (settings.source, db)
    if cache_key in _cache:
        return _cache[cache_key]
    given = _prompt(db, new)
    if not given:
        raise DatabaseKeyError(
            f"no passphrase for the database {db}: set {PASSPHRASE_ENV}, or passphrase_file "
            f"in [encryption] of config.toml, or start ketamon from a terminal to type it ({HELP})"
        )
    checked = _long_enough(given, "the passphrase", new=new)
    _cache[cache_key] = checked
    return checked


def _long_enough(passphrase: str, where: str, *, new: bool) -> str:
    if new and len(passphrase) < MIN_PASSPHRASE:
        raise DatabaseKeyError(
            f"{where}: a new database passphrase needs at least {MIN_PASSPHRASE} characters"
        )
    return passphrase


def read_passphrase_file(name: str) -> str:
    """The first line of an owner-only file (a file others can read is refused)."""
    path = Path(name).expanduser()
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DatabaseKeyError(f"passphrase_file {path}: not a file")
        if st.st_mode & 0o077:
            raise DatabaseKeyError(
                f"passphrase_file {path}: others can read it (mode {st.st_mode & 0o777:o}); "
                f"make it the owner's only: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except DatabaseKeyError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise DatabaseKeyError(f"passphrase_file {path}: cannot read it: {why}") from exc
    line = text.splitlines()[0] if text.strip() else ""
    if not line:
        raise DatabaseKeyError(f"passphrase_file {path}: it is empty")
    return line


def _keyring_fail(exc: Exception, what: str) -> DatabaseKeyError:
    return DatabaseKeyError(
        f"the database key cannot be {what} the OS credential store (keyring: "
        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unavailable'}); on a "
        'server or a station without one, set key_source = "passphrase" in [encryption] of '
        f"config.toml and give the passphrase in {PASSPHRASE_ENV} or a passphrase_file ({HELP})"
    )


def keyring_key() -> str | None:
    """The key kept in the credential store (64 hex digits), or None if there is none."""
    import keyring
    from keyring.errors import KeyringError

    try:
        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_ENTRY)
    except (KeyringError, RuntimeError) as exc:
        raise _keyring_fail(exc, "read from") from exc
    if stored is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", stored):
        raise DatabaseKeyError(
            f"the credential store's {KEYRING_SERVICE!r}/{KEYRING_ENTRY!r} entry is not a "
            f"ketamon database key (64 hex digits) ({HELP})"
        )
    return stored.lower()


def store_keyring_key(hex_key: str) -> None:
    """Keep a key in the credential store, and read it back (a store that forgets is refused)."""
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_ENTRY, hex_key)
    except (KeyringError, RuntimeError) as exc:
        raise _keyring_fail(exc, "kept in") from exc
    if keyring_key() != hex_key:
        raise DatabaseKeyError(
            f"the OS credential store ({type(keyring.get_keyring()).__module__}) did not keep "
            f"the database key; nothing was encrypted ({HELP})"
        )


def resolve_key(path: str | Path, settings: KeySettings, *, new_key: bool = False) -> str:
    """The raw SQLCipher key of the database file under this policy.

    A key is made only for a database that is new or still unencrypted (keyring: stored and
    read back first); an encrypted file with no key in its store is refused, never re-keyed.
    ``new_key`` makes a new key whatever the file (a rotation, :func:`rekey`)."""
    db = str(path)
    state = "new" if new_key else file_state(path)
    if settings.source == "keyring":
        stored = None if new_key else keyring_key()
        if stored is not None:
            return raw_key(bytes.fromhex(stored))
        if state == "encrypted":
            raise DatabaseKeyError(
                f"the database {db} is encrypted but {settings.describe()} holds no key for it: "
                f"put the key from your key backup back with 'keyring set {KEYRING_SERVICE} "
                f"{KEYRING_ENTRY}' ({HELP})"
            )
        hex_key = secrets.token_hex(32)
        store_keyring_key(hex_key)
        log.warning("a new database key was made and kept in %s", settings.describe())
        return raw_key(bytes.fromhex(hex_key))
    if settings.source == "passphrase":
        passphrase = _passphrase(settings, db, new=state != "encrypted")
        if state == "encrypted":
            return raw_key(derive_key(passphrase, _salt(path)))
        salt = secrets.token_bytes(SALT_BYTES)
        return raw_key(derive_key(passphrase, salt), salt)
    raise DatabaseKeyError(f"the database {db} has no key source (key_source = 'none')")


# ---- encrypting and re-keying a file ----------------------------------------------------------


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _counts(con: Any, schema: str = "main") -> dict[str, int]:
    tables = [
        r[0]
        for r in con.execute(
            f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        t: con.execute(
            f'SELECT count(*) FROM {schema}."{t.replace(chr(34), chr(34) * 2)}"'
        ).fetchone()[0]
        for t in tables
    }


def _export(path: Path, old_key: str | None, new_key: str, target: Path) -> None:
    """Copy the whole database into a new file under the new key (``sqlcipher_export``), holding
    the source locked; the copy is checked (integrity, every table's row count) and synced."""
    import sqlcipher3

    con = connect(path, old_key, isolation_level=None, timeout=5.0)
    try:
        try:
            # WAL -> DELETE folds the WAL in, and fails while another process has the file
            # open: nobody may keep writing to the file this one replaces.
            mode = con.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        except sqlcipher3.OperationalError as exc:
            raise DatabaseConfigError(
                f"the database {path} is in use by another program ({exc}): stop every "
                "ketamon using it, then start again"
            ) from None
        if str(mode).lower() != "delete":
            raise DatabaseConfigError(f"the database {path}: cannot leave WAL mode ({mode})")
        con.execute("PRAGMA locking_mode = EXCLUSIVE")
        con.execute("BEGIN EXCLUSIVE")  # taken now, held until this connection closes
        con.execute("COMMIT")
        before = _counts(con)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute("ATTACH DATABASE ? AS enc KEY ?", (str(target), _checked_key(new_key)))
        con.execute("SELECT sqlcipher_export('enc')")
        con.execute(f"PRAGMA enc.user_version = {int(version)}")
        con.execute("DETACH DATABASE enc")
    finally:
        con.close()
    out = connect(target, new_key)
    try:
        ok = out.execute("PRAGMA integrity_check").fetchone()
        after = _counts(out)
    finally:
        out.close()
    if not ok or ok[0] != "ok" or after != before:
        raise DatabaseConfigError(
            f"the encrypted copy of {path} failed its check ({ok and ok[0]}); nothing was changed"
        )
    _fsync(target)


def _private(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


def _replace_with(path: Path, old_key: str | None, new_key: str, backup_dir: Path) -> Path:
    """Export ``path`` under ``new_key`` into a checked backup, then put a copy of that backup in
    its place (atomic rename; the old file's WAL and shared memory removed). The backup is
    returned: it is encrypted with the new key, like the database."""
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    label = "encrypted" if old_key is None else "rekeyed"
    backup = backup_dir / f"{path.name}.backup-{label}-{_stamp()}.sqlite3"
    n = 1
    while backup.exists():
        n += 1
        backup = backup_dir / f"{path.name}.backup-{label}-{_stamp()}-{n}.sqlite3"
    partial = backup.with_name(backup.name + ".partial")
    swap = path.with_name(path.name + ".encrypting")
    try:
        for stale in (partial, swap):
            stale.unlink(missing_ok=True)
        _export(path, old_key, new_key, partial)
        _private(partial)
        os.replace(partial, backup)
        _fsync_dir(backup_dir)
        shutil.copyfile(backup, swap)
        _private(swap)
        _fsync(swap)
        for extra in ("-wal", "-shm", "-journal"):
            Path(str(path) + extra).unlink(missing_ok=True)
        os.replace(swap, path)
        _fsync_dir(path.parent)
    finally:
        partial.unlink(missing_ok=True)
        swap.unlink(missing_ok=True)
    return backup


def encrypt_in_place(path: str | Path, key: str, backup_dir: Path) -> Path:
    """Encrypt an unencrypted database file in place (for a database from an earlier ketamon);
    returns the encrypted, checked backup taken first. Every row is copied as it is, so the
    audit chain is unchanged."""
    path = Path(path)
    backup = _replace_with(path, None, key, backup_dir)
    log.warning("encrypted %s at rest (backup first: %s)", path, backup)
    return backup


def rekey(path: str | Path, old_key: str, new_key: str, backup_dir: Path) -> Path:
    """Re-encrypt the database under a new key (a rotation); returns the backup under the new
    key. The old key opens nothing afterwards (older backups stay under the old key)."""
    path = Path(path)
    check_key(path, old_key)
    return _replace_with(path, old_key, new_key, backup_dir)
