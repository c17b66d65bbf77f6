"""Fault suite (issue 11): bad input, implausible values, threshold profiles and accounts. Each
case here was accepted (or crashed) before the fix."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.readings import Quality, Reading, make_reading
from ketamon.acquisition.durable import RawCapture
from ketamon.acquisition.pipeline import TECH_ARTIFACT, ChairPipeline, MonitorSpec
from ketamon.cli import main
from ketamon.domain.thresholds import ThresholdError, parse_profile
from ketamon.resources import read_text
from ketamon.storage.users import UserError, check_name, check_password_rules, printable

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ---- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["record", "--protocol", "hl7", "--port", "/dev/nonexistent"], "no such device"),
        (["record", "--protocol", "hl7", "--port", "/dev/null", "--seconds", "nan"], "--seconds"),
        (["record", "--protocol", "hl7", "--port", "/dev/null", "--seconds", "inf"], "--seconds"),
        (["record", "--protocol", "hl7", "--port", "/dev/null", "--seconds", "-1"], "--seconds"),
        (["emulate", "--protocol", "hl7", "--seconds", "-1"], "--seconds"),
        (["emulate", "--protocol", "hl7", "--speed", "nan"], "--speed"),
        (["emulate", "--protocol", "hl7", "--tcp", "99999"], "--tcp"),
        (["emulate", "--protocol", "hl7", "--link", "/no/such/dir/x"], "does not exist"),
        (
            ["record", "--protocol", "hl7", "--port", "/dev/null", "--raw", "/no/such/dir/r"],
            "--raw",
        ),
    ],
)
def test_bad_command_line_values_are_one_line_errors_and_create_nothing(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    rc, _out, err = run(["--data-dir", str(data), *args], capsys)
    assert rc == 2, err
    assert err.startswith("ketamon: error: ") and err.count("\n") == 1, err
    assert says in err
    assert "Traceback" not in err
    assert not (data / "ketamon.sqlite3").exists() or "--port" in " ".join(args)
    assert not any(p.suffix == ".spool" for p in data.glob("*")) if data.exists() else True


def test_a_port_that_is_not_a_serial_device_creates_no_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from ketamon.storage.models import TreatmentSession

    db = tmp_path / "k.sqlite3"
    argv = ["--data-dir", str(tmp_path), "record", "--protocol", "masimo", "--port", "/dev/null"]
    rc, _, err = run([*argv, "--db", f"sqlite:///{db}", "--seconds", "1"], capsys)
    assert rc == 2 and "--port /dev/null" in err, err
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(TreatmentSession)) == 0
    engine.dispose()


def test_a_data_dir_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    rc, _, err = run(["--data-dir", str(f), "sessions", "list"], capsys)
    assert rc == 2 and "is a file" in err


def test_no_display_names_xvfb_and_qt_qpa_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    rc, _, err = run(["--data-dir", str(tmp_path), "demo"], capsys)
    assert rc == 2
    assert "xvfb-run" in err and "QT_QPA_PLATFORM" in err


def test_a_locked_database_is_an_error_naming_the_lock_without_sql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = tmp_path / "k.sqlite3"
    url = f"sqlite:///{db}"
    assert main(["--data-dir", str(tmp_path), "sessions", "list", "--db", url]) == 0
    capsys.readouterr()
    holder = sqlite3.connect(db, timeout=0)
    holder.execute("PRAGMA journal_mode=DELETE")  # an exclusive lock blocks readers too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        rc, _, err = run(
            ["--data-dir", str(tmp_path), "user", "list", "--db", url],
            capsys,
        )
    finally:
        holder.rollback()
        holder.close()
    assert rc == 2, err
    assert err.startswith("ketamon: error: ") and "locked" in err
    assert "SELECT" not in err and "INSERT" not in err and "internal error" not in err


def test_no_password_hash_in_any_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database failure while adding a user prints the driver's line, never the SQL's
    parameters (the argon2 hash was printed before)."""
    from sqlalchemy.exc import IntegrityError

    from ketamon.storage.database import short_error, user_message

    exc = IntegrityError(
        "INSERT INTO app_user (password_hash) VALUES (?)",
        ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",),
        Exception("UNIQUE constraint failed: app_user.username"),
    )
    for text in (short_error(exc), user_message(exc)):
        assert "argon2" not in text and "INSERT" not in text
        assert "UNIQUE constraint failed" in text


