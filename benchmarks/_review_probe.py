"""The review desk: open a finished session (its record folded, its readings loaded, its PMF
filled) and draw it, offscreen. A 3-hour session with HR, SpO2, RR at 1 Hz and NIBP every 5 min;
with ``--pleth``, also pulse rate and PI at 1 Hz and the pleth at 125 Hz.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(hours: float, pleth: bool = False) -> None:
    from PySide6.QtWidgets import QApplication

    from benchmarks._restore_probe import build_record
    from ketamon.app import build_window, make_station
    from ketamon.config import ChairConfig, Config
    from ketamon.paths import resolve_paths
    from ketamon.services import load_profile

    tmp = tempfile.mkdtemp()
    paths = resolve_paths(tmp + "/data").ensure()
    if pleth:  # the 8-hour case: 5 numerics at 1 Hz and the 125 Hz pleth
        sid, stored = build_record(paths.sqlite_url(), hours, five_numerics=True, pleth_hz=125.0)
    else:
        sid, stored = build_record(paths.sqlite_url(), hours)
    app = QApplication([])
    config = Config(chairs=(ChairConfig(name="Chair 9", protocol="simulator"),))
    station = make_station(paths, config, load_profile(config), paths.sqlite_url(), demo=False)
    station.sign_in("doctor", "demo")
    window = build_window(station, "bench")
    window.show()
    review = window.review
    assert review is not None
    window.tabs.setCurrentWidget(review)
    assert station.runner is not None
    station.runner.wait_idle()
    app.processEvents()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        review.open_session(sid).wait(30)
        assert review.chart is not None
        review.chart.repaint()
        times.append(time.perf_counter() - start)
    window.stop()
    window.close()
    station.shutdown()
    name = f"review_open_{hours:g}h" + ("_pleth" if pleth else "")
    view = review.view
    assert view is not None
    samples = stored + (0 if view.pleth is None else len(view.pleth[1]))
    print(f"{name}_session_drawn: {min(times) * 1000:.0f} ms (best of 3)")
    print(f"{name}_samples: {samples} samples")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0, "--pleth" in sys.argv)
