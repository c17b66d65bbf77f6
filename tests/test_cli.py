from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ketamon.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("cmd", [[], ["gui"], ["demo"], ["decode"], ["record"], ["emulate"]])
def test_help_everywhere(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: ketamon" in capsys.readouterr().out


def test_python_dash_m_behaves_like_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ketamon", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.startswith("ketamon ")


def test_decode_missing_file_is_a_clear_error_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["decode", "--protocol", "masimo", str(tmp_path / "nope.bin")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ketamon: error: cannot read") and "nope.bin" in err
    assert "Traceback" not in err


def test_bad_config_file_names_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        '[[chair]]\nname = "Chair 1"\nprotocol = "intellivue"\nport = "/dev/x"\nbaud = 1234\n'
    )
    rc = main(
        [
            "--data-dir",
            str(tmp_path),
            "record",
            "--protocol",
            "masimo",
            "--port",
            "/dev/null",
            "--seconds",
            "0.1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "config.toml: chair[0] (Chair 1): unsupported baud rate 1234" in err


def test_data_dir_before_subcommand_is_kept(tmp_path: Path) -> None:
    from ketamon.cli import build_parser

    args = build_parser().parse_args(["--data-dir", str(tmp_path), "demo"])
    assert args.data_dir == str(tmp_path)
    args = build_parser().parse_args(["demo", "--data-dir", str(tmp_path)])
    assert args.data_dir == str(tmp_path)


def test_thresholds_show_and_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    assert main(["thresholds", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {lim["id"] for lim in shown["limits"]} >= {"nibp_sys", "spo2_desat", "rr_low"}
    assert all(lim["source"] for lim in shown["limits"])
    bad = tmp_path / "site.toml"
    bad.write_text(
        ROOT.joinpath("resources", "thresholds.toml")
        .read_text()
        .replace("high = 160", "high = 60", 1)
    )
    assert main(["thresholds", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "site.toml: limit[0] (nibp_sys): 'low' (90) must be below 'high' (60)" in err
    good = tmp_path / "ok.toml"
    good.write_text(ROOT.joinpath("resources", "thresholds.toml").read_text())
    assert main(["thresholds", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_config_listen_is_for_hl7_only(tmp_path: Path) -> None:
    from ketamon.config import ConfigError, parse_config

    cfg = parse_config('[[chair]]\nname = "C"\nprotocol = "hl7"\nlisten = "0.0.0.0:6661"\n', "c")
    assert cfg.chairs[0].listen == ("0.0.0.0", 6661)
    with pytest.raises(ConfigError, match=r"chair\[0\] \(C\): 'listen' is only for the hl7"):
        parse_config('[[chair]]\nname = "C"\nprotocol = "masimo"\nlisten = "0.0.0.0:1"\n', "c")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_config('[[chair]]\nname = "C"\nprotocol = "hl7"\nlisten = "nope"\n', "c")


def test_demo_sets_aside_a_demo_database_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    from ketamon.cli import _set_aside_incompatible_demo_database
    from ketamon.paths import resolve_paths
    from ketamon.storage.database import make_engine

    paths = resolve_paths(tmp_path, demo=True).ensure()
    engine = make_engine(paths.sqlite_url())
    with engine.begin() as c:  # a database from before migrations existed
        c.execute(text("CREATE TABLE patient (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    _set_aside_incompatible_demo_database(paths)
    assert not paths.database_file.exists()
    assert list(paths.data_dir.glob("ketamon.sqlite3.set-aside-*"))
    assert "moved to" in capsys.readouterr().err