# ---- files and accounts -------------------------------------------------------------------------


def test_data_folder_is_0700_and_database_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "user", "list"]) == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    db = data / "ketamon.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for extra in (data / "ketamon.sqlite3-wal", data / "ketamon.sqlite3-shm"):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("password", "ann"),
        ("12345678", "ann"),
        ("Password1", "ann"),
        ("annsmith", "annsmith"),
        ("annsmith1", "annsmith"),
        ("aaaaaaaaaa", "ann"),
        ("x" * 129, "ann"),
        ("good pass\x1b[2J", "ann"),
    ],
)
def test_weak_passwords_are_refused(password: str, username: str) -> None:
    with pytest.raises(UserError):
        check_password_rules(password, username)


def test_a_good_password_passes() -> None:
    check_password_rules("tulip-harbour-47", "ann")
    assert len([x for x in read_text("common_passwords.txt").splitlines() if x[:1] != "#"]) > 200


def test_control_characters_are_refused_in_names_and_escaped_on_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("Ann\nadmin      admin      Mallory", "Ann\x1b[31mRED", "Ann\u202eevil"):
        with pytest.raises(UserError, match="control characters"):
            check_name("full name", bad)
    assert printable("a\nb\x1b[0m") == "a\\nb\\x1b[0m"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ketamon",
            "--data-dir",
            str(tmp_path),
            "user",
            "add",
            "--username",
            "ann",
            "--role",
            "nurse",
            "--full-name",
            "Ann\nroot",
            "--password-stdin",
        ],
        input="tulip-harbour-47\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == 2 and "control characters" in proc.stderr
    assert proc.stderr.count("\n") == 1


# ---- thresholds ---------------------------------------------------------------------------------

