"""The field corpus (tests/devices/corpus): what real monitors send, replayed through
``ketamon decode`` and through the live path (pyserial on a pseudo-terminal, the supervisor, the
protocol), each against the readings its source document says it carries (manifest.toml)."""

from __future__ import annotations

import json
import math
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devices.emulators.base import Pty
from devices.protocols import protocol_class
from devices.readings import Reading, utcnow
from devices.supervisor import Supervisor
from devices.transports import SerialTransport
from ketamon.cli import main
from tests.devices.corpus.build_corpus import build

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST: list[dict[str, Any]] = tomllib.loads((CORPUS / "manifest.toml").read_text())["capture"]
IDS = [c["file"] for c in MANIFEST]

Row = tuple[str, float, str, str, str, str]


def _row(d: dict[str, Any]) -> Row:
    return (
        d["parameter"],
        d["value"],
        d["mdc"] or "",
        d["origin"],
        d["channel"],
        ",".join(d["flags"]),
    )


def _same(got: list[Row], expected: list[list[Any]]) -> bool:
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if (g[0], *g[2:]) != (e[0], *e[2:]) or not math.isclose(g[1], e[1], abs_tol=1e-6):
            return False
    return True


def _check(capture: dict[str, Any], got: list[Row], times: list[str | None]) -> None:
    assert _same(got, capture["expect"]), (got, capture["expect"])
    if "device_time" in capture:
        assert set(times) == {capture["device_time"]}
    if "device_times" in capture:
        assert times == capture["device_times"]


def test_every_file_is_in_the_manifest_and_equals_what_the_builder_makes() -> None:
    built = build()
    on_disk = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.suffix in (".hl7", ".txt", ".bin")
    }
    assert on_disk == set(built) == set(IDS)
    for name, data in built.items():
        assert (CORPUS / name).read_bytes() == data, f"{name} differs from build_corpus.py"
    for c in MANIFEST:
        assert c["source"].strip() and c["note"].strip(), c["file"]


@pytest.mark.parametrize("capture", MANIFEST, ids=IDS)
def test_decode_command_gives_the_documented_readings(
    capture: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["decode", "--protocol", capture["protocol"], str(CORPUS / capture["file"])])
    out, err = capsys.readouterr()
    assert rc == 0
    assert " 0 bad frames" in err, err
    if "counters" in capture:  # what was skipped on purpose is said, not only counted
        assert "decode: note: " in err, err
    rows = [json.loads(line) for line in out.splitlines()]
    for d in rows:  # the public JSON keeps its old keys and adds origin/channel
        assert {"parameter", "value", "unit", "mdc", "device_time", "host_time", "flags"} <= set(d)
        assert {"source", "origin", "channel"} <= set(d)
    _check(capture, [_row(d) for d in rows], [d["device_time"] for d in rows])


@pytest.mark.parametrize(
    "capture",
    [c for c in MANIFEST if "counters" in c],
    ids=[c["file"] for c in MANIFEST if "counters" in c],
)
def test_skipped_values_and_bytes_are_counted(capture: dict[str, Any]) -> None:
    proto = protocol_class(capture["protocol"])(source="corpus")
    data = (CORPUS / capture["file"]).read_bytes()
    for i in range(len(data)):  # one byte at a time: counting must not depend on chunking
        proto.feed(data[i : i + 1], utcnow())
    for name, want in capture["counters"].items():
        assert getattr(proto, name) == want, name
    assert proto.stats.frames_bad == 0


def _pty_replay(protocol: str, data: bytes, want: int) -> tuple[list[Reading], Any]:
    """The corpus bytes written to the device side of a pty; the host side is opened with
    pyserial by the same Supervisor + SerialTransport that ``ketamon record`` uses."""
    pty = Pty()
    proto = protocol_class(protocol)(source="pty")
    got: list[Reading] = []
    opened = threading.Event()

    def on_status(event: Any) -> None:
        if event.state.value == "negotiating":
            opened.set()

    sup = Supervisor(
        SerialTransport(pty.path, proto.default_serial),
        proto,
        on_readings=got.extend,
        on_status=on_status,
    )
    thread = threading.Thread(target=sup.run, kwargs={"max_seconds": 20.0}, daemon=True)
    thread.start()
    try:
        assert opened.wait(10.0), "the port was not opened"
        pty.read(0.05)  # what the host sent on connect (association, requests): not needed
        for i in range(0, len(data), 64):  # a line's worth at a time, as a UART delivers it
            assert pty.write(data[i : i + 64]) == len(data[i : i + 64])
            time.sleep(0.002)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            pty.read(0.02)  # keep draining ACKs/polls so the host never blocks on a full pty
            if len(got) >= want and proto.stats.frames_ok + proto.stats.frames_bad > 0:
                time.sleep(0.1)  # anything extra would show up now
                pty.read(0.02)
                break
    finally:
        sup.stop()
        thread.join(5.0)
        pty.close()
    assert not thread.is_alive()
    return got, proto


@pytest.mark.pty
@pytest.mark.parametrize("capture", MANIFEST, ids=IDS)
def test_live_pty_path_gives_the_documented_readings(capture: dict[str, Any]) -> None:
    data = (CORPUS / capture["file"]).read_bytes()
    got, proto = _pty_replay(capture["protocol"], data, len(capture["expect"]))
    rows = [_row(r.to_json_dict()) for r in got]
    _check(capture, rows, [r.to_json_dict()["device_time"] for r in got])
    assert proto.stats.frames_bad == 0, proto.stats.errors
    assert proto.stats.frames_ok >= 1
