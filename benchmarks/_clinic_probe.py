"""64 chairs on 4 headless stations into one PostgreSQL, and a central view (issue 14 §7).

Run by ``benchmarks/run.py clinic``; prints ``clinic_*: value unit`` lines. Needs
``KETAMON_TEST_POSTGRES_URL`` (a role that may CREATE DATABASE): a fresh database is made on that
server and dropped afterwards, so nothing else on the server is touched.

* Four ``ketamon station`` processes, 16 simulated chairs each (numerics at 1 Hz: HR, PR, SpO₂,
  RR every second, NIBP every 5 min), connect to the server through a TCP proxy this probe runs
  in a subprocess (``_clinic_probe.py proxy``), so an outage can be made without stopping a
  server other people use.
* Each station's HR high limit is 72, the simulated patients' baseline: the HR jitters across it
  and every chair raises and clears a medium flag every ~20-45 s (about 2 raises a second in the
  clinic). A :class:`CentralFeed` (direct to the server) and a :class:`CentralWidget` offscreen,
  here, take the time each raised flag is drawn on its card (the card repainted); the latency is
  from the flag's station time (``alarm_event.time``: when the station evaluated the breaching
  reading; one machine, one clock) to that paint.
* Steady state, ``STEADY_S`` (90 s): rows/s committed (``vital_reading`` count), CPU of the
  server's processes from /proc (the backends serving this database, from
  ``pg_stat_activity``; and every postgres process, which includes whoever else uses the
  server), station CPU and RSS.
* Outage, ``OUTAGE_S`` (60 s): the proxy drops every connection and refuses new ones; the
  stations hold readings in memory, then (past 30 s) in their durable spool. When the proxy is
  back, the drain: the time until every reading taken before the restore is in the database,
  and its rate.
  Then no reading may be missing or duplicated.
* Station RSS per chair: a station's RSS / 16, and the marginal cost of a chair against a
  1-chair station (a fifth station, on a second fresh database).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STATIONS = 4
CHAIRS_PER_STATION = 16
STEADY_S = float(os.environ.get("KETAMON_BENCH_CLINIC_STEADY_S", "90"))
OUTAGE_S = float(os.environ.get("KETAMON_BENCH_CLINIC_OUTAGE_S", "60"))
HR_HIGH = 72


# ---- the TCP proxy (its own process) -------------------------------------------------------
def proxy_main(listen_port: int, host: str, port: int) -> None:
    """Forward 127.0.0.1:listen_port to host:port. SIGUSR1 cuts every connection and stops
    listening (new connections are refused); SIGUSR2 listens again."""
    sel = selectors.DefaultSelector()
    pairs: dict[socket.socket, socket.socket] = {}
    state = {"up": True, "changed": False}
    listener: socket.socket | None = None

    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", listen_port))
        s.listen(256)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        return s

    def close(s: socket.socket) -> None:
        other = pairs.pop(s, None)
        for x in (s, other):
            if x is None:
                continue
            pairs.pop(x, None)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(x)
            x.close()

    def on_signal(signum: int, frame: object) -> None:
        state["up"] = signum == signal.SIGUSR2
        state["changed"] = True

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = listen()
    print("proxy ready", flush=True)
    while True:
        if state["changed"]:
            state["changed"] = False
            if not state["up"] and listener is not None:
                sel.unregister(listener)
                listener.close()
                listener = None
                for s in list(pairs):
                    close(s)
            elif state["up"] and listener is None:
                listener = listen()
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s is listener:
                try:
                    client, _addr = s.accept()
                except BlockingIOError:
                    continue
                try:
                    upstream = socket.create_connection((host, port), timeout=5)
                except OSError:
                    client.close()
                    continue
                for x in (client, upstream):
                    x.setblocking(False)
                    x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(x, selectors.EVENT_READ)
                pairs[client], pairs[upstream] = upstream, client
                continue
            if s not in pairs:
                continue
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                close(s)
                continue
            try:
                pairs[s].setblocking(True)
                pairs[s].sendall(data)
                pairs[s].setblocking(False)
            except OSError:
                close(s)


# ---- helpers ------------------------------------------------------------------------------
def _cpu_s(pid: int) -> float | None:
    """utime + stime of a process, in seconds (None: it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _postgres_pids() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            out.append(int(p.name))
    return out


class CpuMeter:
    """CPU seconds of a changing set of processes: each pid from when it was first seen to
    when it was last seen."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            cpu = _cpu_s(pid)
            if cpu is None:
                continue
            self.first.setdefault(pid, cpu)
            self.last[pid] = cpu

    def total(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def _write_config(folder: Path, name: str, chairs: int) -> Path:
    base = (ROOT / "resources" / "thresholds.toml").read_text(encoding="utf-8")
    tight = base.replace("low = 50\nhigh = 120\n", f"low = 30\nhigh = {HR_HIGH}\n", 1)
    assert tight != base, "the HR limit of resources/thresholds.toml moved"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thresholds.toml").write_text(tight)
    lines = [f'thresholds_file = "{folder / "thresholds.toml"}"']
    for i in range(chairs):
        lines += [
            "[[chair]]",
            f'name = "{name} chair {i + 1}"',
            'protocol = "simulator"',
            'scenario = "stable"',
        ]
    path = folder / "station.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start_station(url: str, name: str, chairs: int, tmp: Path) -> subprocess.Popen[bytes]:
    folder = tmp / name
    cfg = _write_config(folder, name, chairs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KETAMON_DATABASE_URL", None)
    log = (folder / "station.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ketamon",
            "station",
            "--config",
            str(cfg),
            "--name",
            name,
            "--db",
            url,
            "--data-dir",
            str(folder / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        cwd=str(ROOT),
    )


def main() -> None:
    from PySide6.QtWidgets import QApplication
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ketamon.clinic.feed import CentralFeed, ClinicSnapshot
    from ketamon.config import Config
    from ketamon.services import load_profile, open_database
    from ketamon.ui.central import CentralWidget

    base = os.environ.get("KETAMON_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("clinic: KETAMON_TEST_POSTGRES_URL is not set")
    server = make_url(base).set(drivername="postgresql+psycopg")
    names = [f"ketamon_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        for n in names:
            c.execute(text(f'CREATE DATABASE "{n}"'))
    direct = server.set(database=names[0]).render_as_string(hide_password=False)
    single = server.set(database=names[1]).render_as_string(hide_password=False)
    port = _free_port()
    via_proxy = server.set(database=names[0], host="127.0.0.1", port=port).render_as_string(
        hide_password=False
    )
    procs: list[subprocess.Popen[bytes]] = []
    procs_all: list[subprocess.Popen[bytes]] = []
    proxy: subprocess.Popen[str] | None = None
    feed: CentralFeed | None = None
    tmp = Path(tempfile.mkdtemp(prefix="ketamon-clinic-"))
    try:
        for url in (direct, single):
            open_database(url).dispose()  # migrated once, before the stations race to it
        proxy = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "proxy",
                str(port),
                server.host or "127.0.0.1",
                str(server.port or 5432),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proxy.stdout is not None
        if proxy.stdout.readline().strip() != "proxy ready":
            raise SystemExit("clinic: the proxy did not start")
        station_names = [f"S{k + 1}" for k in range(STATIONS)]
        procs = [_start_station(via_proxy, n, CHAIRS_PER_STATION, tmp) for n in station_names]
        one = _start_station(single, "S1chair", 1, tmp)
        procs_all = [*procs, one]

        engine = create_engine(direct, pool_pre_ping=True)

        def q(sql: str, **kw: Any) -> Any:
            with engine.connect() as conn:
                return conn.execute(text(sql), kw).scalar()

        # The central view, offscreen, in this process.
        app = QApplication.instance() or QApplication([])
        drawn_versions: list[tuple[int, float]] = []  # (feed version drawn, wall time painted)
        published: dict[int, int] = {}  # alarm_event id -> first feed version showing it

        class TimedFeed(CentralFeed):
            def _publish(self, snap: ClinicSnapshot) -> None:
                ids = list(self._pending_alarm_ids)
                super()._publish(snap)
                for aid in ids:
                    published.setdefault(aid, self.version)

        feed = TimedFeed(direct).start()
        widget = CentralWidget(feed, load_profile(Config()))
        widget.resize(1920, 1080)
        shown_worst: dict[int, str] = {}
        original_refresh = widget.refresh

        def refresh() -> None:
            version = feed.version if feed is not None else 0
            original_refresh()
            for sid, card in widget.cards.items():
                w = card.view.worst
                text_ = "" if w is None else w.text
                if shown_worst.get(sid) != text_:
                    shown_worst[sid] = text_
                    card.repaint()  # drawn, not just queued for the next frame
            drawn_versions.append((version, time.time()))

        widget.refresh = refresh  # type: ignore[method-assign]
        widget.show()

        def pump(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                app.processEvents()
                time.sleep(0.005)

        # Warm-up: every chair seen centrally, with HR.
        t_start = time.monotonic()
        want = STATIONS * CHAIRS_PER_STATION
        while time.monotonic() - t_start < 180:
            pump(0.5)
            snap = feed.snapshot
            ready = [c for c in snap.chairs if c.vitals and c.vitals[1].text != "--"]
            if len(ready) >= want:
                break
        else:
            raise SystemExit(f"clinic: only {len(ready)} of {want} chairs live after 180 s")
        warmup = time.monotonic() - t_start
        pump(10.0)

        # ---- steady state --------------------------------------------------------------
        mine = CpuMeter()
        every = CpuMeter()
        stations_cpu = CpuMeter()

        def backends() -> list[int]:
            with engine.connect() as conn:
                return [
                    int(r[0])
                    for r in conn.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = :d "
                            "AND pid <> pg_backend_pid()"
                        ),
                        {"d": names[0]},
                    )
                ]

        def sample() -> None:
            mine.sample(backends())
            every.sample(_postgres_pids())
            stations_cpu.sample([p.pid for p in procs])

        rss_one = _rss_mb(one.pid)
        one.terminate()
        sample()
        n0 = q("SELECT count(*) FROM vital_reading")
        t0, w0 = time.monotonic(), time.time()
        next_sample = t0
        while time.monotonic() - t0 < STEADY_S:
            pump(0.2)
            if time.monotonic() >= next_sample:
                sample()
                next_sample += 2.0
        sample()
        n1 = q("SELECT count(*) FROM vital_reading")
        t1, w1 = time.monotonic(), time.time()
        dt = t1 - t0
        rss = [_rss_mb(p.pid) for p in procs]
        # latencies of the flags raised in the window
        with engine.connect() as conn:
            raised = conn.execute(
                text(
                    "SELECT a.id, extract(epoch FROM a.time), extract(epoch FROM a.server_time) "
                    "FROM alarm_event a WHERE a.action = 'raised' AND a.key = 'hr_high' "
                    "AND a.time >= to_timestamp(:a) AND a.time <= to_timestamp(:b) ORDER BY a.id"
                ),
                {"a": w0, "b": w1 - 5.0},
            ).all()
        lat_drawn, lat_commit = [], []
        missed = 0
        for aid, at, committed in raised:
            v = published.get(int(aid))
            drawn = next((t for ver, t in drawn_versions if v is not None and ver >= v), None)
            if drawn is None:
                missed += 1
                continue
            lat_drawn.append(drawn - float(at))
            lat_commit.append(float(committed) - float(at))

        # ---- outage --------------------------------------------------------------------
        dup_sql = (
            "SELECT count(*) FROM (SELECT 1 FROM vital_reading GROUP BY session_id, parameter,"
            " host_time, source HAVING count(*) > 1) d"
        )
        proxy.send_signal(signal.SIGUSR1)
        w_cut = time.time()
        pump(OUTAGE_S)
        proxy.send_signal(signal.SIGUSR2)
        w_back, t_back = time.time(), time.monotonic()
        before_sql = "SELECT count(*) FROM vital_reading WHERE host_time < to_timestamp(:w)"
        at_restore = q(before_sql, w=w_back)
        series: list[tuple[float, int]] = []
        first_new: float | None = None
        while time.monotonic() - t_back < 120:
            pump(0.25)
            n = q(before_sql, w=w_back)
            series.append((time.monotonic() - t_back, n))
            if first_new is None and n > at_restore:
                first_new = time.monotonic() - t_back
            spooled = q("SELECT coalesce(sum(spooled), 0) FROM station")
            stable = len(series) > 20 and series[-20][1] == n
            if stable and spooled == 0 and time.monotonic() - t_back > 15:
                break
        final = series[-1][1]
        drained_at = next(t for t, n in series if n == final)
        drain_rows = final - at_restore
        pump(3.0)
        # Every reading from the cut to the restore is there, once: one HR per second per
        # chair (the simulator sends one a second; a gap over 2.5 s is a loss).
        with engine.connect() as conn:
            gaps = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT extract(epoch FROM host_time - lag(host_time)"
                    " OVER (PARTITION BY session_id ORDER BY host_time)) AS d FROM vital_reading"
                    " WHERE parameter = 'hr' AND host_time > to_timestamp(:a) - interval '5 s'"
                    " AND host_time < to_timestamp(:b) + interval '5 s') g WHERE d > 2.5"
                ),
                {"a": w_cut, "b": w_back},
            ).scalar()
            outage_hr = conn.execute(
                text(
                    "SELECT count(*) FROM vital_reading WHERE parameter = 'hr' AND "
                    "host_time >= to_timestamp(:a) AND host_time < to_timestamp(:b)"
                ),
                {"a": w_cut, "b": w_back},
            ).scalar()
        dups = q(dup_sql)

        # ---- stop ----------------------------------------------------------------------
        for p in procs:
            p.terminate()
        codes = [p.wait(60) for p in procs]
        one.wait(30)
        widget.stop()
        widget.close()
        feed.stop()
        feed = None
        engine.dispose()

        print(f"clinic_chairs: {want} chairs on {STATIONS} stations")
        print(f"clinic_warmup: {warmup:.1f} s (start to every chair live centrally)")
        print(f"clinic_ingest_rate: {(n1 - n0) / dt:.1f} rows/s (over {dt:.0f} s)")
        print(f"clinic_server_cpu_share: {100 * mine.total() / dt:.1f} % of one core")
        print(
            f"clinic_server_cpu_share_all_postgres: {100 * every.total() / dt:.1f} % of one core"
            " (includes other users of the server)"
        )
        print(
            f"clinic_station_cpu_share: {100 * stations_cpu.total() / dt / STATIONS:.1f}"
            " % of one core per station"
        )
        if lat_drawn:
            print(f"clinic_flag_drawn_p50: {1000 * _pct(lat_drawn, 0.5):.0f} ms")
            print(f"clinic_flag_drawn_p99: {1000 * _pct(lat_drawn, 0.99):.0f} ms")
            print(f"clinic_flag_drawn_max: {1000 * max(lat_drawn):.0f} ms")
            print(f"clinic_flag_commit_p50: {1000 * _pct(lat_commit, 0.5):.0f} ms")
            print(f"clinic_flag_samples: {len(lat_drawn)} flags ({missed} not seen drawn)")
        else:
            print(f"clinic_flag_drawn: failed (no flag drawn; {missed} raised)")
        print(f"clinic_outage: {OUTAGE_S:.0f} s (TCP proxy cut)")
        print(
            "clinic_reconnect_first_row: "
            f"{first_new if first_new is not None else float('nan'):.1f} s"
        )
        print(f"clinic_drain_rows: {drain_rows} rows")
        print(f"clinic_drain_time: {drained_at:.1f} s")
        rate = drain_rows / drained_at if drained_at > 0 else float("nan")
        print(f"clinic_drain_rate: {rate:.0f} rows/s")
        print(f"clinic_outage_hr_rows: {outage_hr} rows (expect ~{want * OUTAGE_S:.0f})")
        print(f"clinic_outage_gaps_over_2_5s: {gaps} gaps")
        print(f"clinic_duplicate_readings: {dups} rows")
        print(f"clinic_station_rss: {statistics.mean(rss):.0f} MB (mean of {STATIONS})")
        print(f"clinic_station_rss_per_chair: {statistics.mean(rss) / CHAIRS_PER_STATION:.1f} MB")
        marginal = (statistics.mean(rss) - rss_one) / (CHAIRS_PER_STATION - 1)
        print(f"clinic_station_rss_1_chair: {rss_one:.0f} MB")
        print(f"clinic_station_rss_marginal_per_chair: {marginal:.2f} MB")
        print(f"clinic_station_exit_codes: {' '.join(str(c) for c in codes)}")
        rcs = [p.returncode for p in procs]
        if any(rcs):
            for n in station_names:
                sys.stderr.write((tmp / n / "station.log").read_text(errors="replace")[-2000:])
    finally:
        if feed is not None:
            feed.stop()
        for p in procs_all:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        with admin.connect() as c:
            for n in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        proxy_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main()
