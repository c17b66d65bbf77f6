"""``ketamon central`` and ``ketamon station``: the clinic's commands (issue 14).

* ``ketamon station [--config FILE] [--name NAME] [--db URL] [--seconds S]``: a headless station
  running the ``[[chair]]`` tables of FILE (the app's configuration format) until SIGTERM/Ctrl+C;
  sessions left open stay open, to be resumed by the next start (or by a GUI station).
* ``ketamon central [--db URL] [--seconds S] [--screenshot PNG]``: the central view window, every
  active chair of every station on the clinic's PostgreSQL.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

COMMANDS = ("central", "station")


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    st = sub.add_parser(
        "station",
        help="run a headless station (chairs without a window) in the clinic",
        description=(
            "Run this PC's chairs with no window: the app's acquisition, alarm engine, prompts "
            "and writer, registered in the clinic's database with a heartbeat. Stops on "
            "SIGTERM or Ctrl+C; open sessions stay open to be resumed."
        ),
    )
    add_common(st)
    st.add_argument(
        "--config",
        metavar="FILE",
        help="station configuration (TOML: database_url, thresholds_file, site_file, [[chair]]);"
        " default: the data folder's config.toml",
    )
    st.add_argument("--name", help="station name in the clinic (default: the host name)")
    st.add_argument("--db", metavar="URL", help="database URL (overrides the configuration)")
    st.add_argument("--seconds", type=float, help="stop after this many seconds (tests)")
    ce = sub.add_parser(
        "central",
        help="open the clinic's central view (every active chair of every station)",
        description="Every active chair in the clinic, live, from its PostgreSQL database.",
    )
    add_common(ce)
    ce.add_argument("--db", metavar="URL", help="the clinic's PostgreSQL URL")
    ce.add_argument("--seconds", type=float, help="close after this many seconds (tests)")
    ce.add_argument(
        "--screenshot", metavar="PNG", help="save a picture of the window just before closing"
    )


def _error(text: str) -> Exception:
    from ketamon.cli import CommandError

    return CommandError(text)


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if args.command == "station":
        return cmd_station(args, out, err)
    return cmd_central(args, out, err)


def _config(args: argparse.Namespace) -> tuple[Any, str, Path]:
    from ketamon.config import Config, database_url, load_config
    from ketamon.paths import resolve_paths

    paths = resolve_paths(getattr(args, "data_dir", None)).ensure()
    config: Config
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise _error(f"--config {args.config}: no such file")
        config = load_config(path)
    else:
        config = load_config(paths.config_file)
    return config, database_url(args.db, config, paths.sqlite_url()), paths.data_dir


def _positive(value: float | None, what: str) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise _error(f"{what} must be a positive number of seconds, got {value}")


def cmd_station(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ketamon.clinic.registry import ClinicError
    from ketamon.clinic.station import HeadlessStation, StationSettings
    from ketamon.services import load_profile
    from ketamon.site_settings import load_site_profile

    _positive(args.seconds, "--seconds")
    config, url, data_dir = _config(args)
    if not config.chairs:
        raise _error(
            f"{args.config or 'the configuration'}: no [[chair]] tables: a station needs chairs"
        )
    name = args.name or socket.gethostname()
    settings = StationSettings(
        name=name,
        database_url=url,
        chairs=tuple(config.chairs),
        profile=load_profile(config),
        site=load_site_profile(config.site_file or None),
        spool_dir=data_dir,
    )

    def say(text: str) -> None:
        err.write(text + "\n")
        err.flush()

    station = HeadlessStation(settings, log_line=say)
    try:
        station.open()
    except ClinicError as exc:
        raise _error(str(exc)) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        station.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    say(f"station {name}: running {len(station.chairs)} chairs (stop with SIGTERM or Ctrl+C)")
    station.run(max_seconds=args.seconds)
    writer_stats = f"{station.readings_committed} readings committed"
    say(f"station {name}: stopped; {writer_stats}")
    return 0


def cmd_central(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from sqlalchemy.engine import make_url

    _positive(args.seconds, "--seconds")
    _, url, _ = _config(args)
    if make_url(url).get_backend_name() != "postgresql":
        raise _error(
            "the central view needs the clinic's PostgreSQL database "
            "(--db postgresql://… or database_url in the configuration)"
        )
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from ketamon.clinic.feed import CentralFeed
    from ketamon.config import load_config
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile
    from ketamon.ui import theme
    from ketamon.ui.central import CentralWidget

    config = load_config(resolve_paths(getattr(args, "data_dir", None)).config_file)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setStyleSheet(theme.stylesheet())
    feed = CentralFeed(url).start()
    window = CentralWidget(feed, load_profile(config))
    window.setWindowTitle("ketamon — clinic central view")
    window.resize(1366, 768)
    window.setStyleSheet(theme.stylesheet())
    if args.seconds is not None:

        def close() -> None:
            if args.screenshot:
                window.refresh()
                window.grab().save(args.screenshot)
            window.close()

        QTimer.singleShot(int(args.seconds * 1000), close)
    window.show()
    try:
        return int(app.exec())
    finally:
        window.stop()
        feed.stop()
