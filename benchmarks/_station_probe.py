"""16 chairs on one station, offscreen: CPU share, event-loop lag, and the latency from the
last byte of a breaching reading on a pty to the flag being raised and drawn.

A desaturation line goes onto the pty every 0.4 s (KETAMON_BENCH_INJECT_MS), is flagged, drawn,
acknowledged and recovered: 2.5 flags a second at one chair, far more than a clinic sees, so
that 100 s give over 200 latency samples while the lag is measured. The overview is on
screen (KETAMON_BENCH_SCREEN=chair shows chair 16 instead).

15 chairs run the simulator (numerics at 1 Hz, pleth at 125 Hz); chair 16 reads a Masimo
emulator on a real pty (numerics at 1 Hz; the Masimo ASCII output carries no waveform).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(seconds: float) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from devices.emulators.base import PtyServer
    from devices.emulators.masimo import MasimoEmulator
    from devices.scenarios import get_scenario
    from ketamon.app import build_window, make_station
    from ketamon.config import ChairConfig, Config
    from ketamon.domain.record import PatientInfo, Plan
    from ketamon.domain.session_rules import Treatment
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile

    app = QApplication([])
    tmp = tempfile.mkdtemp()
    link = Path(tmp) / "monitor"
    # The pty chair runs "stable" until we force a desaturation line ourselves.
    emulator = MasimoEmulator(get_scenario("stable"))
    server = PtyServer(emulator, link=link).start()
    chairs = [
        ChairConfig(name=f"Chair {i + 1}", protocol="simulator", scenario="stable")
        for i in range(15)
    ]
    chairs.append(ChairConfig(name="Chair 16", protocol="masimo", port=str(link), serial=None))
    paths = resolve_paths(tmp + "/data").ensure()
    config = Config(chairs=tuple(chairs))
    station = make_station(paths, config, load_profile(config), paths.sqlite_url(), demo=False)
    station.prepare_demo()  # demo users: the benchmark signs in the demo nurse
    window = build_window(station, "bench")
    station.start()
    window.show()
    # Sessions start on the command thread; wait for each (it stores the chair's readings).
    started = [
        m.start_session(
            PatientInfo(None, f"B-{i}", "Bench", f"P{i}"), Plan(Treatment.OTHER), confirmed=True
        )
        for i, m in enumerate(station.models)
    ]
    for p in started:
        p.wait(30.0)
        if not p.ok:
            raise SystemExit(f"station16: a session did not start: {p.reasons}")

    lags: list[float] = []
    last = [time.perf_counter()]

    started = time.perf_counter()

    def tick() -> None:
        now = time.perf_counter()
        if now - started > 3.0:  # after start-up
            lags.append(max(0.0, now - last[0] - 0.010))
        last[0] = now

    lag_timer = QTimer()
    lag_timer.timeout.connect(tick)
    lag_timer.start(10)

    latencies: list[float] = []
    view16 = window.chair_views[15]
    model16 = station.models[15]
    # On screen: the overview (16 cards, each with its trend and flashing flag strip, the
    # banner for another chair's high flag), the station's busiest screen; or chair 16 with
    # KETAMON_BENCH_SCREEN=chair.
    if os.environ.get("KETAMON_BENCH_SCREEN", "overview") == "chair":
        window.tabs.setCurrentWidget(view16)
    else:
        window.tabs.setCurrentIndex(0)

    from datetime import datetime

    from devices.emulators.masimo import format_line
    from devices.scenarios import Vitals

    state: dict[str, float] = {}

    def line(spo2: float) -> bytes:
        v = Vitals(hr=72, spo2=spo2, rr=14, pr=72)
        return (format_line("radical7", datetime.now(), v, pi=2.5) + "\r\n").encode()

    # Write a desaturation line (SpO2 78: high priority) straight onto the pty; when the flag
    # is raised the chair view refreshes its flag list, then we paint it and take the time.
    # Then the SpO2 recovers, the flag is acknowledged, and the next line goes out.
    def inject() -> None:
        pty = server._pty
        if pty is None or "sent" in state or "waiting" in state:
            return
        if any(a.key.startswith("spo2") for a in model16.active_alarms()):
            return  # the last one is still being acknowledged
        state["sent"] = time.perf_counter()
        pty.write(line(78))

    def on_raised(a: object) -> None:  # connected after the view's own slot: it ran already
        sent = state.get("sent")
        if sent is None or not any("SpO" in t for t in view16.alarm_panel.texts()):
            return
        # drawn: painted, not just queued for the next frame (the chair's flag list, or on
        # the overview the banner a high flag raises on every screen)
        if view16.isVisible():
            view16.alarm_panel.repaint()
        else:
            window.refresh_alert_banner()
            window.alert_banner.repaint()
        latencies.append(time.perf_counter() - sent)
        state.pop("sent")
        state["waiting"] = 1.0
        pty = server._pty
        if pty is not None:
            pty.write(line(98))
        model16.acknowledge().on_done(lambda _p: state.pop("waiting", None))

    model16.sig_alarm_raised.connect(on_raised)
    inj = QTimer()
    inj.timeout.connect(inject)
    inj.start(int(os.environ.get("KETAMON_BENCH_INJECT_MS", "400")))

    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    for t in (lag_timer, inj):
        t.stop()
    window.stop()
    window.close()
    station.shutdown()
    server.stop()
    lags.sort()
    lat = sorted(latencies)
    print(f"station16_cpu_share: {100 * cpu / wall:.1f} % of one core")
    print(f"station16_event_loop_lag_p50: {1000 * lags[len(lags) // 2]:.2f} ms")
    print(f"station16_event_loop_lag_p99: {1000 * lags[int(len(lags) * 0.99)]:.2f} ms")
    print(f"station16_event_loop_lag_max: {1000 * lags[-1]:.2f} ms")
    if lat:
        print(f"station16_pty_to_flag_drawn_p50: {1000 * lat[len(lat) // 2]:.1f} ms")
        print(f"station16_pty_to_flag_drawn_p99: {1000 * lat[int(len(lat) * 0.99)]:.1f} ms")
        print(f"station16_pty_to_flag_drawn_max: {1000 * lat[-1]:.1f} ms")
        print(f"station16_pty_to_flag_samples: {len(lat)} samples")
    print(
        f"station16_peak_rss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
