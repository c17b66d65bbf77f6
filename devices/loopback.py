"""An in-memory cable between a protocol and its emulator, driven on scenario time.

Used to make captures (``ketamon emulate --capture``), for the decode benchmark, and by tests that
want a realistic device→host byte stream without a pty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from devices.emulators import emulator_class
from devices.protocols import protocol_class
from devices.readings import Reading
from devices.scenarios import Link, Scenario


@dataclass
class LoopbackResult:
    device_to_host: bytes
    host_to_device: bytes
    readings: list[Reading] = field(default_factory=list)


def run_loopback(
    protocol: str,
    scenario: Scenario,
    seconds: float,
    *,
    start_at_s: float = 0.0,
    step_s: float = 0.05,
    epoch: datetime | None = None,
) -> LoopbackResult:
    """Run host protocol and device emulator against each other for ``seconds`` of scenario time.

    Link faults of the scenario are honoured as silence (nothing crosses the cable).
    """
    epoch = epoch or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    emu = emulator_class(protocol)(scenario, device_epoch=epoch)
    proto = protocol_class(protocol)(source=f"{protocol}-loopback")
    d2h = bytearray()
    h2d = bytearray()
    readings: list[Reading] = []
    t = start_at_s
    now = epoch + timedelta(seconds=t)
    pending_h2d = proto.on_connect(now)
    end = start_at_s + seconds
    while t < end:
        now = epoch + timedelta(seconds=t)
        up = scenario.link(t) is Link.UP
        out = b""
        if pending_h2d:
            h2d += pending_h2d
            if up:
                out += emu.on_host_bytes(pending_h2d, t)
        if up:
            out += emu.tick(t)
        if out:
            d2h += out
            readings.extend(proto.feed(out, now))
        pending_h2d = proto.outgoing(now)
        t += step_s
    h2d += pending_h2d  # the host's last reply (e.g. the final ACK) still goes on the wire
    return LoopbackResult(bytes(d2h), bytes(h2d), readings)
