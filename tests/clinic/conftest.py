"""Clinic tests: real PostgreSQL (``KETAMON_TEST_POSTGRES_URL``), a fresh database each, stations
as real ``ketamon station`` processes, the central feed in this process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ketamon.services import open_database
from tests.storage.conftest import PG_ENV, PG_SKIP

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = (ROOT / "resources" / "thresholds.toml").read_text(encoding="utf-8")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database (as tests/storage's), its admin connection checked before the drop:
    a test here may have restarted the server."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP)
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"ketamon_c_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        url.set(database="postgres"), isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        db = url.set(database=name).render_as_string(hide_password=False)
        try:
            open_database(db).dispose()  # migrated once, before the stations race to it
            yield db
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def write_config(folder: Path, chairs: list[tuple[str, str]], *, hr_high: int = 120) -> Path:
    """A station configuration with simulated chairs; ``hr_high`` below the simulated HR makes
    a flag at once."""
    folder.mkdir(parents=True, exist_ok=True)
    tight = folder / "thresholds.toml"
    tight.write_text(
        THRESHOLDS.replace("low = 50\nhigh = 120\n", f"low = 30\nhigh = {hr_high}\n", 1)
    )
    lines = [f'thresholds_file = "{tight}"']
    for name, scenario in chairs:
        lines += [
            "[[chair]]",
            f'name = "{name}"',
            'protocol = "simulator"',
            f'scenario = "{scenario}"',
        ]
    path = folder / "station.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class StationProcess:
    def __init__(self, url: str, name: str, config: Path, data_dir: Path) -> None:
        self.log = data_dir / f"{name}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("KETAMON_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ketamon",
                "station",
                "--config",
                str(config),
                "--name",
                name,
                "--db",
                url,
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env=env,
            cwd=str(ROOT),
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout)
        self._log_file.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()


@pytest.fixture
def stations(tmp_path: Path) -> Iterator[Callable[..., StationProcess]]:
    started: list[StationProcess] = []

    def start(url: str, name: str, chairs: list[tuple[str, str]], **kw: int) -> StationProcess:
        cfg = write_config(tmp_path / name, chairs, **kw)
        p = StationProcess(url, name, cfg, tmp_path / name / "data")
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
