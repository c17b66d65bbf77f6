"""Command line: ``ketamon [gui|demo|decode|record|emulate|user|sessions|audit] …``.

The subcommands, their options and their JSON output are a public interface that clinics script
against; keep them stable and documented in the README. No command prints a traceback: expected
problems are one ``ketamon: error: …`` line (exit 2), unexpected ones are logged with details.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, cast

from ketamon import SAFETY_STATEMENT, __version__, cli_admin, cli_clinic, cli_course, cli_export

if TYPE_CHECKING:
    from ketamon.acquisition.pipeline import ChairPipeline
    from ketamon.storage.writer import DatabaseWriter

log = logging.getLogger("ketamon")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70
#: 128 + the signal's number, as a shell reports a process a signal stopped
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class CommandError(Exception):
    """An expected failure with a message for the user."""


class Interrupted(KeyboardInterrupt):
    """Ctrl+C or SIGTERM before a command was ready to stop cleanly (start-up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _install_startup_handlers() -> None:
    """Until a command can stop cleanly, Ctrl+C and SIGTERM end it at once without a
    traceback (exit 130 / 143): nothing has been recorded yet."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _interrupt)
        except ValueError:  # not the main thread (tests calling main() from a thread)
            return


class StopOnSignals:
    """A running command's Ctrl+C and SIGTERM.

    The first asks the command to stop (``stop`` runs in a helper thread, so the handler never
    waits on a lock the interrupted code holds): it flushes what it holds and ends. A second
    forces the stop at once and says how many readings were not saved (``unsaved``).
    """

    def __init__(
        self,
        stop: Any,
        unsaved: Any = None,
        *,
        install: bool = True,
    ) -> None:
        self._stop = stop
        self._unsaved = unsaved
        self.signum: int | None = None
        if install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signum is None:
            self.signum = signum
            threading.Thread(target=self._stop, name="stop-request", daemon=True).start()
            return
        n = 0
        if self._unsaved is not None:
            try:
                n = int(self._unsaved())
            except Exception:
                n = -1
        said = "an unknown number of" if n < 0 else str(n)
        os.write(
            2,
            f"ketamon: forced stop: {said} readings were not saved\n".encode(),
        )
        os._exit(128 + signum)


def finite(name: str, value: float | None, *, low: float = 0.0, high: float = math.inf) -> None:
    """A number option that must be finite and within (low, high]."""
    if value is None:
        return
    if not math.isfinite(value) or not low < value <= high:
        bound = f"at most {high:g}" if math.isfinite(high) else "finite"
        raise CommandError(f"{name} must be a number above {low:g} and {bound}, got {value!r}")


def _add_common(p: argparse.ArgumentParser, *, sub: bool = True) -> None:
    # On subcommands the defaults are suppressed so "ketamon --data-dir X demo" keeps X.
    default: Any = argparse.SUPPRESS if sub else None
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default,
        help="keep the database and configuration in DIR instead of the user folders",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default or False,
        help="log more detail to stderr",
    )


def build_parser() -> argparse.ArgumentParser:
    from devices.protocols import PROTOCOLS, wire_protocols
    from devices.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="ketamon",
        description="Chair-side vital-sign documentation for ketamine and esketamine sessions. "
        + SAFETY_STATEMENT,
    )
    parser.add_argument("--version", action="version", version=f"ketamon {__version__}")
    _add_common(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", help="open the app (the default)", description="Open the app.")
    _add_common(gui)
    gui.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")

    demo = sub.add_parser(
        "demo",
        help="open the app with two simulated chairs on a demo database",
        description="Open the app with two chairs fed by the simulator, on an embedded SQLite "
        "database in a demo folder (never your real data).",
    )
    _add_common(demo)
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="run simulated time X times faster than real time (default 1)",
    )
    demo.add_argument(
        "--course",
        action="store_true",
        help="also record a DEMO patient's 12-session esketamine course (once): start a "
        "session for Jordan Course and open Course (F12) → Course view",
    )

    decode = sub.add_parser(
        "decode",
        help="decode a raw capture of device bytes to JSON lines",
        description="Read a raw capture of the device→host byte stream and print one JSON object "
        "per reading. Bad frames are counted on stderr.",
    )
    _add_common(decode)
    decode.add_argument("--protocol", required=True, choices=wire_protocols())
    decode.add_argument("file", metavar="FILE")

    record = sub.add_parser(
        "record",
        help="record a monitor into the database (headless)",
        description="Connect to a monitor, record its readings into the database under a "
        "session, and print them as JSON lines. An open session for the same chair is resumed.",
    )
    _add_common(record)
    record.add_argument("--protocol", required=True, choices=wire_protocols())
    where = record.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PATH", help="serial port, e.g. /dev/ttyUSB0")
    where.add_argument("--tcp", metavar="HOST:PORT", help="HL7 over TCP: connect to a sender")
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="HL7 over TCP: listen for a sender that connects to ketamon (e.g. 0.0.0.0:6661)",
    )
    record.add_argument("--baud", type=int, metavar="N", help="override the protocol's baud rate")
    record.add_argument("--parity", choices=["N", "E", "O"], help="override the parity")
    record.add_argument(
        "--rtscts", choices=["on", "off"], help="override RTS/CTS hardware flow control"
    )
    record.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")
    record.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    record.add_argument("--raw", metavar="FILE", help="also keep the raw received bytes in FILE")
    record.add_argument("--chair", metavar="NAME", help="chair name (default: derived from port)")
    record.add_argument("--quiet", action="store_true", help="do not print readings")
    record.add_argument(
        "--commit-log",
        action="store_true",
        help="after each database commit print 'record: committed N readings (total T, last "
        "at TIME)' on stderr (what a crash can no longer lose)",
    )

    thresholds = sub.add_parser(
        "thresholds",
        help="show the threshold profile in force, or check a clinic's profile file",
        description="Show the threshold profile in force (the shipped defaults, or the clinic's "
        "file named by thresholds_file in the configuration), or check a profile file before "
        "putting it in force. Each limit is printed with its source.",
    )
    _add_common(thresholds)
    thresholds.add_argument("action", choices=["show", "check"])
    thresholds.add_argument("file", nargs="?", metavar="FILE", help="the profile to check")
    thresholds.add_argument("--json", action="store_true", help="print JSON")

    emulate = sub.add_parser(
        "emulate",
        help="emulate a monitor on a pseudo-terminal (or TCP for hl7)",
        description="Create a pseudo-terminal, print its path, and play the monitor side of the "
        "protocol following a scenario until stopped (Ctrl+C).",
    )
    _add_common(emulate)
    emulate.add_argument("--protocol", required=True, choices=wire_protocols())
    emulate.add_argument("--scenario", default="stable", choices=list(SCENARIOS))
    emulate.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="scenario time runs X times faster than real time",
    )
    emulate.add_argument(
        "--link", metavar="PATH", help="keep a symlink at PATH pointing at the current pty"
    )
    emulate.add_argument(
        "--tcp",
        metavar="PORT",
        type=int,
        help="hl7 only: listen on 127.0.0.1:PORT instead of a pty",
    )
    emulate.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")

    user = sub.add_parser(
        "user",
        help="manage the people who sign in (add, list, disable)",
        description="Manage user accounts. Roles: nurse, physician, admin, auditor. Users are "
        "never deleted, only disabled; every change is written to the audit trail.",
    )
    _add_common(user)
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a user (asks for the password twice)",
        description="Add a user. The password is asked for twice on the terminal, or read as "
        "one line from standard input with --password-stdin. It is stored only as an "
        "argon2id hash.",
    )
    _add_common(add)
    add.add_argument("--username", required=True, help="sign-in name (letters, digits, . _ -)")
    add.add_argument("--role", required=True, choices=["nurse", "physician", "admin", "auditor"])
    add.add_argument("--full-name", required=True, metavar="NAME", help="printed name")
    add.add_argument("--credentials", default="", metavar="TEXT", help="e.g. RN, MD")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    lst = actions.add_parser("list", help="list users", description="List all users.")
    _add_common(lst)
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    disable = actions.add_parser(
        "disable",
        help="disable a user (they can no longer sign in)",
        description="Disable a user account. Their records and audit entries stay as they are.",
    )
    _add_common(disable)
    disable.add_argument("--username", required=True)
    disable.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the audit)")
    disable.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    unlock = actions.add_parser(
        "unlock",
        help="unlock an account locked by failed sign-ins",
        description="Unlock an account that failed sign-ins locked (the site's lockout count, "
        "5 by default). The reason is kept in the audit trail.",
    )
    _add_common(unlock)
    unlock.add_argument("--username", required=True)
    unlock.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the audit)")
    unlock.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    pmf = sub.add_parser(
        "pmf",
        help="print a session's REMS Patient Monitoring Form, or write it as PDF",
        description="Print the Spravato REMS Patient Monitoring Form of a session, filled from "
        "the record and the site profile, with each field's source and the fields still "
        "missing. --pdf writes a printable PDF, refused while any required field is missing.",
    )
    _add_common(pmf)
    pmf.add_argument("session_id", type=int, metavar="SESSION_ID")
    pmf.add_argument("--pdf", metavar="PATH", help="write the filled form as PDF to PATH")
    pmf.add_argument(
        "--page-size", choices=["a4", "letter"], default="a4", help="PDF page size (default a4)"
    )
    pmf.add_argument("--json", action="store_true", help="print the form as JSON")
    pmf.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    sessions = sub.add_parser(
        "sessions",
        help="list sessions and where they stand (open, awaiting signature, signed)",
        description="Sessions after the chair: open, awaiting a physician's signature, signed, "
        "or signed with addenda.",
    )
    _add_common(sessions)
    sessions_actions = sessions.add_subparsers(
        dest="sessions_command", metavar="ACTION", required=True
    )
    sessions_list = sessions_actions.add_parser(
        "list",
        help="list sessions, oldest first",
        description="One line per session: id, chair, patient, treatment, start and end (UTC, "
        "ISO 8601) and status (open | awaiting_signature | signed | addendum).",
    )
    _add_common(sessions_list)
    sessions_list.add_argument(
        "--status",
        choices=["open", "awaiting_signature", "signed", "addendum", "addendum_pending"],
        help="only sessions with this status",
    )
    sessions_list.add_argument("--json", action="store_true", help="print a JSON array")
    sessions_list.add_argument(
        "--db", metavar="URL", help="database URL (default: embedded SQLite)"
    )
    audit = sub.add_parser(
        "audit",
        help="check the audit trail (verify)",
        description="Check the tamper-evident audit trail.",
    )
    _add_common(audit)
    audit_actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_actions.add_parser(
        "verify",
        help="check the audit hash chain, the session entries and the signatures",
        description="Recompute every audit entry's hash and its link to the one before, check "
        "every session entry against its audit copy and every signature against the entries "
        "it signs. Exit 0 if intact, 1 naming the first broken row. Only reads.",
    )
    _add_common(verify)
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--db", metavar="URL", help="database URL (default: embedded SQLite)")
    cli_export.add_parsers(sub, _add_common)
    cli_admin.add_parsers(sub, _add_common)
    cli_clinic.add_parsers(sub, _add_common)
    cli_course.add_parsers(sub, _add_common)
    del PROTOCOLS
    return parser


# ---- command implementations ---------------------------------------------------------------


def _paths(args: argparse.Namespace, *, demo: bool = False) -> Any:
    """The data and configuration folders, made if missing: the data folder is the owner's
    alone (0700)."""
    from ketamon.paths import resolve_paths

    paths = resolve_paths(getattr(args, "data_dir", None), demo=demo)
    for folder, what in ((paths.data_dir, "data folder"), (paths.config_dir, "config folder")):
        if folder.exists() and not folder.is_dir():
            raise CommandError(f"the {what} {folder} is a file, not a folder")
    try:
        paths.ensure()
    except OSError as exc:
        raise CommandError(
            f"cannot make the data folder {paths.data_dir}: {exc.strerror or exc}"
        ) from exc
    try:
        if paths.data_dir.stat().st_mode & 0o077:
            paths.data_dir.chmod(0o700)
    except OSError:
        log.warning("cannot make %s private (0700)", paths.data_dir)
    return paths


def cmd_gui(args: argparse.Namespace, *, demo: bool) -> int:
    from ketamon.config import Config, database_url, load_config
    from ketamon.services import load_profile
    from ketamon.site_settings import load_site_profile

    paths = _paths(args, demo=demo)
    config = Config() if demo else load_config(paths.config_file)
    url = (
        paths.sqlite_url()
        if demo
        else database_url(getattr(args, "db", None), config, paths.sqlite_url())
    )
    profile = load_profile(config)
    site = load_site_profile(config.site_file or None)
    clock = None
    if demo and args.speed != 1.0:
        from devices.clock import ScaledClock

        if not 0 < args.speed <= 1000:
            raise CommandError("--speed must be between 0 and 1000")
        clock = ScaledClock(args.speed)
    _check_display()
    if demo:
        _set_aside_incompatible_demo_database(paths)
    try:
        from ketamon.app import prepare_demo_course, run_gui
    except ImportError as exc:
        raise CommandError(
            f"Qt cannot be loaded ({exc}): install the system packages listed in "
            "resources/debian-packages.txt"
        ) from exc
    if demo and getattr(args, "course", False):
        from datetime import date

        if prepare_demo_course(url, profile, date.today()):
            sys.stderr.write("demo: recorded the DEMO course (12 sessions) for Jordan Course\n")

    return run_gui(paths, config, profile, url, demo=demo, clock=clock, site=site)


def _check_display() -> None:
    """A window needs a display: say how to get one rather than letting Qt abort."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    raise CommandError(
        "no display to open the window on: run it under a virtual screen "
        "('xvfb-run ketamon demo') or set QT_QPA_PLATFORM (e.g. QT_QPA_PLATFORM=offscreen)"
    )


