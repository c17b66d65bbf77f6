"""Shared fixtures: every test gets its own data and config folders; Qt tests are checked for
threads and timers left running (in the style of napari's dangling-thread guards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite's embedded databases are unencrypted (see _fresh_dirs); set here as well for the
# modules that copy os.environ for their child processes when they are imported.
os.environ.setdefault("KETAMON_DB_KEY_SOURCE", "none")


def _pty_problem() -> str | None:
    try:
        master, slave = os.openpty()
    except OSError as exc:
        return f"no pseudo-terminals on this machine (os.openpty: {exc.strerror})"
    os.close(master)
    os.close(slave)
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("pty") is None:
        return
    problem = _pty_problem()
    if problem is None:
        return
    if os.environ.get("KETAMON_REQUIRE_PTY") == "1":
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(autouse=True)
def _fresh_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every data/config lookup at a fresh folder; never touch the developer's real files."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "config").mkdir(parents=True)
    monkeypatch.setenv("KETAMON_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("KETAMON_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "xdg-state"))
    monkeypatch.delenv("KETAMON_DATABASE_URL", raising=False)
    # The suite's embedded databases are unencrypted (files it opens with plain sqlite3, and no
    # OS credential store on a test machine); tests/storage/test_encryption.py covers SQLCipher.
    monkeypatch.setenv("KETAMON_DB_KEY_SOURCE", "none")
    monkeypatch.delenv("KETAMON_DB_PASSPHRASE", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    yield home


# ---- Qt guards: no thread or timer may outlive its test ------------------------------------


@pytest.fixture(autouse=True)
def _no_dangling_qt(request: pytest.FixtureRequest) -> Iterator[None]:
    """For tests using qtbot: fail if a QThread is still running or a QTimer still active."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    import weakref

    from PySide6.QtCore import QThread, QTimer

    threads: weakref.WeakSet[QThread] = weakref.WeakSet()
    timers: weakref.WeakSet[QTimer] = weakref.WeakSet()
    orig_thread_start = QThread.start
    orig_timer_start = QTimer.start

    def thread_start(self: QThread, *args: object) -> None:
        threads.add(self)
        orig_thread_start(self, *args)  # type: ignore[arg-type]

    def timer_start(self: QTimer, *args: object) -> None:
        timers.add(self)
        orig_timer_start(self, *args)  # type: ignore[arg-type]

    QThread.start = thread_start  # type: ignore[method-assign]
    QTimer.start = timer_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        QThread.start = orig_thread_start  # type: ignore[method-assign]
        QTimer.start = orig_timer_start  # type: ignore[method-assign]
    running = []
    for t in list(threads):
        try:
            if t.isRunning():
                running.append(f"QThread {t.objectName() or t!r}")
        except RuntimeError:  # C++ object already deleted: fine
            pass
    for tm in list(timers):
        try:
            if tm.isActive():
                parent = tm.parent()
                running.append(f"QTimer every {tm.interval()} ms (parent {type(parent).__name__})")
        except RuntimeError:
            pass
    if running:
        pytest.fail("left running after the test: " + "; ".join(running))
