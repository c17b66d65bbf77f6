"""A restart in the middle of a long session: how long from "resume" until the session's state
is rebuilt from its record and its 2 h of history are drawn on the chart (offscreen)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _store_pleth(writer: Any, sid: int, t0: datetime, seconds: int, rate: float) -> None:
    """``seconds`` of a synthetic pleth, through the station's recorder in monitor-sized blocks
    of 0.1 s (joined into 10 s rows)."""
    import numpy as np

    from devices.readings import Waveform
    from ketamon.storage.waves import WaveformRecorder

    rec = WaveformRecorder(writer.submit, source="Chair 1")
    per = int(rate / 10)
    wave = np.sin(np.arange(int(seconds * rate)) * (2 * np.pi * 1.2 / rate)) * 40 + 50
    for k in range(0, len(wave), per):
        start = t0 + timedelta(seconds=k / rate)
        rec.add(sid, [Waveform("pleth", start, rate, tuple(wave[k : k + per].tolist()))])
    rec.flush()


def build_record(
    url: str, hours: float, *, five_numerics: bool = False, pleth_hz: float = 0.0
) -> tuple[int, int]:
    """A session started ``hours`` ago with 1 Hz HR/SpO2/RR (and pulse rate and perfusion index
    with ``five_numerics``), NIBP every 5 min, a MOAA/S every 15 min and a flag now and then;
    with ``pleth_hz``, the pleth stored as the station stores it. Returns (session id,
    readings stored)."""
    from devices.readings import make_reading
    from devices.scenarios import get_scenario
    from ketamon.config import Config
    from ketamon.core import commands as c
    from ketamon.core.ports import AuthFailed
    from ketamon.core.session import ChairCore
    from ketamon.domain.record import PatientInfo, Plan
    from ketamon.domain.roles import Actor, Role
    from ketamon.domain.session_rules import Treatment
    from ketamon.services import load_profile, open_database
    from ketamon.storage.repository import SqlSessionRepository
    from ketamon.storage.users import authenticate, ensure_demo_users
    from ketamon.storage.writer import DatabaseWriter

    engine = open_database(url)
    ensure_demo_users(engine)
    u = authenticate(engine, "nurse", "demo")
    nurse = Actor(u.id, u.username, u.full_name, Role.NURSE)

    class NoAuth:
        def verify(self, username: str, password: str) -> Actor:
            raise AuthFailed("not in this benchmark")

    profile = load_profile(Config())
    t0 = datetime.now(UTC) - timedelta(hours=hours, minutes=10)
    now = [t0]
    repo = SqlSessionRepository(engine, profile=profile)
    core = ChairCore("Chair 1", repo, NoAuth(), profile, lambda: now[0])
    patient = PatientInfo(None, "BENCH-1", "Bench", "Patient", weight_kg=70, rems_enrolled=True)
    core.execute(c.StartSession(patient, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True), nurse)
    core.execute(c.RecordScreening((122, 78), 70, "manual", True, True, rems_enrolled=True), nurse)
    now[0] += timedelta(minutes=9)
    core.execute(c.LogDevice("LOT-1"), nurse)
    now[0] += timedelta(minutes=5)
    core.execute(c.LogDevice("LOT-1"), nurse)
    assert core.state is not None
    sid = core.state.session_id
    writer = DatabaseWriter(engine).start()
    sc = get_scenario("bp_rise")
    n = int(hours * 3600)
    for s in range(n):
        when = t0 + timedelta(seconds=s)
        v = sc.vitals(s)
        rs = [make_reading("hr", v.hr, when), make_reading("spo2", v.spo2, when)]
        rs.append(make_reading("rr", v.rr, when))
        if five_numerics:
            rs += [make_reading("pr", v.hr, when), make_reading("pi", 2.5, when)]
        if s % 300 == 0:
            rs += [
                make_reading("nibp_sys", 120 + s / 600, when),
                make_reading("nibp_dia", 78, when),
            ]
        writer.submit_readings(sid, rs)
        if s % 900 == 0 and s > 900:
            now[0] = when
            core.execute(c.RecordMoaas(4 if s < 3600 else 5), nurse)
    if pleth_hz:
        _store_pleth(writer, sid, t0, n, pleth_hz)
    writer.wait_idle(300)
    stored = writer.stats.readings_committed
    writer.stop()
    engine.dispose()
    return sid, stored


def main(hours: float) -> None:
    from PySide6.QtWidgets import QApplication

    from ketamon.app import build_window, make_station
    from ketamon.config import ChairConfig, Config
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile

    tmp = tempfile.mkdtemp()
    paths = resolve_paths(tmp + "/data").ensure()
    sid, stored = build_record(paths.sqlite_url(), hours)
    app = QApplication([])
    config = Config(chairs=(ChairConfig(name="Chair 1", protocol="simulator", scenario="stable"),))
    station = make_station(paths, config, load_profile(config), paths.sqlite_url(), demo=False)
    station.sign_in("nurse", "demo")
    window = build_window(station, "bench")
    window.show()
    view = window.chair_views[0]
    model = station.models[0]
    app.processEvents()
    station_open = station.open_sessions()
    start = time.perf_counter()
    for p in station.resume([sid]):
        p.wait(30)
    window.tabs.setCurrentWidget(view)
    view.chart.redraw(force=True)
    view.chart.repaint()
    elapsed = time.perf_counter() - start
    x, _y = view.chart.curves["hr"].getData()
    drawn = 0 if x is None else len(x)
    ok = model.state is not None and drawn > 0
    window.stop()
    window.close()
    station.shutdown()
    if not ok:
        print(
            f"restore: failed (state {model.state is not None}, drawn {drawn}, "
            f"open {station_open})"
        )
        return
    print(f"restore_{hours:g}h_session_to_chart_drawn: {elapsed * 1000:.0f} ms")
    print(f"restore_{hours:g}h_readings_reloaded: {stored} readings")
    print(f"restore_{hours:g}h_entries_folded: {len(model.core.entries)} entries")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
