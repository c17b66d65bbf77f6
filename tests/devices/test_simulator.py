"""The simulator and the shared scenarios, through the same supervisor as a real monitor."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from devices.clock import ManualClock, ScaledClock
from devices.protocols.simulator import SimulatedLink, SimulatorProtocol
from devices.readings import Quality
from devices.scenarios import SCENARIOS, Link, get_scenario
from devices.supervisor import LinkState, Supervisor

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_bp_rise_scenario_peaks_about_40_min_after_dose_at_label_rule() -> None:
    s = get_scenario("bp_rise")
    base = s.cuff(0)
    peak = max((s.cuff(i) for i in range(40)), key=lambda c: c.sys)
    assert 35 <= (peak.t_s - s.dose_at_s) / 60 <= 50
    assert peak.sys - base.sys >= 40
    assert peak.dia - base.dia >= 25


def test_stable_scenario_stays_inside_default_limits() -> None:
    s = get_scenario("stable")
    for t in range(0, 3 * 3600, 17):
        v = s.vitals(t)
        assert 50 <= v.hr <= 120 and v.spo2 >= 90 and 5 <= v.rr <= 30
    for i in range(30):
        c = s.cuff(i)
        assert 90 <= c.sys <= 160 and 50 <= c.dia <= 90


def test_link_faults_are_scheduled() -> None:
    assert get_scenario("cable_pulled").link(65) is Link.PULLED
    assert get_scenario("silent").link(65) is Link.SILENT
    assert all(s.link(10) is Link.UP for s in SCENARIOS.values())


def test_simulator_emits_numerics_each_period_and_nibp_once_per_cuff_cycle() -> None:
    clock = ManualClock(T0)
    p = SimulatorProtocol(scenario="stable")
    got = []
    for _ in range(700):
        got += p.poll(clock.now())
        clock.advance(1.0)
    params = [r.parameter for r in got]
    assert params.count("hr") == 700
    s = get_scenario("stable")
    assert params.count("nibp_sys") == s.cuff_index_at(699) + 1
    assert all(r.quality & Quality.DEMO for r in got)
    first_sys = next(r for r in got if r.parameter == "nibp_sys")
    assert first_sys.value == s.cuff(0).sys
    assert first_sys.host_time == T0 + timedelta(seconds=s.first_nibp_s)


def test_supervisor_reports_cable_pulled_and_restored_for_the_simulator() -> None:
    clock = ScaledClock(120.0)  # the 15 s pull at 60 s lasts 0.125 s of wall time
    proto = SimulatorProtocol(scenario="cable_pulled")
    readings, events = [], []
    sup = Supervisor(
        SimulatedLink(proto, clock),
        proto,
        on_readings=readings.extend,
        on_status=events.append,
        clock=clock,
        backoff_s=(0.02, 0.05),
    )
    th = threading.Thread(target=sup.run)
    th.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = [e.state for e in events]
            if states.count(LinkState.STREAMING) >= 2:
                break
            time.sleep(0.05)
    finally:
        sup.stop()
        th.join(5)
    assert not th.is_alive()
    states = [e.state for e in events]
    assert states[:3] == [LinkState.CONNECTING, LinkState.NEGOTIATING, LinkState.STREAMING]
    lost = [e for e in events if e.state is LinkState.CONNECTING and "pulled" in e.reason]
    assert lost, [(e.state, e.reason) for e in events]
    assert states.count(LinkState.STREAMING) >= 2
    assert events[-1].state is LinkState.STOPPED
    assert readings


def test_supervisor_watchdog_renegotiates_when_simulator_goes_silent() -> None:
    clock = ScaledClock(60.0)
    proto = SimulatorProtocol(scenario="silent")
    proto.quiet_time_s = 0.2  # type: ignore[misc]
    events = []
    sup = Supervisor(
        SimulatedLink(proto, clock),
        proto,
        on_readings=lambda r: None,
        on_status=events.append,
        clock=clock,
    )
    th = threading.Thread(target=sup.run)
    th.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            e.state is LinkState.NEGOTIATING and "no data" in e.reason for e in events
        ):
            time.sleep(0.05)
    finally:
        sup.stop()
        th.join(5)
    assert any(e.state is LinkState.NEGOTIATING and "no data" in e.reason for e in events)


def test_simulator_pleth_at_125_hz_in_blocks() -> None:
    clock = ManualClock(T0)
    p = SimulatorProtocol(scenario="stable", pleth_hz=125.0)
    n = 0
    for _ in range(40):
        p.poll(clock.now())
        n += sum(len(w.samples) for w in p.take_waveforms())
        clock.advance(0.25)
    assert abs(n - 125 * 9.75) <= 2  # 39 intervals of 0.25 s
    assert p.take_waveforms() == []


def test_wave_buffer_keeps_the_last_seconds_in_order() -> None:
    from ketamon.acquisition.buffers import WaveBuffer

    b = WaveBuffer(seconds=1.0, rate_hz=10.0)
    b.extend([1, 2, 3])
    assert list(b.snapshot()) == [1, 2, 3]
    b.extend(range(4, 15))
    assert list(b.snapshot()) == list(range(5, 15))
    b.extend(range(100, 125))
    assert list(b.snapshot()) == list(range(115, 125))
