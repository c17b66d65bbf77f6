"""Bit-flip robustness of the decoders (``python benchmarks/run.py fuzz``).

Every field-corpus capture of a protocol (tests/devices/corpus, the documented test vectors) is
decoded once as sent, then again after every single bit flip and after a seeded sample of double
bit flips. Per protocol:

* ``frames_tried``: mutated captures decoded;
* ``crashes``: decodes that raised (``feed`` must never raise);
* ``corrupt_accepted``: mutated captures in which no frame was rejected and that produced a
  reading the original does not have (a changed value, time, flag, code or channel): the damage
  got through every check — for
  IntelliVue/Datex past the checksum, for HL7/Masimo (no checksum) past the field rules;
* ``implausible_accepted``: of those readings, how many are outside a coarse physiological range
  (this benchmark's own table; the plausibility check of issue 11 sits after the decoder).

Single-bit flips cannot defeat the IntelliVue CRC-16 (X.25) nor the Datex 8-bit sum; a flipped
digit in an HL7 or Masimo value is indistinguishable from a real value (``120`` → ``121``).
"""

from __future__ import annotations

import random
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from devices.protocols import protocol_class
from devices.readings import Reading

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "devices" / "corpus"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DOUBLE_FLIPS_PER_VECTOR = 1500
#: coarse physiological ranges (inclusive) for "implausible"
RANGES: dict[str, tuple[float, float]] = {
    "hr": (20, 250),
    "pr": (20, 250),
    "nibp_pr": (20, 250),
    "pr_invasive": (20, 250),
    "spo2": (50, 100),
    "rr": (2, 70),
    "nibp_sys": (50, 260),
    "nibp_dia": (20, 160),
    "nibp_mean": (30, 200),
    "abp_mean": (30, 200),
    "temp": (30, 43),
    "pi": (0.02, 20),
    "spco": (0, 40),
    "spmet": (0, 15),
    "pvi": (0, 100),
}

Key = tuple[object, ...]


def _key(r: Reading) -> Key:
    return (
        r.parameter,
        round(r.value, 6),
        r.unit,
        r.mdc,
        r.origin,
        r.channel,
        r.quality,
        r.device_time,
    )


def _decode(protocol: str, data: bytes) -> tuple[list[Reading], int, int]:
    """Readings, good frames, bad frames (a rejected OBX or line counts as a bad frame)."""
    proto = protocol_class(protocol)(source="fuzz")
    readings = proto.feed(data, NOW)
    return readings, proto.stats.frames_ok, proto.stats.frames_bad


def _flips(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """("single", every one-bit flip) then ("double", a seeded sample of two-bit flips)."""
    nbits = len(data) * 8
    buf = bytearray(data)
    for bit in range(nbits):
        buf[bit // 8] ^= 1 << (bit % 8)
        yield "single", bytes(buf)
        buf[bit // 8] ^= 1 << (bit % 8)
    for _ in range(DOUBLE_FLIPS_PER_VECTOR):
        a, b = rng.sample(range(nbits), 2)
        buf[a // 8] ^= 1 << (a % 8)
        buf[b // 8] ^= 1 << (b % 8)
        yield "double", bytes(buf)
        buf[a // 8] ^= 1 << (a % 8)
        buf[b // 8] ^= 1 << (b % 8)


@dataclass
class FuzzResult:
    vectors: int = 0
    frames_tried: int = 0
    crashes: int = 0
    corrupt_accepted: int = 0
    implausible_accepted: int = 0
    seconds: float = 0.0


def run(protocols: list[str]) -> dict[str, dict[str, FuzzResult]]:
    """protocol -> {"single": …, "double": …}"""
    import logging
    import time

    # python-hl7 logs every damaged escape sequence it meets; the counts below say it all
    logging.disable(logging.ERROR)
    try:
        return _run(protocols, time.perf_counter)
    finally:
        logging.disable(logging.NOTSET)


def _run(protocols: list[str], clock: Callable[[], float]) -> dict[str, dict[str, FuzzResult]]:
    manifest = tomllib.loads((CORPUS / "manifest.toml").read_text())["capture"]
    rng = random.Random(16)
    out: dict[str, dict[str, FuzzResult]] = {}
    for protocol in protocols:
        results = {"single": FuzzResult(), "double": FuzzResult()}
        t0 = clock()
        for cap in (c for c in manifest if c["protocol"] == protocol):
            data = (CORPUS / cap["file"]).read_bytes()
            base_readings, base_ok, _ = _decode(protocol, data)
            base = Counter(_key(r) for r in base_readings)
            for r in results.values():
                r.vectors += 1
            for kind, mutated in _flips(data, rng):
                res = results[kind]
                res.frames_tried += 1
                try:
                    got, ok, bad = _decode(protocol, mutated)
                except Exception:
                    res.crashes += 1
                    continue
                if bad or ok < base_ok:
                    # Detected: a frame (or an OBX, or a line) was rejected. Readings of later
                    # frames may still differ (an IntelliVue poll without the MDS create that
                    # anchors its time), but nothing damaged was taken for good.
                    continue
                new = Counter(_key(r) for r in got) - base
                if not new:
                    continue
                res.corrupt_accepted += 1
                for k in new:
                    lo, hi = RANGES.get(str(k[0]), (float("-inf"), float("inf")))
                    value = k[1]
                    assert isinstance(value, float)
                    if not lo <= value <= hi:
                        res.implausible_accepted += 1
                        break
        for r in results.values():
            r.seconds = clock() - t0
        out[protocol] = results
    return out
