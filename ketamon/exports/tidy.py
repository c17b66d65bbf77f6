"""Tidy CSV: one row per observation, dose or flag event, each file with a header row.

Three files, ``observations.csv``, ``doses.csv`` and ``alarms.csv`` (columns in
:mod:`ketamon.exports.record`), either in one zip (a path ending ``.zip``) or side by side in a
folder. Times are UTC ISO-8601 with the offset; ``minutes_since_first_dose`` is negative before
the dose and empty when there was none. ``pandas.read_csv`` loads each file with no options.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ketamon.exports.files import ExportError, write_atomic
from ketamon.exports.record import (
    ALARM_COLUMNS,
    DOSE_COLUMNS,
    OBSERVATION_COLUMNS,
    SessionExport,
    alarm_rows,
    dose_rows,
    observation_rows,
)

CSV_FILES = ("observations.csv", "doses.csv", "alarms.csv")


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest text that reads back as the same float
    return v


def csv_bytes(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([_cell(v) for v in row] for row in rows)
    return buf.getvalue().encode("utf-8")


def csv_files(x: SessionExport, every_s: float | None = None) -> dict[str, bytes]:
    return {
        "observations.csv": csv_bytes(OBSERVATION_COLUMNS, observation_rows(x, every_s)),
        "doses.csv": csv_bytes(DOSE_COLUMNS, dose_rows(x)),
        "alarms.csv": csv_bytes(ALARM_COLUMNS, alarm_rows(x)),
    }


def write_csv(x: SessionExport, path: str | Path, every_s: float | None = None) -> list[Path]:
    """Write the zip (``*.zip``) or the three files into the folder ``path``; returns them."""
    target = Path(path)
    files = csv_files(x, every_s)
    if target.suffix.lower() == ".zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
        write_atomic(target, [buf.getvalue()])
        return [target]
    if target.exists() and not target.is_dir():
        raise ExportError(
            f"cannot write {target}: CSV goes to a .zip file or into a folder, and this is a file"
        )
    if not target.exists():
        if not target.parent.is_dir():
            raise ExportError(f"cannot write {target}: the folder {target.parent} does not exist")
        try:
            target.mkdir()
        except OSError as exc:
            raise ExportError(f"cannot make the folder {target}: {exc.strerror}") from exc
    written: list[Path] = []
    try:
        for name, data in files.items():
            write_atomic(target / name, [data])
            written.append(target / name)
    except ExportError:
        for p in written:  # all three files or none
            p.unlink(missing_ok=True)
        raise
    return written