def _set_aside_incompatible_demo_database(paths: Any) -> None:
    """The demo's database holds only demo data: one an upgrade cannot use is moved aside (and
    said so) instead of stopping the demo. Real databases are never touched this way."""
    from datetime import UTC, datetime

    from ketamon.storage.database import DatabaseVersionError
    from ketamon.storage.migrate import schema_status

    db = paths.database_file
    if not db.exists():
        return
    from ketamon.storage.database import make_engine

    engine = make_engine(paths.sqlite_url())
    try:
        status = schema_status(engine)
        if status.current is None and status.has_any_tables:
            raise DatabaseVersionError("it has tables but no schema revision")
    except DatabaseVersionError as exc:
        engine.dispose()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = db.with_name(f"{db.name}.set-aside-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            old = db.with_name(db.name + suffix)
            if old.exists():
                old.rename(aside.with_name(aside.name + suffix))
        sys.stderr.write(
            f"ketamon: the demo database could not be used ({exc}); it was moved "
            f"to {aside} and a new demo database is made\n"
        )
    finally:
        engine.dispose()


def cmd_decode(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from devices.protocols import protocol_class
    from devices.readings import utcnow

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    proto = protocol_class(args.protocol)(source=str(path))
    count = 0
    chunk = 4096
    for i in range(0, len(data), chunk):
        for r in proto.feed(data[i : i + chunk], utcnow()):
            out.write(json.dumps(r.to_json_dict()) + "\n")
            count += 1
    st = proto.stats
    err.write(
        f"decode: {len(data)} bytes, {st.frames_ok} good frames, {st.frames_bad} bad frames, "
        f"{count} readings\n"
    )
    for note in proto.summary():
        err.write(f"decode: note: {note}\n")
    for why in st.errors[:10]:
        err.write(f"decode: bad frame: {why}\n")
    if st.frames_bad > 10:
        err.write(f"decode: … and {st.frames_bad - 10} more bad frames\n")
    return 0


def cmd_record(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy.exc import IntegrityError

    from devices.clock import SystemClock
    from devices.readings import Reading
    from devices.supervisor import StatusEvent
    from devices.transports import TcpListenTransport
    from ketamon.acquisition.durable import RawCapture
    from ketamon.acquisition.pipeline import ChairPipeline, MonitorSpec
    from ketamon.config import database_url, load_config, parse_chair
    from ketamon.core import commands as c
    from ketamon.core.alarms import EngineAlarms
    from ketamon.core.ports import AuthFailed
    from ketamon.core.session import ChairCore
    from ketamon.domain.alarms import AlarmEvent
    from ketamon.domain.record import PatientInfo, Plan
    from ketamon.domain.roles import Actor
    from ketamon.domain.session_rules import Treatment
    from ketamon.domain.sources import SourceSelector
    from ketamon.domain.thresholds import Priority
    from ketamon.services import build_monitor, load_profile, open_database, resume_session
    from ketamon.site_settings import load_site_profile
    from ketamon.storage.repository import SqlSessionRepository
    from ketamon.storage.spool import EntryRetrier, Spool, replay_spool, spool_path_for
    from ketamon.storage.users import system_user_id
    from ketamon.storage.writer import CommitInfo, DatabaseWriter

    class _NobodySignsIn:
        """A headless recorder has no one to sign in: nothing it does needs a signature."""

        def verify(self, username: str, password: str) -> Actor:
            raise AuthFailed("nobody can sign in to a headless recording")

    if (args.tcp or args.listen) and args.protocol != "hl7":
        raise CommandError("--tcp and --listen are only for --protocol hl7")
    finite("--seconds", args.seconds)
    # Everything is checked before anything is made: a refused command leaves no session,
    # no database and no --raw file behind.
    paths = _paths(args)
    config = load_config(paths.config_file)
    profile = load_profile(config)  # the app's threshold profile: the same flags as at the chair
    site = load_site_profile(config.site_file or None)
    url = database_url(args.db, config, paths.sqlite_url())
    if args.port and not os.path.exists(args.port):
        raise CommandError(f"--port {args.port}: no such device (is the adapter plugged in?)")
    if args.raw:
        _check_writable_file("--raw", args.raw)
    # The command line is read as a [[chair]] table: the same checks and messages as the
    # configuration file, and the same way from a chair to its transport and protocol.
    raw_chair: dict[str, Any] = {"protocol": args.protocol}
    if args.listen:
        raw_chair["listen"] = args.listen
        chair = args.chair or f"record:listen:{args.listen}"
    elif args.tcp:
        raw_chair["tcp"] = args.tcp
        chair = args.chair or f"record:{args.tcp}"
    else:
        raw_chair.update(port=args.port, baud=args.baud, parity=args.parity)
        if args.rtscts is not None:
            raw_chair["rtscts"] = args.rtscts == "on"
        chair = args.chair or f"record:{args.port}"
    raw_chair["name"] = chair
    chair_config = parse_chair(
        {k: v for k, v in raw_chair.items() if v is not None}, "command line"
    )
    engine = open_database(url)
    if args.port:
        try:
            _check_serial_port(args.port)  # free and a terminal: before any session is made
        except CommandError:
            engine.dispose()
            raise
    raw: RawCapture | None = None
    if args.raw:
        try:
            raw = RawCapture(open(args.raw, "ab"), args.raw)  # noqa: SIM115 - closed in finally
        except OSError as exc:
            engine.dispose()
            raise CommandError(f"cannot open --raw file {args.raw}: {exc.strerror}") from exc
    clock = SystemClock()
    monitor = build_monitor(chair_config, clock, raw_log=cast(IO[bytes], raw))
    transport = monitor.transport
    lock = threading.Lock()
    spool = Spool(spool_path_for(url, paths.data_dir))

    def commit_log(info: CommitInfo) -> None:
        with lock:
            err.write(
                f"record: committed {info.rows} readings (total {info.total}, "
                f"last at {info.last_host_time.isoformat()})\n"
            )
            err.flush()

    # Headless recording has nobody signed in: its writes are the built-in system account's.
    system_id = system_user_id(engine)
    if spool.exists():  # what an earlier stop could not store: into the database first
        got = replay_spool(spool, engine)
        err.write(f"record: {got.summary()}\n")
    hl7_out = cli_export.start_hl7_out(engine, config, paths)  # None without [hl7_out]
    writer = DatabaseWriter(
        engine,
        user_id=system_id,
        on_commit=commit_log if args.commit_log else None,
        spool=spool,
    ).start()
    # One thread records the session's entries (flags, link events) in order, so the monitor's
    # thread never waits on the database for them.
    commands = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-commands")
    try:
        repo = SqlSessionRepository(engine, writer, profile=profile, profile_origin="record")
        system = repo.system_actor()
        proto = monitor.protocol
        pipeline = ChairPipeline(
            chair,
            MonitorSpec(make=lambda: (transport, proto), description=transport.description),
            profile,
            clock=clock,
            link_low_after_s=site.link_lost_low_s,
            link_medium_after_s=site.link_lost_medium_s,
        )
        pipeline.alarms.latch_high = site.latch_high
        pipeline.sources = SourceSelector(site.primary_sources)
        core = ChairCore(
            chair,
            repo,
            _NobodySignsIn(),
            profile,
            clock.now,
            alarms=EngineAlarms(pipeline.alarms, clock.now, pipeline.alarm_lock),
        )
        mine = [o for o in repo.open_sessions() if o.chair == chair]
        resumed = bool(mine)
        if resumed:
            core.resume(mine[-1].session_id)
            writer.call(
                lambda s: resume_session(s, mine[-1].session_id, why="ketamon record restarted")
            )
        else:
            start = c.StartSession(
                PatientInfo(None, "UNIDENTIFIED", "Unidentified", "Patient"),
                Plan(Treatment.OTHER),
                device=args.protocol,
            )
            for attempt in range(5):  # recorders started together race to make the patient
                try:
                    core.execute(start, system)
                    break
                except IntegrityError:
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        assert core.state is not None
        session_id = core.state.session_id
        err.write(
            f"record: {'resuming' if resumed else 'started'} session {session_id} for {chair} "
            f"on {transport.description}\n"
        )
        err.flush()

        entries = EntryRetrier(spool, session_id)

        def record(cmd: c.Command, at: Any = None) -> None:
            when = clock.now() if at is None else at

            def run() -> None:
                entries.run(lambda: core.execute(cmd, system), cmd, when)

            commands.submit(run)

        def on_readings(readings: Sequence[Reading]) -> None:
            writer.submit_readings(session_id, readings)
            if not args.quiet:
                with lock:
                    for r in readings:
                        d = r.to_json_dict()
                        d["session_id"] = session_id
                        out.write(json.dumps(d) + "\n")
                    out.flush()

        def on_link(e: StatusEvent) -> None:
            with lock:
                err.write(f"record: {e.state.value}: {e.reason}\n")
                err.flush()
            record(c.RecordLink(e.state.value, e.reason))

        def on_alarm(e: AlarmEvent) -> None:  # raised, escalated, cleared: as the app stores
            record(c.RecordAlarmEvents([e]))

        pipeline.on_readings, pipeline.on_link, pipeline.on_alarm = on_readings, on_link, on_alarm
        if raw is not None:
            raw.on_failure = lambda why: pipeline.set_condition(
                "tech_raw", Priority.LOW, f"raw capture stopped: {why}", technical=True
            )

        def stop() -> None:
            writer.hurry()
            entries.deadline = time.monotonic() + 1.0
            pipeline.stop()

        stopper = StopOnSignals(stop, writer.unsaved)
        done = threading.Event()
        ticker = threading.Thread(
            target=_record_ticks, args=(pipeline, writer, done), name="record-tick", daemon=True
        )
        ticker.start()
        try:
            pipeline.run(max_seconds=args.seconds)
        finally:
            done.set()
            ticker.join(5.0)
            if isinstance(transport, TcpListenTransport):
                transport.shutdown()

        if entries.deadline is None:  # stopping: no more waiting on the database
            entries.deadline = time.monotonic() + 2.0
        commands.shutdown(wait=True)  # every flag and link event recorded (or spooled), in order
        if stopper.signum is None:  # --seconds ran out: the recording is finished
            entries.run(
                lambda: core.execute(c.EndMonitoring("recording stopped"), system), None, None
            )
        else:  # a signal (logoff, shutdown, Ctrl+C): the session stays open to be resumed
            err.write(
                f"record: stopped by {signal.Signals(stopper.signum).name}; session "
                f"{session_id} stays open (the next 'ketamon record' for {chair} resumes it)\n"
            )
    finally:
        commands.shutdown(wait=True)
        if hl7_out is not None:
            hl7_out.stop()
        writer.stop(timeout=3.0)
        engine.dispose()
        if raw is not None:
            raw.close()
    st = writer.stats
    err.write(
        f"record: {proto.stats.frames_ok} good frames, {proto.stats.frames_bad} bad frames, "
        f"{st.readings_committed} readings committed\n"
    )
    lost = st.readings_dropped + writer.unsaved()
    if st.readings_spooled or entries.spooled:
        err.write(
            f"record: the database could not take {st.readings_spooled} readings and "
            f"{entries.spooled} session entries: they are kept in {spool.path} and stored at "
            "the next start\n"
        )
    if lost or entries.lost:
        err.write(f"record: {lost} readings and {entries.lost} session entries were lost\n")
        return EXIT_INTERNAL
    return 0


def _record_ticks(
    pipeline: ChairPipeline, writer: DatabaseWriter, done: threading.Event, period_s: float = 1.0
) -> None:
    """``record``'s once-a-second tick: technical alarms, and the storage alarm from the
    writer's state (errors since its last commit: readings are held for a retry).

    A headless recording logs no dose, so the NIBP-overdue check (after the first dose) does not
    apply; the link, SpO₂-probe, clock and storage checks do.
    """
    commits, errors, failed = writer.stats.commits, writer.stats.errors, False
    while not done.wait(period_s):
        try:
            st = writer.stats
            if st.errors > errors and st.commits == commits:
                pipeline.storage_failed(st.last_error)
                failed = True
            elif failed and st.commits > commits:
                pipeline.storage_ok()
                failed = False
            commits, errors = st.commits, st.errors
            pipeline.tick(session_active=True, first_dose=None, nibp_interval_min=15.0)
        except Exception:  # the recording goes on; the log says why the checks stopped
            log.exception("record: technical alarm check failed")
            return


def _check_serial_port(path: str) -> None:
    """The port exists, is a terminal device and is free: otherwise refuse before anything is
    made (a recording with no monitor would only look like one)."""
    import serial

    if not os.path.exists(path):
        raise CommandError(f"--port {path}: no such device (is the adapter plugged in?)")
    try:
        port = serial.Serial(path, exclusive=True, timeout=0)
    except serial.SerialException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = str(exc)
        if err in (11, 16) or "busy" in text.lower() or "lock" in text.lower():
            raise CommandError(
                f"--port {path}: the port is busy (another program has it open)"
            ) from exc
        if "Permission denied" in text or err == 13:
            raise CommandError(
                f"--port {path}: permission denied (add your user to the 'dialout' group)"
            ) from exc
        raise CommandError(f"--port {path}: cannot open it: {text}") from exc
    port.close()


def _check_writable_file(option: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a folder")
    if not os.path.isdir(folder):
        raise CommandError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise CommandError(f"{option} {path}: not writable")


def cmd_thresholds(args: argparse.Namespace, out: IO[str]) -> int:
    from ketamon.config import load_config
    from ketamon.domain.thresholds import parse_profile
    from ketamon.services import load_profile

    if args.action == "check":
        if not args.file:
            raise CommandError("thresholds check needs the FILE to check")
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        profile = parse_profile(text, str(path))
    else:
        profile = load_profile(load_config(_paths(args).config_file))
    if args.json:
        out.write(
            json.dumps(
                {
                    "name": profile.name,
                    "limits": [
                        {
                            "id": lim.id,
                            "parameter": lim.parameter,
                            "low": lim.low,
                            "high": lim.high,
                            "priority": lim.priority.label,
                            "source": lim.source,
                        }
                        for lim in profile.limits
                    ],
                    "predose_advisory": {
                        "sys_above": profile.predose_advisory.sys_above,
                        "dia_above": profile.predose_advisory.dia_above,
                        "source": profile.predose_advisory.source,
                    },
                    "bp_rise": {
                        "sys_delta": profile.bp_rise.sys_delta,
                        "dia_delta": profile.bp_rise.dia_delta,
                        "priority": profile.bp_rise.priority.label,
                        "source": profile.bp_rise.source,
                    },
                }
            )
            + "\n"
        )
        return 0
    out.write(f"{profile.name}" + (" — OK\n" if args.action == "check" else "\n"))
    for lim in profile.limits:
        low = "—" if lim.low is None else f"{lim.low:g}"
        high = "—" if lim.high is None else f"{lim.high:g}"
        out.write(
            f"  {lim.priority.marker:<3} {lim.label:<26} {low:>5} … {high:<5}  ({lim.source})\n"
        )
    a, r = profile.predose_advisory, profile.bp_rise
    out.write(f"  pre-dose advisory above {a.sys_above:g}/{a.dia_above:g} ({a.source})\n")
    out.write(
        f"  {r.priority.marker:<3} BP rise ≥ +{r.sys_delta:g}/+{r.dia_delta:g} over the "
        f"pre-dose baseline ({r.source})\n"
    )
    return 0


def cmd_emulate(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from devices.emulators import emulator_class
    from devices.emulators.base import PtyServer
    from devices.scenarios import get_scenario

    finite("--speed", args.speed, high=10000)
    finite("--seconds", args.seconds)
    if args.tcp is not None:
        if args.protocol != "hl7":
            raise CommandError("--tcp is only for --protocol hl7")
        if not 0 <= args.tcp <= 65535:
            raise CommandError(
                f"--tcp must be a port number 0-65535 (0: any free), got {args.tcp}"
            )
    if args.link:
        folder = os.path.dirname(os.path.abspath(args.link))
        if not os.path.isdir(folder):
            raise CommandError(f"--link {args.link}: the folder {folder} does not exist")
        if os.path.exists(args.link) and not os.path.islink(args.link):
            raise CommandError(f"--link {args.link}: exists and is not a symlink")
    emulator = emulator_class(args.protocol)(get_scenario(args.scenario))
    server: Any
    if args.tcp is not None:
        from devices.emulators.hl7 import TcpServer

        server = TcpServer(emulator, port=args.tcp, speed=args.speed)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"--tcp {args.tcp}: cannot listen: {exc.strerror or exc}") from exc
        out.write(f"127.0.0.1:{server.port}\n")
    else:
        try:
            server = PtyServer(emulator, speed=args.speed, link=args.link).start()
        except OSError as exc:
            raise CommandError(
                f"cannot create a pseudo-terminal ({exc.strerror or exc}): this machine has no "
                "pty facility (mount devpts on /dev/pts, or use --tcp with --protocol hl7)"
            ) from exc
        out.write(server.path + "\n")
    out.flush()
    done = threading.Event()
    StopOnSignals(done.set)
    try:
        done.wait(args.seconds)
    finally:
        server.stop()
    err.write(f"emulate: sent {server.bytes_sent} bytes, received {server.bytes_received}\n")
    return 0


def _read_new_password(args: argparse.Namespace, username: str, stdin: IO[str]) -> str:
    import getpass

    from ketamon.storage.users import check_password_rules

    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
    else:
        if not stdin.isatty():
            raise CommandError("no terminal to ask for the password on: use --password-stdin")
        password = getpass.getpass(f"Password for {username}: ")
        check_password_rules(password, username)
        if getpass.getpass("Repeat the password: ") != password:
            raise CommandError("the passwords do not match; nothing was changed")
    check_password_rules(password, username)
    return password


def cmd_audit(args: argparse.Namespace, out: IO[str]) -> int:
    """``ketamon audit verify``: 0 intact, 1 broken (the first break named)."""
    from ketamon.config import database_url, load_config
    from ketamon.storage.verify import open_for_verify, verify_audit

    paths = _paths(args)
    url = database_url(args.db, load_config(paths.config_file), paths.sqlite_url())
    engine = open_for_verify(url)
    try:
        report = verify_audit(engine)
    finally:
        engine.dispose()
    if args.json:
        out.write(json.dumps(report.to_json_dict(), indent=2) + "\n")
    else:
        out.write(report.summary() + "\n")
    return 0 if report.intact else 1


def cmd_user(args: argparse.Namespace, out: IO[str], err: IO[str], stdin: IO[str]) -> int:
    import getpass
    import socket

    from ketamon.config import database_url, load_config
    from ketamon.services import open_database
    from ketamon.storage.audit import acting_as, reason
    from ketamon.storage.users import (
        check_name,
        create_user,
        disable_user,
        list_users,
        normalise_username,
        printable,
        system_user_id,
        unlock_user,
    )

    paths = _paths(args)
    config = load_config(paths.config_file)
    url = database_url(args.db, config, paths.sqlite_url())
    password = ""
    if args.user_command == "add":
        # a bad name fails before the password is asked
        name = normalise_username(args.username)
        check_name("full name", args.full_name)
        check_name("credentials", args.credentials)
        password = _read_new_password(args, name, stdin)
    engine = open_database(url)
    try:
        if args.user_command == "list":
            users = list_users(engine)
            if args.json:
                out.write(json.dumps([u.to_json_dict() for u in users], indent=2) + "\n")
                return 0
            out.write(f"{'USERNAME':<16} {'ROLE':<10} {'NAME':<32} STATUS\n")
            for u in users:
                status = "active" if u.active else "disabled"
                if u.locked:
                    status += ", locked"
                if u.is_demo:
                    status += ", demo"
                if u.role.value == "system":
                    status += ", built-in (cannot sign in)"
                name = printable(u.full_name)
                out.write(f"{u.username:<16} {u.role.value:<10} {name:<32} {status}\n")
            return 0
        try:
            who = f"OS user {getpass.getuser()} on {socket.gethostname()}"
        except (OSError, KeyError):
            who = "unknown OS user"
        from sqlalchemy.orm import Session

        with Session(engine) as s, s.begin(), acting_as(s, system_user_id(s)):
            if args.user_command == "add":
                with reason(s, f"command line: ketamon user add ({who})"):
                    user = create_user(
                        s,
                        username=args.username,
                        full_name=args.full_name,
                        role=args.role,
                        password=password,
                        credentials=args.credentials,
                    )
                err.write(f"user: added {user.username} ({user.role.value})\n")
            elif args.user_command == "unlock":
                user = unlock_user(s, args.username, why=f"{args.reason.strip()} ({who})")
                err.write(f"user: unlocked {user.username}\n")
            else:
                why = args.reason.strip() or "disabled with ketamon user disable"
                user = disable_user(s, args.username, why=f"{why} ({who})")
                err.write(f"user: disabled {user.username}\n")
    finally:
        engine.dispose()
    return 0


def cmd_pmf(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from datetime import UTC, datetime

    from ketamon.config import database_url, load_config
    from ketamon.core.desk import Reviewed
    from ketamon.core.pmf import PmfDefinitionError, build_form, deadline
    from ketamon.domain.record import fold
    from ketamon.services import open_database
    from ketamon.site_settings import load_site_profile
    from ketamon.storage.history import session_readings
    from ketamon.storage.repository import SqlSessionRepository, previous_session

    paths = _paths(args)
    config = load_config(paths.config_file)
    site_profile = load_site_profile(config.site_file or None)
    site = {"name": site_profile.name, **site_profile.settings()}
    url = database_url(args.db, config, paths.sqlite_url())
    engine = open_database(url)
    try:
        repo = SqlSessionRepository(engine)
        entries = tuple(repo.load(args.session_id))
        state = fold(entries)
        if state is None:
            raise CommandError(f"there is no session {args.session_id}")
        reviewed = Reviewed(entries, state)
        readings = session_readings(engine, args.session_id)
        # the patient's previous esketamine session: carried-over patient, HCP and setting
        found = previous_session(engine, args.session_id)
        previous = None if found is None else Reviewed(*found)
    finally:
        engine.dispose()
    try:
        form = build_form(reviewed, site, previous, readings=readings)
    except PmfDefinitionError as exc:
        raise CommandError(str(exc)) from exc
    now = datetime.now(UTC)
    due = deadline(state, now, site)
    if args.pdf:
        if not form.required:
            raise CommandError(f"session {args.session_id} needs no Patient Monitoring Form")
        if form.missing:
            raise CommandError(
                "the form is incomplete: printing it is refused until these fields are "
                "filled or confirmed: " + "; ".join(form.missing)
            )
        from ketamon.exports.pmf_pdf import write_pmf_pdf

        try:
            written = write_pmf_pdf(
                form, args.pdf, page_size=args.page_size, deadline=due, generated_at=now
            )
        except OSError as exc:
            raise CommandError(f"cannot write {args.pdf}: {exc}") from exc
        err.write(f"pmf: wrote {written}\n")
    if args.json:
        doc = form.to_json()
        doc["status"] = due.status
        doc["due_date"] = due.due_date.isoformat() if due.due_date else None
        doc["days_left"] = due.days_left
        doc["submissions"] = [
            {
                "method": s.method,
                "submitted_at": s.submitted_at,
                "reference": s.reference,
                "form_version": s.form_version,
                "form_sha256": s.form_sha256,
                "by": s.by,
            }
            for s in state.pmf_submissions
        ]
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return 0
    if args.pdf:
        return 0
    out.write(f"{form.definition.title} (form version {form.version})\n")
    out.write(f"Session {form.session_id} · {form.patient} · {form.session_date}\n")
    if not form.required:
        out.write("This session needs no Patient Monitoring Form.\n")
        return 0
    when = f"due {due.due_date.isoformat()}" if due.due_date else ""
    out.write(f"Status: {due.status} {when} ({due.days_left} days left)\n")
    for section in form.definition.sections:
        out.write(f"\n{section}\n")
        for f in form.fields:
            if f.spec.section != section:
                continue
            if not f.applies:
                value = "(not asked)"
            elif f.missing and not f.note:
                value = "MISSING"
            else:
                value = f.text or "—"
            note = f" [{f.note}]" if f.note else ""
            origin = f" ({f.origin})" if f.origin and f.applies else ""
            star = "*" if f.spec.required else " "
            out.write(f"  {star} {f.spec.label}: {value}{note}{origin}\n")
    if form.missing:
        out.write(f"\nMissing ({len(form.missing)}): " + "; ".join(form.missing) + "\n")
    else:
        out.write("\nComplete: every required field is filled.\n")
    return 0


def cmd_sessions(args: argparse.Namespace, out: IO[str]) -> int:
    from datetime import UTC, datetime

    from ketamon.config import database_url, load_config
    from ketamon.core import pmf
    from ketamon.services import open_database
    from ketamon.site_settings import load_site_profile
    from ketamon.storage.repository import list_sessions

    paths = _paths(args)
    config = load_config(paths.config_file)
    site = load_site_profile(config.site_file or None).settings()
    url = database_url(args.db, config, paths.sqlite_url())
    engine = open_database(url)
    try:
        rows = [r for r in list_sessions(engine) if args.status in (None, r.status)]
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    # the REMS form's state: due | warned | overdue | submitted | not_required
    forms = {r.id: pmf.deadline(r.state, now, site).status if r.state else None for r in rows}
    if args.json:
        listed = [{**r.to_json_dict(), "pmf": forms[r.id]} for r in rows]
        out.write(json.dumps(listed, indent=2) + "\n")
        return 0
    out.write(
        f"{'ID':>6} {'CHAIR':<12} {'PATIENT':<32} {'TREATMENT':<13} {'STARTED':<32} "
        f"{'ENDED':<32} {'STATUS':<18} PMF\n"
    )
    for r in rows:
        ended = r.ended.isoformat() if r.ended else "-"
        out.write(
            f"{r.id:>6} {r.chair:<12} {r.patient:<32} {r.treatment:<13} "
            f"{r.started.isoformat():<32} {ended:<32} {r.status:<18} {forms[r.id] or '-'}\n"
        )
    return 0


# ---- entry point ---------------------------------------------------------------------------


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (see the README's "Exit status")."""
    _install_startup_handlers()
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl+C / SIGTERM before the command could stop cleanly
        signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"ketamon: interrupted ({signal.Signals(signum).name})\n")
        return 128 + signum


def _main(argv: Sequence[str] | None) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from devices.protocols import UnknownProtocolError
    from devices.scenarios import UnknownScenarioError
    from devices.transports import TransportError
    from ketamon.config import ConfigError
    from ketamon.domain.site import SiteProfileError
    from ketamon.domain.thresholds import ThresholdError
    from ketamon.storage.database import DatabaseConfigError, DatabaseVersionError
    from ketamon.storage.records import RecordError
    from ketamon.storage.spool import SpoolError
    from ketamon.storage.users import UserError

    expected = (
        SpoolError,
        CommandError,
        ConfigError,
        ThresholdError,
        SiteProfileError,
        DatabaseConfigError,
        DatabaseVersionError,
        UserError,
        RecordError,
        TransportError,
        UnknownProtocolError,
        UnknownScenarioError,
    )
    try:
        command = args.command or "gui"
        if command in ("gui", "demo"):
            return cmd_gui(args, demo=command == "demo")
        if command == "decode":
            return cmd_decode(args, sys.stdout, sys.stderr)
        if command == "record":
            return cmd_record(args, sys.stdout, sys.stderr)
        if command == "emulate":
            return cmd_emulate(args, sys.stdout, sys.stderr)
        if command == "thresholds":
            return cmd_thresholds(args, sys.stdout)
        if command == "user":
            return cmd_user(args, sys.stdout, sys.stderr, sys.stdin)
        if command == "audit":
            return cmd_audit(args, sys.stdout)
        if command == "sessions":
            return cmd_sessions(args, sys.stdout)
        if command == "pmf":
            return cmd_pmf(args, sys.stdout, sys.stderr)
        if command in cli_export.COMMANDS:
            return cli_export.run(args, sys.stdout, sys.stderr)
        if command in cli_clinic.COMMANDS:
            return cli_clinic.run(args, sys.stdout, sys.stderr)
        if command in cli_admin.COMMANDS:
            return cli_admin.run(args, sys.stdout, sys.stderr, sys.stdin)
        if command in cli_course.COMMANDS:
            return cli_course.run(args, sys.stdout, sys.stderr)
        parser.error(f"unknown command {command!r}")
    except expected as exc:
        sys.stderr.write(f"ketamon: error: {_one_line(str(exc))}\n")
        return EXIT_USAGE
    except SQLAlchemyError as exc:  # locked, read-only, missing, unreachable: say which, no SQL
        from ketamon.storage.database import user_message

        log.debug("database error", exc_info=True)
        sys.stderr.write(f"ketamon: error: {_one_line(user_message(exc))}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        raise
    except BrokenPipeError:
        return 0
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        sys.stderr.write(
            f"ketamon: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(run with --verbose for details)\n"
        )
        return EXIT_INTERNAL
    return 0


def _one_line(text: str) -> str:
    """A message on one line with control characters escaped (nothing can forge output)."""
    from ketamon.storage.users import printable

    return printable(" ".join(text.split("\n")).strip())
