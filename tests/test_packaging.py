"""The wheel ships both packages and the top-level resources inside ketamon/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_packages_and_resources(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("ketamon-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ketamon/__init__.py",
        "devices/__init__.py",
        "devices/protocols/base.py",
        "ketamon/resources/thresholds.toml",
        "ketamon/resources/default_config.toml",
        "ketamon/resources/styles/dark.qss",
        # Alembic runs from the installed package: env, template and every revision.
        "ketamon/storage/migrations/env.py",
        "ketamon/storage/migrations/script.py.mako",
        "ketamon/storage/migrations/versions/v0001_initial.py",
    ):
        assert required in names, required
    assert not any(n.startswith("resources/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
