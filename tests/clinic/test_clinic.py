"""Two stations in two processes and a central view on one PostgreSQL (issue 14)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from ketamon.clinic.feed import CentralFeed
from ketamon.domain.thresholds import Priority
from tests.clinic.conftest import StationProcess, wait_for


def _chairs(feed: CentralFeed) -> dict[str, object]:
    return {c.chair: c for c in feed.snapshot.chairs}


def test_two_stations_a_flag_centrally_and_a_killed_station_offline(
    pg_url: str, stations: Callable[..., StationProcess]
) -> None:
    # Station A's HR limit is below the simulated HR: its chairs flag at once.
    a = stations(pg_url, "A", [("Chair 1", "stable"), ("Chair 2", "stable")], hr_high=60)
    b = stations(pg_url, "B", [("Chair 3", "stable")])
    feed = CentralFeed(pg_url, poll_s=0.5).start()
    try:
        try:
            wait_for(
                lambda: {"Chair 1", "Chair 2", "Chair 3"} <= set(_chairs(feed)), 60, "3 chairs"
            )
        except AssertionError as exc:  # say why: the stations' own words and the feed's state
            raise AssertionError(
                f"{exc}\nA: {a.output()[-1500:]}\nB: {b.output()[-1500:]}\n"
                f"feed: {feed.snapshot.connected=} {feed.snapshot.error=}"
            ) from None
        snap = feed.snapshot
        assert {c.station for c in snap.chairs} == {"A", "B"}
        assert {s.name for s in snap.stations if not s.offline} == {"A", "B"}
        # the flag raised at station A shows centrally, within 2 s of its commit
        wait_for(
            lambda: any(
                c.worst is not None
                and c.worst.priority is Priority.MEDIUM
                and "HR" in c.worst.text
                for c in feed.snapshot.chairs
                if c.station == "A"
            ),
            20,
            "HR flag at station A's chairs",
        )
        engine = create_engine(pg_url)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, extract(epoch from server_time) FROM alarm_event "
                    "WHERE key LIKE 'hr%' AND action = 'raised' ORDER BY id"
                )
            ).all()
        engine.dispose()
        assert rows, "the flag is in alarm_event"
        shown = dict(feed.flag_published)
        # (how fast: `python benchmarks/run.py clinic`, flag → central p50/p99; not timed here)
        assert any(aid in shown for aid, _ in rows), "published flags were heard by LISTEN"
        # vitals and the trend arrive for B's chair (no flag there)
        chair3 = _chairs(feed)["Chair 3"]
        wait_for(lambda: _chairs(feed)["Chair 3"].vitals[1].text != "--", 10, "HR at chair 3")
        assert chair3.worst is None or chair3.worst.technical
        wait_for(lambda: _chairs(feed)["Chair 1"].next_due.startswith("Pre-dose"), 5, "next due")
        # SIGKILL: station B offline within 10 s (+ the feed's poll)
        b.kill()
        wait_for(  # the 10 s rule itself: test_a_station_is_offline_after_10_s_of_silence
            lambda: any(s.name == "B" and s.offline for s in feed.snapshot.stations),
            40,
            "station B offline",
        )
        c3 = _chairs(feed)["Chair 3"]
        assert c3.station_offline and c3.worst is not None and "offline" in c3.worst.text
        assert not any(s.name == "A" and s.offline for s in feed.snapshot.stations)
        assert a.terminate() == 0, a.output()
        assert "stopped" in a.output()
    finally:
        feed.stop()


def test_a_station_is_offline_after_10_s_of_silence() -> None:
    from ketamon.clinic.feed import StationView

    def view(age: float, state: str = "running") -> StationView:
        return StationView(1, "B", "host", state, age, 0.0, 0)

    assert not view(9.9).offline and view(10.1).offline
    assert not view(60.0, "stopped").offline  # a deliberate stop is not a failure
    assert "offline" in view(12.0).flags()[0].text
    assert view(12.0).flags()[0].technical


RESTART = shutil.which("pg_ctlcluster")


@pytest.mark.skipif(
    RESTART is None or os.environ.get("KETAMON_TEST_PG_RESTART") != "1",
    reason="server restart test: needs pg_ctlcluster and KETAMON_TEST_PG_RESTART=1",
)
def test_server_restart_mid_recording_loses_nothing_and_central_reconnects(
    pg_url: str, stations: Callable[..., StationProcess]
) -> None:
    a = stations(pg_url, "R", [("Chair 9", "stable")])
    feed = CentralFeed(pg_url, poll_s=0.5).start()
    try:
        wait_for(lambda: "Chair 9" in _chairs(feed), 30, "chair 9 centrally")
        time.sleep(2)
        cluster = os.environ.get("KETAMON_TEST_PG_CLUSTER", "15 main").split()
        subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, timeout=60)
        wait_for(lambda: not feed.snapshot.connected or feed.reconnects > 0, 15, "a lost link")
        wait_for(lambda: feed.snapshot.connected and feed.reconnects > 0, 30, "reconnected")
        time.sleep(4)
        assert a.terminate() == 0, a.output()
    finally:
        feed.stop()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        dup = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT session_id, parameter, host_time, source "
                "FROM vital_reading GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
            )
        ).scalar()
        n, first, last = conn.execute(
            text(
                "SELECT count(*), min(host_time), max(host_time) FROM vital_reading "
                "WHERE parameter = 'hr'"
            )
        ).one()
        # the simulator sends HR once a second: no gap longer than a few seconds
        gaps = conn.execute(
            text(
                "SELECT max(d) FROM (SELECT extract(epoch FROM host_time - lag(host_time) "
                "OVER (ORDER BY host_time)) AS d FROM vital_reading WHERE parameter = 'hr') g"
            )
        ).scalar()
    engine.dispose()
    assert dup == 0
    assert n > 5 and gaps is not None and float(gaps) < 3.0, (n, first, last, gaps)
