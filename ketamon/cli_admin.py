"""Administration on the command line: ``ketamon purge`` (retention, clinical.md §8 item 47).

``ketamon purge --before DATE --user ADMIN`` deletes the sessions started before DATE, once the
site's retention period (``[security] retention_years``, 6 by default) has passed for them; an
earlier DATE is refused and nothing is touched. The admin signs in with their password (asked on
the terminal, or one line on standard input with ``--password-stdin``). ``--dry-run`` shows what
would go. Every purge is audited and leaves tombstones in the audit chain, so ``ketamon audit
verify`` still passes (see :mod:`ketamon.storage.retention`).

Kept apart from :mod:`ketamon.cli` (which hooks these in); same conventions: expected problems
are one ``ketamon: error: …`` line and exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from datetime import date
from typing import IO, Any

COMMANDS = ("purge", "db")


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "purge",
        help="delete sessions past the retention period (admin only, audited)",
        description="Delete every session started before DATE, with its readings, entries, "
        "audit rows and (when no session of theirs is left) the patient, once the site's "
        "retention period has passed for them: a DATE within the period is refused and nothing "
        "is deleted. An admin signs in for it. The purge is audited and leaves tombstones, so "
        "'ketamon audit verify' still passes. Exit 0 when done (or nothing to purge), 2 when "
        "refused.",
    )
    add_common(p)
    p.add_argument(
        "--before",
        required=True,
        metavar="YYYY-MM-DD",
        help="purge sessions started before this day",
    )
    p.add_argument("--user", required=True, metavar="NAME", help="the admin doing it")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line of standard input",
    )
    p.add_argument("--reason", default="", help="why (recorded in the audit trail)")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be deleted; delete nothing"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")

    db = sub.add_parser(
        "db",
        help="the database itself: bring its schema up to date, grant a station role",
        description="Run these as the database's owner. 'upgrade' brings the schema to this "
        "ketamon's revision (SQLite: a backup first). 'grant' gives a PostgreSQL role what a "
        "station needs and no more: read and write session data, only insert into and read "
        "the audit trail and the session record (it cannot lift their append-only triggers). "
        "Run 'grant' again after each upgrade.",
    )
    add_common(db)
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = actions.add_parser("upgrade", help="bring the schema up to date (as the owner)")
    add_common(up)
    up.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    grant = actions.add_parser(
        "grant", help="grant a PostgreSQL role what a station needs (as the owner)"
    )
    add_common(grant)
    grant.add_argument("--app-role", required=True, metavar="ROLE", help="the stations' role")
    grant.add_argument("--db", metavar="URL", help="the owner's database URL")


def run(args: argparse.Namespace, out: IO[str], err: IO[str], stdin: IO[str]) -> int:
    if args.command == "db":
        return cmd_db(args, out)
    return cmd_purge(args, out, stdin)


def cmd_db(args: argparse.Namespace, out: IO[str]) -> int:
    from ketamon.config import database_url, load_config
    from ketamon.paths import resolve_paths
    from ketamon.storage.database import describe, make_engine
    from ketamon.storage.migrate import upgrade_database
    from ketamon.storage.privileges import PrivilegeError, grant_app_role

    paths = resolve_paths(getattr(args, "data_dir", None))
    config = load_config(paths.config_file)
    url = database_url(args.db, config, paths.ensure().sqlite_url())
    engine = make_engine(url)
    try:
        if args.db_command == "upgrade":
            result = upgrade_database(engine)
            if result.from_revision == result.to_revision:
                out.write(f"db: {describe(url)} is up to date (revision {result.to_revision})\n")
            else:
                out.write(
                    f"db: {describe(url)} upgraded from revision {result.from_revision or 'none'} "
                    f"to {result.to_revision}\n"
                )
            return 0
        try:
            done = grant_app_role(engine, args.app_role)
        except PrivilegeError as exc:
            raise _error(f"db grant: {exc}") from None
        out.write(f"db: granted {args.app_role} its station rights ({len(done)} statements)\n")
        return 0
    finally:
        engine.dispose()


def _error(text: str) -> Exception:
    from ketamon.cli import CommandError

    return CommandError(text)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _error(f"--before: {text!r} is not a date (YYYY-MM-DD)") from None


def cmd_purge(args: argparse.Namespace, out: IO[str], stdin: IO[str]) -> int:
    from ketamon.config import database_url, load_config
    from ketamon.paths import resolve_paths
    from ketamon.services import open_database
    from ketamon.site_settings import load_site_profile
    from ketamon.storage.models import Role
    from ketamon.storage.retention import RetentionError, purge
    from ketamon.storage.users import AuthError, authenticate

    before = _day(args.before)
    paths = resolve_paths(getattr(args, "data_dir", None))
    config = load_config(paths.config_file)
    site = load_site_profile(config.site_file or None)
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
    else:
        if not stdin.isatty():
            raise _error("no terminal to ask for the password on: use --password-stdin")
        password = getpass.getpass(f"Password for {args.user}: ")
    engine = open_database(database_url(args.db, config, paths.ensure().sqlite_url()))
    try:
        try:
            who = authenticate(engine, args.user, password)
        except AuthError as exc:
            raise _error(f"purge: {exc}") from None
        if who.role is not Role.ADMIN:
            raise _error(
                f"purge: only an admin may purge records; {who.username} is a {who.role.value}"
            )
        try:
            report = purge(
                engine,
                before,
                user_id=who.id,
                retention_years=site.retention_years,
                reason=args.reason,
                dry_run=args.dry_run,
            )
        except RetentionError as exc:
            raise _error(f"purge refused: {exc}") from None
    finally:
        engine.dispose()
    if args.json:
        out.write(json.dumps(report.to_json_dict(), indent=2) + "\n")
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    if not report.sessions:
        out.write(f"purge: no session started before {before.isoformat()}; nothing to purge\n")
        return 0
    rows = sum(report.rows.values())
    out.write(
        f"purge: {verb} {len(report.sessions)} sessions started before {before.isoformat()} "
        f"({rows} rows, {len(report.patients)} patients, {report.audit_rows} audit rows; "
        f"{report.gaps} tombstones)\n"
    )
    return 0
