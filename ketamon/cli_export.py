"""Command line for getting a session out of ketamon: ``ketamon export`` and ``ketamon hl7-out``.

``ketamon export SESSION_ID --format pdf|csv|json|fhir [--out PATH]`` writes one session (read
from the record, folded by the core) to a file the user names, through a temporary file and a
rename, and audits the export (who, what, where). ``ketamon hl7-out`` shows and drives the
outbound HL7 v2 queue (ORU^R01 over MLLP to the clinic's interface engine).

Kept apart from :mod:`ketamon.cli` (which hooks these in); same conventions: expected problems
are one ``ketamon: error: …`` line and exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

COMMANDS = ("export", "hl7-out")
DB_HELP = "database URL (default: embedded SQLite)"


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``export`` and ``hl7-out`` to the ``ketamon`` subcommand parsers."""
    from ketamon.exports import FORMATS

    export = sub.add_parser(
        "export",
        help="write one session as PDF, tidy CSV, JSON or a FHIR R4 bundle",
        description="Write one session, read from its record, to PATH: pdf (the human-readable "
        "copy: header, chart, every entry with corrections, flags, REMS answers, signatures), "
        "csv (a zip of observations.csv, doses.csv and alarms.csv), json (the record as the "
        "core reads it, schema ketamon-session-export/1) or fhir (a FHIR R4 Bundle; the session "
        "must be signed). The file appears whole or not at all; each export is audited.",
    )
    add_common(export)
    export.add_argument("session_id", type=int, metavar="SESSION_ID")
    export.add_argument("--format", required=True, choices=list(FORMATS), dest="fmt")
    export.add_argument(
        "--out",
        metavar="PATH",
        help="file to write (default: session-<ID>.<ext> in the current folder)",
    )
    export.add_argument(
        "--page-size", choices=["a4", "letter"], default="a4", help="PDF page size (default a4)"
    )
    export.add_argument(
        "--downsample",
        type=float,
        metavar="SECONDS",
        help="fhir/csv: keep at most one monitor reading per parameter per SECONDS "
        "(default: every reading)",
    )
    export.add_argument("--db", metavar="URL", help=DB_HELP)

    hl7 = sub.add_parser(
        "hl7-out",
        help="the outbound HL7 v2 queue to the clinic's interface engine (status, send, run)",
        description="Results go out as ORU^R01 (IHE PCD-01) over MLLP to the engine named in "
        "the configuration's [hl7_out] table: one message per batch of readings and one per "
        "signed session. Messages wait in the database until the engine acknowledges them "
        "(AA); every message keeps its control id across retries and restarts.",
    )
    add_common(hl7)
    actions = hl7.add_subparsers(dest="hl7_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        help="show the queue: waiting, sent, and why the oldest waiting one is not sent",
        description="Show the outbound queue. Exit 0.",
    )
    add_common(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--all", action="store_true", help="list sent messages too")
    status.add_argument("--db", metavar="URL", help=DB_HELP)
    send = actions.add_parser(
        "send",
        help="queue a signed session's results now (e.g. one signed before the interface existed)",
        description="Queue the ORU^R01 of a signed session. Queuing the same session again "
        "changes nothing (the same control id).",
    )
    add_common(send)
    send.add_argument("session_id", type=int, metavar="SESSION_ID")
    send.add_argument("--db", metavar="URL", help=DB_HELP)
    run = actions.add_parser(
        "run",
        help="queue new readings and signatures and deliver the queue until stopped",
        description="Scan the database for new readings and signatures, queue them, and send "
        "the queue to the engine, waiting for each ACK and retrying with back-off. Stops on "
        "Ctrl+C, after --seconds, or with --once when the queue is empty or nothing can be "
        "sent now.",
    )
    add_common(run)
    run.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")
    run.add_argument(
        "--once", action="store_true", help="one pass: queue, try each due message, stop"
    )
    run.add_argument("--db", metavar="URL", help=DB_HELP)


def _error(text: str) -> Exception:
    from ketamon.cli import CommandError

    return CommandError(text)


def _who() -> str:
    try:
        return f"OS user {getpass.getuser()} on {socket.gethostname()}"
    except (OSError, KeyError):
        return "unknown OS user"


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.command == "export":
        return cmd_export(args, out, err)
    return cmd_hl7_out(args, out, err)


def _open(args: argparse.Namespace) -> tuple[Any, Any]:
    """(config, url) from --data-dir/--db."""
    from ketamon.config import database_url, load_config
    from ketamon.paths import resolve_paths

    paths = resolve_paths(getattr(args, "data_dir", None)).ensure()
    config = load_config(paths.config_file)
    return config, database_url(args.db, config, paths.sqlite_url())


def cmd_export(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ketamon.exports import ExportError, default_name, export_session
    from ketamon.services import open_database
    from ketamon.site_settings import load_site_profile
    from ketamon.storage.history import session_readings
    from ketamon.storage.outbox import record_export
    from ketamon.storage.repository import SqlSessionRepository
    from ketamon.storage.users import system_user_id

    config, url = _open(args)
    site = load_site_profile(config.site_file or None)
    path = Path(args.out) if args.out else Path.cwd() / default_name(args.session_id, args.fmt)
    who = _who()
    engine = open_database(url)
    try:
        entries = SqlSessionRepository(engine).load(args.session_id)
        if not entries:
            raise _error(f"there is no session {args.session_id}")
        readings = session_readings(engine, args.session_id)
        try:
            result = export_session(
                entries,
                readings,
                args.fmt,
                path,
                generated_at=datetime.now(UTC),
                site_name=site.setting_name or site.name,
                exported_by=who,
                page_size=args.page_size,
                downsample_s=args.downsample,
            )
        except ExportError as exc:
            raise _error(str(exc)) from exc
        record_export(
            engine,
            user_id=system_user_id(engine),
            session_id=args.session_id,
            fmt=args.fmt,
            paths=[str(p) for p in result.paths],
            size=result.bytes,
            sha256=result.sha256,
            who=f"command line, {who}",
        )
    finally:
        engine.dispose()
    where = ", ".join(str(p) for p in result.paths)
    err.write(f"export: wrote {where} ({result.bytes} bytes, SHA-256 {result.sha256})\n")
    return 0


def cmd_hl7_out(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import json
    import signal
    import threading
    import time

    from ketamon.hl7out import Hl7OutSender, parse_settings, status_lines
    from ketamon.paths import resolve_paths
    from ketamon.services import open_database
    from ketamon.storage import outbox

    config, url = _open(args)
    origin = str(resolve_paths(getattr(args, "data_dir", None)).config_file)
    settings = parse_settings(config.hl7_out, origin) if config.hl7_out else None
    engine = open_database(url)
    try:
        if args.hl7_command == "status":
            rows = outbox.queue_rows(engine, include_sent=args.all)
            counts = outbox.queue_counts(engine)
            if args.json:
                doc = {
                    "configured": settings is not None,
                    "engine": None if settings is None else settings.where,
                    "queued": counts[outbox.QUEUED],
                    "sent": counts[outbox.SENT],
                    "messages": [r.to_json_dict() for r in rows],
                }
                out.write(json.dumps(doc, indent=2) + "\n")
                return 0
            where = "not configured" if settings is None else f"to {settings.where}"
            out.write(
                f"HL7 out {where}: {counts[outbox.QUEUED]} queued, {counts[outbox.SENT]} sent\n"
            )
            if rows:
                out.write(f"{'ID':>6} {'CONTROL ID':<20} {'KIND':<9} {'SESS':>6} STATE\n")
                out.writelines(line + "\n" for line in status_lines(rows))
            return 0
        if settings is None:
            raise _error(
                f"{origin}: no [hl7_out] table: the outbound HL7 interface is not configured"
            )
        sender = Hl7OutSender(engine, settings)
        try:
            if args.hl7_command == "send":
                ids = sender.queue_session(args.session_id)
                if not ids:
                    raise _error(f"session {args.session_id} does not exist or is not signed")
                err.write(f"hl7-out: queued {', '.join(ids)}\n")
                return 0
            stop = threading.Event()

            def handler(signum: int, frame: object) -> None:
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, handler)
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            while not stop.is_set():
                report = sender.run_pass(stop)
                if report.queued or report.sent or report.failed:
                    err.write(
                        f"hl7-out: {report.queued} queued, {report.sent} sent, "
                        f"{report.waiting} waiting"
                        + (f"; not delivered: {report.failed}" if report.failed else "")
                        + "\n"
                    )
                if args.once:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(settings.poll_s)
        finally:
            sender.close()
    finally:
        engine.dispose()
    return 0


def start_hl7_out(engine: Any, config: Any, paths: Any) -> Any:
    """``ketamon record``'s (and the app's) hook: a running HL7 out worker when the
    configuration has an ``[hl7_out]`` table, else None; ``stop()`` it on the way out."""
    if not getattr(config, "hl7_out", None):
        return None
    from ketamon.hl7out import start_from_config

    return start_from_config(engine, config.hl7_out, str(paths.config_file))
