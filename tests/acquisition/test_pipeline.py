"""The Qt-free chair pipeline, run on real parts: the simulator on its simulated cable, and a
monitor's recorded byte stream replayed through its protocol decoder. No QApplication."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.clock import Clock, ManualClock, ScaledClock
from devices.loopback import run_loopback
from devices.protocols import protocol_class
from devices.protocols.base import DeviceProtocol
from devices.protocols.simulator import SimulatedLink, SimulatorProtocol
from devices.readings import Quality, Reading, make_reading
from devices.scenarios import get_scenario
from devices.supervisor import LinkState, StatusEvent
from devices.transports import ReplayTransport, Transport
from ketamon.acquisition.pipeline import ChairPipeline, MonitorSpec
from ketamon.config import Config
from ketamon.domain.alarms import AlarmAction, AlarmEvent
from ketamon.domain.technical import TECH_CLOCK, TECH_LINK, TECH_NIBP, TECH_SPO2, TECH_STORAGE
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.services import load_profile


@pytest.fixture(scope="module")
def profile() -> ThresholdProfile:
    return load_profile(Config())  # the shipped thresholds, as the app and record load them


class Recorder:
    """The pipeline's three callbacks, kept for the test (called from the run thread)."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.alarms: list[AlarmEvent] = []
        self.links: list[StatusEvent] = []
        self._lock = threading.Lock()

    def on_readings(self, readings: Sequence[Reading]) -> None:
        with self._lock:
            self.readings.extend(readings)

    def on_alarm(self, e: AlarmEvent) -> None:
        with self._lock:
            self.alarms.append(e)

    def on_link(self, e: StatusEvent) -> None:
        with self._lock:
            self.links.append(e)

    def events(self, key_prefix: str) -> list[tuple[AlarmAction, Priority]]:
        with self._lock:
            return [(e.action, e.priority) for e in self.alarms if e.key.startswith(key_prefix)]

    def states(self) -> list[LinkState]:
        with self._lock:
            return [e.state for e in self.links]


def simulator(scenario: str, clock: Clock, **kw: object) -> MonitorSpec:
    def make() -> tuple[Transport, DeviceProtocol]:
        proto = SimulatorProtocol(source="sim", scenario=scenario, **kw)  # type: ignore[arg-type]
        return SimulatedLink(proto, clock), proto

    return MonitorSpec(make=make, description=f"simulator ({scenario})")


def pipeline(
    monitor: MonitorSpec, profile: ThresholdProfile, rec: Recorder, **kw: object
) -> ChairPipeline:
    return ChairPipeline(
        "chair 1",
        monitor,
        profile,
        on_readings=rec.on_readings,
        on_alarm=rec.on_alarm,
        on_link=rec.on_link,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def running() -> Iterator[Callable[[ChairPipeline], threading.Thread]]:
    """Run pipelines in threads; every one is stopped and joined (bounded) after the test."""
    started: list[tuple[ChairPipeline, threading.Thread]] = []
    errors: list[BaseException] = []

    def start(p: ChairPipeline) -> threading.Thread:
        def target() -> None:
            try:
                p.run()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=target, name=f"test-{p.name}", daemon=True)
        t.start()
        started.append((p, t))
        return t

    yield start
    for p, t in started:
        p.stop()
        t.join(5.0)
        assert not t.is_alive(), "pipeline did not stop within 5 s"
    assert not errors, errors


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---- readings → alarm engine → buffers and sink -----------------------------------------------


def test_simulated_desaturation_raises_the_spo2_flag_where_readings_arrive(
    profile: ThresholdProfile, running: Callable[[ChairPipeline], threading.Thread]
) -> None:
    rec = Recorder()
    # 32 min after the dose the scenario's SpO2 is at its 84 % nadir; 60x so it takes seconds.
    clock = ScaledClock(60.0)
    p = pipeline(simulator("desaturation", clock, start_at_s=2220.0), profile, rec, clock=clock)
    running(p)
    wait(lambda: (AlarmAction.RAISED, Priority.MEDIUM) in rec.events("spo2"), 10, "SpO2 flag")
    assert p.link_state is LinkState.STREAMING
    assert any(a.key.startswith("spo2") for a in p.active_alarms())
    assert p.worst_alarm() is Priority.MEDIUM
    spo2 = p.buffers.series("spo2")
    assert spo2 is not None and int(spo2.flagged.max()) == int(Priority.MEDIUM)
    # Every reading went to the sink, as the buffers saw them.
    wait(lambda: len(rec.readings) >= 20, 10, "readings")
    assert {"hr", "spo2", "rr", "pr"} <= {r.parameter for r in rec.readings}
    p.stop()
    wait(lambda: LinkState.STOPPED in rec.states(), 5, "stopped")
    assert rec.states()[:1] == [LinkState.CONNECTING]
    assert LinkState.STREAMING in rec.states()


