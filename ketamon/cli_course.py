"""``ketamon doses``: the treatment course's command (issue 15).

* ``ketamon doses report --date D [--csv | --json] [--db URL]``: the day's administrations and
  waste per product and lot (a Schedule III drug's accountability), from every session record:
  esketamine devices, IV infusions (what was given by the stop), IM and oral/sublingual doses,
  and witnessed waste (a partly used device's rest moves from given to wasted). The day is the
  station's local calendar day.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from datetime import date
from typing import IO, Any

COMMANDS = ("doses",)
CSV_COLUMNS = (
    "date",
    "product",
    "lot",
    "administrations",
    "sessions",
    "devices",
    "given_mg",
    "wasted_mg",
    "accounted_mg",
)


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    doses = sub.add_parser(
        "doses",
        help="dose accountability: the day's administrations and waste per product and lot",
        description="Dose accountability for a Schedule III drug (issue 15).",
    )
    dsub = doses.add_subparsers(dest="doses_command", metavar="COMMAND", required=True)
    rep = dsub.add_parser(
        "report",
        help="administrations and waste of one day, per product and lot",
        description=(
            "Totals per product and lot for one local calendar day: administrations, sessions, "
            "esketamine devices, mg given, mg wasted (witnessed) and their sum."
        ),
    )
    add_common(rep)
    rep.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day to report")
    fmt = rep.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on standard output")
    fmt.add_argument("--json", action="store_true", help="JSON on standard output")
    rep.add_argument("--db", metavar="URL", help="database URL (overrides the configuration)")


def _error(text: str) -> Exception:
    from ketamon.cli import CommandError

    return CommandError(text)


def run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    return cmd_doses_report(args, out, err)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _error(f"--date {text!r}: not a date (use YYYY-MM-DD, e.g. 2026-11-30)") from None


def cmd_doses_report(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from ketamon.config import database_url, load_config
    from ketamon.core.dose_report import dose_lines
    from ketamon.domain.dosing import dose_report
    from ketamon.paths import resolve_paths
    from ketamon.services import open_database
    from ketamon.storage.courses import dose_entries

    day = parse_day(args.date)
    paths = resolve_paths(getattr(args, "data_dir", None)).ensure()
    config = load_config(paths.config_file)
    engine = open_database(database_url(args.db, config, paths.sqlite_url()))
    try:
        rows = dose_report(dose_lines(dose_entries(engine, day)), day)
    finally:
        engine.dispose()
    if args.csv:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in rows:
            d = r.to_json_dict()
            w.writerow([day.isoformat(), *(d[c] for c in CSV_COLUMNS[1:])])
        return 0
    if args.json:
        json.dump(
            {"date": day.isoformat(), "rows": [r.to_json_dict() for r in rows]}, out, indent=2
        )
        out.write("\n")
        return 0
    out.write(f"Dose accountability for {day.isoformat()}\n")
    if not rows:
        out.write("No administrations or waste recorded.\n")
        return 0
    head = f"{'product':<40} {'lot':<14} {'adm':>4} {'dev':>4} {'given mg':>9} {'waste mg':>9}"
    out.write(head + "\n")
    for r in rows:
        out.write(
            f"{r.product[:40]:<40} {r.lot[:14]:<14} {r.administrations:>4} {r.devices:>4} "
            f"{r.given_mg:>9g} {r.wasted_mg:>9g}\n"
        )
    return 0