BASE = read_text("thresholds.toml")


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("high = 160", "high = nan", "'high' must be a finite number"),
        ("high = 160", "high = inf", "'high' must be a finite number"),
        ("high = 160", "high = 900", "'high' must be within 0–300"),
        ("low = 90\nhigh = 160", "low = -5\nhigh = 160", "'low' must be within"),
        ("low = 90\npriority", "low = 90\nhigh = 250\npriority", "'high' must be within 0–100"),
        ("low = 90\nhigh = 160", "low = 160\nhigh = 160", "'low' (160) must be below 'high'"),
        ("low = 50\nhigh = 90", "low = 95\nhigh = 90", "must be below"),
        ("sys_above = 140", "sys_above = -140", "sys_above"),
        ("sys_delta = 40", "sys_delta = nan", "sys_delta"),
        ("hr_at_or_above = 110", "hr_at_or_above = inf", "hr_at_or_above"),
    ],
)
def test_bad_threshold_profiles_are_refused_naming_file_and_key(
    old: str, new: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    with pytest.raises(ThresholdError, match=r"clinic\.toml") as info:
        parse_profile(text, "clinic.toml")
    assert says in str(info.value)
    f = tmp_path / "clinic.toml"
    f.write_text(text)
    rc, out, err = run(["--data-dir", str(tmp_path), "thresholds", "check", str(f)], capsys)
    assert rc == 2 and "OK" not in out and str(f) in err and says in err
    # ... and a configuration naming it is refused before anything runs
    (tmp_path / "config.toml").write_text(f'thresholds_file = "{f}"\n')
    rc, _, err = run(["--data-dir", str(tmp_path), "thresholds", "show"], capsys)
    assert rc == 2 and says in err


def test_a_session_override_cannot_set_a_non_finite_limit() -> None:
    profile = parse_profile(BASE, "t")
    for bad in (math.nan, math.inf, -1.0, 900.0):
        with pytest.raises(ThresholdError):
            profile.with_limit("nibp_sys", 90.0, bad)


# ---- implausible values -------------------------------------------------------------------------


def _pipeline() -> tuple[ChairPipeline, list[Reading]]:
    from ketamon.config import Config
    from ketamon.services import load_profile

    stored: list[Reading] = []

    def no_monitor() -> tuple[object, object]:
        raise AssertionError("not connected in this test")

    p = ChairPipeline(
        "c1",
        MonitorSpec(make=no_monitor, description="none"),  # type: ignore[arg-type]
        load_profile(Config()),
        on_readings=stored.extend,
    )
    return p, stored


@pytest.mark.parametrize(
    "values",
    [
        {"nibp_sys": 900, "nibp_dia": 700, "nibp_mean": 766},
        {"nibp_sys": -50, "nibp_dia": 60, "nibp_mean": 70},
        {"hr": -120},
        {"hr": 999},
        {"spo2": 250},
        {"nibp_sys": 80, "nibp_dia": 120, "nibp_mean": 100},  # diastolic above systolic
        {"nibp_sys": 120, "nibp_dia": 120, "nibp_mean": 120},  # ... or equal
    ],
)
def test_implausible_values_are_stored_invalid_never_charted_or_flagged(
    values: dict[str, float],
) -> None:
    p, stored = _pipeline()
    readings = [make_reading(k, v, T0) for k, v in values.items()]
    p.inject(readings)
    assert len(stored) == len(readings)
    assert all(not r.valid and r.quality & Quality.INVALID for r in stored), stored
    # no threshold flag from them, only the artifact notice, which names the value
    keys = {a.key for a in p.active_alarms()}
    assert keys == {TECH_ARTIFACT}, keys
    notice = next(a for a in p.active_alarms() if a.key == TECH_ARTIFACT)
    assert "Artifact" in notice.message
    for k in values:
        s = p.buffers.series(k)
        assert s is not None and bool(s.invalid[-1]) and math.isnan(s.v[-1])  # never drawn
        assert k not in p.buffers.latest()
    # a plausible reading of the same parameters clears the notice
    p.inject(
        [
            make_reading(k, v, T0 + timedelta(seconds=30))
            for k, v in {
                "nibp_sys": 120,
                "nibp_dia": 80,
                "nibp_mean": 93,
                "hr": 70,
                "spo2": 97,
            }.items()
            if k in values
        ]
    )
    assert TECH_ARTIFACT not in {a.key for a in p.active_alarms()}


def test_plausible_values_pass_untouched() -> None:
    p, stored = _pipeline()
    ok = [
        make_reading("nibp_sys", 185, T0),
        make_reading("nibp_dia", 110, T0),
        make_reading("hr", 38, T0),
        make_reading("spo2", 72, T0),
    ]
    p.inject(ok)
    assert stored == ok
    assert TECH_ARTIFACT not in {a.key for a in p.active_alarms()}
    assert {a.key for a in p.active_alarms()} >= {"nibp_sys_high", "spo2_low"}


def test_plausibility_table_names_a_source_for_every_range() -> None:
    from ketamon.acquisition.pipeline import default_plausibility
    from ketamon.domain.plausibility import PlausibilityError, parse_plausibility

    table = default_plausibility()
    assert {"nibp_sys", "nibp_dia", "hr", "pr", "spo2", "rr"} <= set(table.ranges)
    assert all(r.source for r in table.ranges.values())
    with pytest.raises(PlausibilityError, match="finite"):
        parse_plausibility(
            read_text("plausibility.toml").replace("high = 300", "high = nan", 1), "p.toml"
        )


# ---- a failing --raw file -----------------------------------------------------------------------


def test_a_failing_raw_file_warns_flags_and_never_raises() -> None:
    why: list[str] = []
    cap = RawCapture(open("/dev/full", "wb", buffering=0), "/dev/full")  # noqa: SIM115
    cap.on_failure = why.append
    cap.write(b"x" * 100)  # ENOSPC, as on a full disk
    cap.flush()
    cap.write(b"more")  # nothing more is tried, nothing raised
    cap.close()
    assert len(why) == 1 and "/dev/full" in why[0]
    assert cap.failed is not None
