"""The soak (issue 11 §9): 16 simulated chairs on the app's station, headless, on SQLite
(encrypted, as a clinic keeps it), at an accelerated clock for many simulated hours; RSS growth
and the writer's commit latency.

``python benchmarks/_soak_probe.py [SIM_HOURS] [SPEED]`` (defaults 12 and 60: 12 simulated
hours in 12 real minutes). What runs is what a clinic PC runs minus the window: the app's
:class:`~ketamon.app.Station` (``make_station``: the one writer, the command thread, a
ChairAcquisition QThread and a ChairPresenter per chair) in an offscreen QApplication, each
chair's session started by the signed-in nurse (as at the chair), then left recording.

At SPEED x every chair sends SPEED times the numerics a real one does (4 numerics a simulated
second, NIBP every 5 simulated minutes). The pleth is kept at the clinic's real rate of samples
per wall-clock second (125 / SPEED Hz of simulated time), since 125 Hz at 60x would be a
load no clinic sees; the recorder still stores every block.

Reported: RSS at 1 simulated hour (after start-up and the first stores) and at the end, the
growth in between, and the growth over the last third (from 8 h, when the 8-hour trend buffers
are full); the writer's commit latency (the INSERT transaction) and exposure (submit to commit)
p50/p99; the readings committed, spooled and dropped. ``KETAMON_SOAK_TRACEMALLOC=1`` prints the
growth of Python's allocations between 1 h and the end, and the top lines (slower: use a lower
SPEED, e.g. 20, or the writer falls behind).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CHAIRS = 16


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else float("nan")


def main(sim_hours: float, speed: float) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from devices.clock import ScaledClock
    from devices.protocols.base import DeviceProtocol
    from devices.protocols.simulator import SimulatorProtocol
    from devices.transports import Transport
    from ketamon import app as app_module
    from ketamon.acquisition.pipeline import MonitorSpec
    from ketamon.config import ChairConfig, Config, database_url
    from ketamon.domain.record import PatientInfo, Plan
    from ketamon.domain.session_rules import Treatment
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile
    from ketamon.storage.writer import CommitInfo

    trace = os.environ.get("KETAMON_SOAK_TRACEMALLOC") == "1"
    qapp = QApplication([])
    tmp = tempfile.mkdtemp(prefix="ketamon-soak-")
    paths = resolve_paths(tmp + "/data").ensure()
    chairs = tuple(
        ChairConfig(name=f"Chair {i + 1}", protocol="simulator", scenario="stable")
        for i in range(CHAIRS)
    )
    config = Config(chairs=chairs)
    clock = ScaledClock(speed)

    original_spec = app_module.Station.monitor_spec

    def monitor_spec(self: Any, chair: ChairConfig) -> MonitorSpec:
        spec = original_spec(self, chair)

        def make() -> tuple[Transport, DeviceProtocol]:
            transport, protocol = spec.make()
            if isinstance(protocol, SimulatorProtocol):
                protocol.pleth_hz = 125.0 / speed  # the clinic's real samples per second
            return transport, protocol

        return MonitorSpec(make=make, description=spec.description)

    app_module.Station.monitor_spec = monitor_spec  # type: ignore[method-assign]
    # The embedded database as a clinic PC keeps it: encrypted (SQLCipher), the key from a
    # passphrase (KETAMON_SOAK_PLAIN=1: a plain SQLite file).
    plain = os.environ.get("KETAMON_SOAK_PLAIN") == "1"
    os.environ["KETAMON_DB_KEY_SOURCE"] = "none" if plain else "passphrase"
    if not os.environ.get("KETAMON_DB_PASSPHRASE"):
        os.environ["KETAMON_DB_PASSPHRASE"] = "soak benchmark passphrase"
    url = database_url(None, config, paths.sqlite_url())
    station = app_module.make_station(
        paths, config, load_profile(config), url, demo=False, clock=clock
    )
    station.prepare_demo()  # the demo nurse signs in and starts the sessions
    writer = station.writer
    assert writer is not None
    sim0 = clock.now()

    def sim_h() -> float:
        return (clock.now() - sim0).total_seconds() / 3600.0

    commit_s: list[float] = []
    exposure_s: list[float] = []
    insert = writer._insert

    def timed_insert(rows: list[dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        insert(rows)
        commit_s.append(time.perf_counter() - t0)

    exposure_at: list[float] = []  # simulated hours of each commit

    def on_commit(info: CommitInfo) -> None:
        exposure_s.append(info.exposure_s)
        exposure_at.append(sim_h())

    writer._insert = timed_insert  # type: ignore[method-assign]
    writer.on_commit = on_commit
    station.start()
    started = [
        m.start_session(
            PatientInfo(None, f"S-{i}", "Soak", f"P{i}"), Plan(Treatment.OTHER), confirmed=True
        )
        for i, m in enumerate(station.models)
    ]
    for p in started:
        p.wait(60.0)
        if not p.ok:
            raise SystemExit(f"soak: a session did not start: {p.reasons}")

    t_real0 = time.perf_counter()
    samples: list[tuple[float, float]] = []  # (simulated hours, RSS MB)
    marks: dict[str, Any] = {}

    def sample() -> None:
        h = sim_h()
        samples.append((h, _rss_mb()))
        if "1h" not in marks and h >= 1.0:
            marks["1h"] = _rss_mb()
            marks["commits_1h"] = len(commit_s)
            if trace:
                marks["snap_1h"] = tracemalloc.take_snapshot()
        if h >= sim_hours:
            qapp.quit()

    if trace:
        tracemalloc.start(1)  # one frame: cheap enough to keep up at a moderate speed
    timer = QTimer()
    timer.timeout.connect(sample)
    timer.start(max(200, int(1000 * 600 / speed)))  # every 10 simulated minutes
    cpu0 = time.process_time()
    qapp.exec()
    timer.stop()
    real_s = time.perf_counter() - t_real0
    cpu = time.process_time() - cpu0
    end_rss = _rss_mb()
    snap_end = tracemalloc.take_snapshot() if trace else None
    station.shutdown()
    unsaved = writer.unsaved()
    shutil.rmtree(tmp, ignore_errors=True)
    stats = writer.stats
    rss_8h = next((r for h, r in samples if h >= 8.0), float("nan"))
    print(f"soak_chairs: {CHAIRS} chairs")
    print(f"soak_database: {'plain SQLite' if plain else 'SQLCipher (passphrase key)'}")
    print(f"soak_simulated: {sim_h():.2f} h at {speed:g}x")
    print(f"soak_real_time: {real_s / 60:.1f} min")
    print(f"soak_cpu_share: {100 * cpu / real_s:.0f} % of one core")
    print(f"soak_rss_at_1h: {marks.get('1h', float('nan')):.1f} MB")
    print(f"soak_rss_end: {end_rss:.1f} MB")
    print(f"soak_rss_growth: {end_rss - marks.get('1h', float('nan')):.1f} MB (1 h to end)")
    print(f"soak_rss_growth_after_8h: {end_rss - rss_8h:.1f} MB (trend buffers full)")
    print(f"soak_writer_commit_p50: {1000 * _pct(commit_s, 0.5):.1f} ms")
    print(f"soak_writer_commit_p99: {1000 * _pct(commit_s, 0.99):.1f} ms")
    print(f"soak_writer_commit_max: {1000 * max(commit_s, default=float('nan')):.1f} ms")
    print(f"soak_writer_exposure_p50: {1000 * _pct(exposure_s, 0.5):.1f} ms")
    print(f"soak_writer_exposure_p99: {1000 * _pct(exposure_s, 0.99):.1f} ms")
    late = [e for e, h in zip(exposure_s, exposure_at, strict=True) if h >= 1.0]
    print(f"soak_writer_exposure_p99_after_1h: {1000 * _pct(late, 0.99):.1f} ms")
    slow = [h for e, h in zip(exposure_s, exposure_at, strict=True) if e > 1.0]
    print(f"soak_writer_exposures_over_1s: {len(slow)} commits")
    if slow:
        hours = sorted({round(h, 1) for h in slow})
        print("# exposures over 1 s at simulated hours: " + " ".join(f"{h:g}" for h in hours[:40]))
    print(f"soak_writer_commits: {stats.commits} commits")
    print(f"soak_readings_committed: {stats.readings_committed} readings")
    print(
        f"soak_readings_lost: {stats.readings_dropped} dropped, {stats.readings_spooled} spooled,"
        f" {unsaved} unsaved after the stop"
    )
    print("soak_rss_series: " + " ".join(f"{h:.1f}h={r:.0f}" for h, r in samples[::6]))
    if trace and snap_end is not None and "snap_1h" in marks:
        diff = snap_end.compare_to(marks["snap_1h"], "lineno")
        total = sum(d.size_diff for d in diff)
        print(f"# tracemalloc: Python allocations {total / 1e6:+.2f} MB from 1 h to the end")
        for stat in diff[:12]:
            print(f"# {stat.size_diff / 1e6:+.3f} MB {stat.count_diff:+d} blocks {stat.traceback}")


if __name__ == "__main__":
    main(
        float(sys.argv[1]) if len(sys.argv) > 1 else 12.0,
        float(sys.argv[2]) if len(sys.argv) > 2 else 60.0,
    )