def test_replayed_monitor_bytes_go_through_the_decoder_and_the_alarm_engine(
    profile: ThresholdProfile,
    running: Callable[[ChairPipeline], threading.Thread],
    tmp_path: Path,
) -> None:
    # A Datex stream recorded 35 min after the dose of the tachycardia scenario: HR ~ 130/min.
    capture = run_loopback("datex", get_scenario("tachycardia"), 30.0, start_at_s=2400.0)
    f = tmp_path / "datex.bin"
    f.write_bytes(capture.device_to_host)

    def make() -> tuple[Transport, DeviceProtocol]:
        return ReplayTransport(f, chunk=256), protocol_class("datex")(source="replay")

    rec = Recorder()
    p = pipeline(MonitorSpec(make, f"replay of {f}"), profile, rec)
    running(p)
    wait(lambda: (AlarmAction.RAISED, Priority.MEDIUM) in rec.events("hr"), 10, "HR flag")
    hr = [r for r in rec.readings if r.parameter == "hr"]
    assert hr and max(r.value for r in hr) > 120
    latest = p.buffers.latest()
    assert latest["hr"][1] == int(Priority.MEDIUM)


def test_stop_before_run_returns_at_once_and_a_failing_driver_is_reported(
    profile: ThresholdProfile,
) -> None:
    rec = Recorder()
    clock = ManualClock()
    p = pipeline(simulator("stable", clock), profile, rec, clock=clock)
    p.stop()
    t0 = time.monotonic()
    p.run()
    assert time.monotonic() - t0 < 1.0
    assert rec.states() == []

    def broken() -> tuple[Transport, DeviceProtocol]:
        raise RuntimeError("no such driver")

    p2 = pipeline(MonitorSpec(broken, "broken"), profile, rec, clock=clock)
    with pytest.raises(RuntimeError):
        p2.run()
    assert rec.links[-1].state is LinkState.STOPPED
    assert rec.links[-1].reason == "driver error (see log)"
    assert p2.link_down_since is not None  # a dead driver is a lost link


def test_replace_monitor_while_running_connects_the_new_one(
    profile: ThresholdProfile, running: Callable[[ChairPipeline], threading.Thread]
) -> None:
    rec = Recorder()
    clock = ScaledClock(30.0)
    p = pipeline(simulator("stable", clock), profile, rec, clock=clock)
    thread = running(p)
    wait(lambda: p.link_state is LinkState.STREAMING, 10, "streaming")
    p.replace_monitor(simulator("tachycardia", clock))
    wait(lambda: rec.states().count(LinkState.STREAMING) >= 2, 10, "streaming on the new one")
    assert p.monitor.description == "simulator (tachycardia)"
    assert thread.is_alive()
    assert LinkState.STOPPED in rec.states()  # the old link ended before the new one opened


# ---- technical alarms ---------------------------------------------------------------------


def test_pulled_simulated_cable_is_low_at_10_s_medium_at_30_s_and_clears_on_reconnect(
    profile: ThresholdProfile, running: Callable[[ChairPipeline], threading.Thread]
) -> None:
    rec = Recorder()
    clock = ManualClock()
    p = pipeline(simulator("cable_pulled", clock), profile, rec, clock=clock)
    running(p)

    def tick(now: datetime) -> list[AlarmEvent]:
        return p.tick(now, session_active=True, first_dose=None, nibp_interval_min=15.0)

    # Scenario time 0–55 s: streaming.
    for _ in range(55):
        clock.advance(1.0)
        time.sleep(0.01)
    wait(lambda: p.link_state is LinkState.STREAMING, 10, "streaming")
    assert p.link_down_since is None
    assert tick(clock.now()) == []
    # The cable is pulled at 60 s (for 15 s): the supervisor reports the lost link.
    clock.advance(7.0)
    pulled_at = clock.now()
    t_real = time.monotonic()
    wait(lambda: p.link_state is LinkState.CONNECTING, 5, "link lost")
    detect_s = time.monotonic() - t_real
    assert detect_s < 1.0  # a pulled cable is noticed on the next read
    lost = p.link_down_since
    assert lost is not None and lost == pulled_at
    assert tick(lost + timedelta(seconds=9.9)) == []
    (low,) = tick(lost + timedelta(seconds=10))
    assert (low.key, low.action, low.priority, low.technical) == (
        TECH_LINK,
        AlarmAction.RAISED,
        Priority.LOW,
        True,
    )
    assert tick(lost + timedelta(seconds=20)) == []  # same priority: no new event
    (medium,) = tick(lost + timedelta(seconds=30))
    assert (medium.action, medium.priority) == (AlarmAction.ESCALATED, Priority.MEDIUM)
    assert "disconnected for 30 s" in medium.message
    # The cable comes back at 75 s: streaming again clears the flag at once (no tick needed).
    clock.advance(20.0)
    for _ in range(40):
        clock.advance(0.5)
        if p.link_state is LinkState.STREAMING:
            break
        time.sleep(0.25)
    wait(lambda: p.link_state is LinkState.STREAMING, 10, "streaming again")
    wait(lambda: (AlarmAction.CLEARED, Priority.MEDIUM) in rec.events(TECH_LINK), 2, "cleared")
    assert not any(a.key == TECH_LINK for a in p.active_alarms())
    assert p.link_down_since is None


