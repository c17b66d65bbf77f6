"""Regenerate the alarm sounds: python resources/sounds/make_sounds.py

IEC 60601-1-8 style priority encoding: high = a burst of 10 pulses (3 + 2, pause, 3 + 2),
medium = 3 pulses, low = 2 pulses. Pulses are a 523 Hz tone with harmonics, 150 ms long with
10 ms ramps. No two priorities share a pattern.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RATE = 16000
HERE = Path(__file__).resolve().parent


def pulse(ms: float = 150.0, f0: float = 523.25) -> list[float]:
    n = int(RATE * ms / 1000)
    ramp = int(RATE * 0.010)
    out = []
    for i in range(n):
        t = i / RATE
        env = min(1.0, i / ramp, (n - 1 - i) / ramp)
        s = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3, 4, 5))
        out.append(0.35 * env * s)
    return out


def silence(ms: float) -> list[float]:
    return [0.0] * int(RATE * ms / 1000)


def pattern(groups: list[int], gap_ms: float = 100.0, group_gap_ms: float = 350.0) -> list[float]:
    out: list[float] = []
    for gi, count in enumerate(groups):
        for p in range(count):
            out += pulse()
            if p < count - 1:
                out += silence(gap_ms)
        if gi < len(groups) - 1:
            out += silence(group_gap_ms if gi != 1 else 1000.0)
    return out + silence(200)


def write(name: str, samples: list[float]) -> None:
    with wave.open(str(HERE / f"{name}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(
            b"".join(struct.pack("<h", int(max(-1, min(1, s)) * 32000)) for s in samples)
        )


if __name__ == "__main__":
    write("high", pattern([3, 2, 3, 2]))
    write("medium", pattern([3]))
    write("low", pattern([2]))