def test_no_link_flag_outside_a_session_nor_after_a_deliberate_stop(
    profile: ThresholdProfile,
) -> None:
    rec = Recorder()
    clock = ManualClock()
    # Started inside the scenario's pulled-cable window, with a clock that does not move:
    # the port never opens.
    p = pipeline(simulator("cable_pulled", clock, start_at_s=61.0), profile, rec, clock=clock)
    t = threading.Thread(target=p.run, daemon=True)
    t.start()
    wait(lambda: "unplugged" in p.link_reason, 5, "the port failing to open")
    assert p.link_state is LinkState.CONNECTING
    later = clock.now() + timedelta(seconds=40)
    assert p.tick(later, session_active=False, first_dose=None, nibp_interval_min=15) == []
    (e,) = p.tick(later, session_active=True, first_dose=None, nibp_interval_min=15)
    assert (e.key, e.priority) == (TECH_LINK, Priority.MEDIUM)  # never connected counts too
    (gone,) = p.tick(later, session_active=False, first_dose=None, nibp_interval_min=15)
    assert gone.action is AlarmAction.CLEARED
    p.stop()
    t.join(5)
    assert not t.is_alive()
    assert p.link_down_since is None
    assert p.tick(later, session_active=True, first_dose=None, nibp_interval_min=15) == []


def test_nibp_overdue_and_probe_off_from_what_the_pipeline_saw(profile: ThresholdProfile) -> None:
    rec = Recorder()
    clock = ManualClock()
    p = pipeline(simulator("stable", clock), profile, rec, clock=clock)
    dose = clock.now()
    p.set_first_dose(dose)

    def tick(after_s: float) -> list[AlarmEvent]:
        return p.tick(
            dose + timedelta(seconds=after_s),
            session_active=True,
            first_dose=dose,
            nibp_interval_min=15.0,
        )

    assert tick(17 * 60) == []
    (late,) = tick(17 * 60 + 5)
    assert (late.key, late.priority, late.action) == (TECH_NIBP, Priority.LOW, AlarmAction.RAISED)
    # A cuff reading arrives (entered by hand): no longer overdue.
    at = dose + timedelta(seconds=17 * 60 + 10)
    p.inject([make_reading(n, v, at) for n, v in (("nibp_sys", 121), ("nibp_dia", 77))])
    (cleared,) = tick(17 * 60 + 11)
    assert (cleared.key, cleared.action) == (TECH_NIBP, AlarmAction.CLEARED)

    # Three invalid SpO2 readings in the last 10 s: probe off; a valid one clears it.
    base = dose + timedelta(seconds=18 * 60)
    bad = [
        make_reading("spo2", 0, base + timedelta(seconds=i), quality=Quality.INVALID)
        for i in range(3)
    ]
    p.inject(bad, store=False)
    (off,) = tick(18 * 60 + 3)
    assert (off.key, off.priority, off.technical) == (TECH_SPO2, Priority.MEDIUM, True)
    p.inject([make_reading("spo2", 97, base + timedelta(seconds=4))])
    (on,) = tick(18 * 60 + 5)
    assert (on.key, on.action) == (TECH_SPO2, AlarmAction.CLEARED)
    # Only the stored injection reached the sink.
    assert [r.parameter for r in rec.readings] == ["nibp_sys", "nibp_dia", "spo2"]


def test_clock_jump_is_flagged_and_cleared_on_acknowledge_or_after_a_minute(
    profile: ThresholdProfile,
) -> None:
    rec = Recorder()
    host = [1_800_000_000.0, 100.0]  # the host's wall and monotonic clocks, set by the test

    def host_clock() -> tuple[float, float]:
        return host[0], host[1]

    clock = ManualClock()
    p = pipeline(simulator("stable", clock), profile, rec, clock=clock, host_clock=host_clock)

    def tick() -> list[AlarmEvent]:
        host[0] += 1.0
        host[1] += 1.0
        return p.tick(clock.now(), session_active=False, first_dose=None, nibp_interval_min=15)

    assert tick() == [] and tick() == []
    host[0] -= 3600.0  # daylight saving applied to a clock that should be UTC
    (jump,) = tick()
    assert (jump.key, jump.priority, jump.technical) == (TECH_CLOCK, Priority.MEDIUM, True)
    assert "went back 3600 s" in jump.message
    events = p.acknowledge(TECH_CLOCK)
    assert [e.action for e in events] == [AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED]
    assert not p.active_alarms()
    assert tick() == []  # acknowledged: nothing more to clear
    host[0] += 30.0  # forwards by 30 s more than the monotonic clock
    (ahead,) = tick()
    assert "ahead" in ahead.message
    for _ in range(59):
        assert tick() == []
    (gone,) = tick()
    assert (gone.key, gone.action) == (TECH_CLOCK, AlarmAction.CLEARED)


def test_storage_error_raises_and_clears_a_medium_technical_alarm(
    profile: ThresholdProfile,
) -> None:
    rec = Recorder()
    clock = ManualClock()
    p = pipeline(simulator("stable", clock), profile, rec, clock=clock)
    (e,) = p.storage_failed("OperationalError: database is locked")
    assert (e.key, e.priority, e.technical) == (TECH_STORAGE, Priority.MEDIUM, True)
    assert e.message.startswith("** Storage error: readings are held, not yet saved")
    assert p.storage_failed("again") == []  # still failing: no new event
    (ok,) = p.storage_ok()
    assert ok.action is AlarmAction.CLEARED
    assert rec.alarms == [e, ok]


def test_a_failing_alarm_listener_does_not_stop_acquisition(profile: ThresholdProfile) -> None:
    def broken(e: AlarmEvent) -> None:
        raise RuntimeError("listener bug")

    clock = ManualClock()
    p = ChairPipeline("c", simulator("stable", clock), profile, clock=clock, on_alarm=broken)
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    p.inject([make_reading("spo2", 70, now)])
    assert p.worst_alarm() is Priority.HIGH


def test_trend_buffers_clear_forgets_every_parameter() -> None:
    from ketamon.acquisition.buffers import TrendBuffers

    b = TrendBuffers(capacity=4)
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    b.extend([make_reading("hr", 70 + i, now + timedelta(seconds=i)) for i in range(6)], [0] * 6)
    assert b.count("hr") == 4 and "hr" in b.latest()
    version = b.version
    b.clear()
    assert b.count("hr") == 0 and b.latest() == {} and b.series("hr") is None
    assert b.version > version  # the chart redraws (empty)
    b.extend([make_reading("hr", 80, now)])
    assert b.latest()["hr"][0].value == 80


def test_a_clock_jump_acknowledged_through_the_session_core_clears_too(
    profile: ThresholdProfile,
) -> None:
    """The core acknowledges through its alarm port, not through the pipeline: the pipeline's
    hook still tells its clock watch, so the flag clears at once and is not raised again."""
    from ketamon.core.alarms import EngineAlarms

    rec = Recorder()
    host = [1_800_000_000.0, 100.0]
    clock = ManualClock()
    p = pipeline(
        simulator("stable", clock),
        profile,
        rec,
        clock=clock,
        host_clock=lambda: (host[0], host[1]),
    )
    port = EngineAlarms(p.alarms, clock.now, p.alarm_lock, acknowledged=p.acknowledged)

    def tick() -> list[AlarmEvent]:
        host[0] += 1.0
        host[1] += 1.0
        return p.tick(clock.now(), session_active=False, first_dose=None, nibp_interval_min=15)

    tick()
    host[0] -= 3600.0
    (jump,) = tick()
    assert jump.key == TECH_CLOCK
    events = port.acknowledge(TECH_CLOCK)
    assert [e.action for e in events] == [AlarmAction.ACKNOWLEDGED, AlarmAction.CLEARED]
    assert not p.active_alarms()
    assert tick() == []
