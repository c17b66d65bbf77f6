"""Per-parameter ring buffers the chart redraws from (no Qt).

The device thread appends; the UI timer takes snapshots. One lock per chair keeps a snapshot
consistent; appends are O(1) (an index-based ring, never ``np.roll``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from devices.readings import Reading, make_reading

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class Series:
    t: FloatArray  # epoch seconds (host receive time)
    v: FloatArray
    flagged: Int8Array  # alarm priority of the breach (0 = in range)
    invalid: BoolArray


class _Ring:
    __slots__ = ("flagged", "invalid", "n", "start", "t", "v")

    def __init__(self, capacity: int) -> None:
        self.t = np.empty(capacity, dtype=np.float64)
        self.v = np.empty(capacity, dtype=np.float64)
        self.flagged = np.zeros(capacity, dtype=np.int8)
        self.invalid = np.zeros(capacity, dtype=np.bool_)
        self.start = 0
        self.n = 0

    def append(self, t: float, v: float, flagged: int, invalid: bool) -> None:
        cap = len(self.t)
        i = (self.start + self.n) % cap
        self.t[i], self.v[i], self.flagged[i], self.invalid[i] = t, v, flagged, invalid
        if self.n < cap:
            self.n += 1
        else:
            self.start = (self.start + 1) % cap

    def snapshot(self) -> Series:
        idx = (self.start + np.arange(self.n)) % len(self.t)
        return Series(self.t[idx], self.v[idx], self.flagged[idx], self.invalid[idx])


class TrendBuffers:
    """Ring buffers for every parameter of one chair.

    ``capacity`` readings per parameter: 8 h at 1 Hz by default, so an overlong infusion keeps
    its most recent eight hours on screen while everything stays in the database.
    """

    def __init__(self, capacity: int = 8 * 3600) -> None:
        self.capacity = capacity
        self._rings: dict[str, _Ring] = {}
        self._latest: dict[str, Reading] = {}
        self._latest_flagged: dict[str, int] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped on every append; the redraw timer skips unchanged buffers

    def extend(self, readings: Iterable[Reading], flagged: Iterable[int] | None = None) -> None:
        flags = list(flagged) if flagged is not None else None
        with self._lock:
            for i, r in enumerate(readings):
                ring = self._rings.get(r.parameter)
                if ring is None:
                    ring = self._rings[r.parameter] = _Ring(self.capacity)
                f = int(flags[i]) if flags is not None else 0
                # an invalid value (artifact, probe off) is kept as "no value": never drawn
                value = r.value if r.valid else math.nan
                ring.append(r.host_time.timestamp(), value, f, not r.valid)
                if r.valid:
                    self._latest[r.parameter] = r
                    self._latest_flagged[r.parameter] = f
            self.version += 1

    def load(
        self, parameter: str, t: FloatArray, v: FloatArray, invalid: BoolArray, unit: str = ""
    ) -> None:
        """A parameter's history in one go (review, restart): ``t`` epoch seconds, oldest first.

        Replaces what the buffer held for ``parameter``; keeps the last ``capacity`` readings.
        """
        n = min(len(t), self.capacity)
        ring = _Ring(self.capacity)
        ring.t[:n], ring.v[:n], ring.invalid[:n] = t[-n:], v[-n:], invalid[-n:]
        ring.v[:n][ring.invalid[:n]] = math.nan  # never drawn as real
        ring.n = n
        ok = np.nonzero(~invalid)[0]
        with self._lock:
            self._rings[parameter] = ring
            if len(ok):
                i = int(ok[-1])
                when = datetime.fromtimestamp(float(t[i]), UTC)
                self._latest[parameter] = make_reading(
                    parameter, float(v[i]), when, unit=unit or None
                )
                self._latest_flagged[parameter] = 0
            self.version += 1

    def clear(self) -> None:
        """Forget every reading (a new patient at the chair); the capacity stays."""
        with self._lock:
            self._rings.clear()
            self._latest.clear()
            self._latest_flagged.clear()
            self.version += 1

    def series(self, parameter: str) -> Series | None:
        with self._lock:
            ring = self._rings.get(parameter)
            return ring.snapshot() if ring is not None else None

    def latest(self) -> dict[str, tuple[Reading, int]]:
        """Latest valid reading per parameter with the priority it breached (0 = in range)."""
        with self._lock:
            return {k: (r, self._latest_flagged[k]) for k, r in self._latest.items()}

    def count(self, parameter: str) -> int:
        with self._lock:
            ring = self._rings.get(parameter)
            return ring.n if ring else 0


class WaveBuffer:
    """The last ``seconds`` of one waveform (pleth), appended in blocks by the device thread."""

    def __init__(self, seconds: float = 8.0, rate_hz: float = 125.0) -> None:
        self.rate_hz = rate_hz
        self.capacity = int(seconds * rate_hz)
        self._v = np.zeros(self.capacity, dtype=np.float64)
        self._n = 0  # samples ever appended
        self._lock = threading.Lock()
        self.version = 0

    def extend(self, samples: Sequence[float]) -> None:
        data = np.asarray(samples, dtype=np.float64)
        cap = self.capacity
        with self._lock:
            if len(data) >= cap:
                # Keep slot (k % cap) for sample k, as the partial writes below do.
                self._v[:] = np.roll(data[-cap:], (self._n + len(data)) % cap)
            else:
                i = self._n % cap
                first = min(cap - i, len(data))
                self._v[i : i + first] = data[:first]
                self._v[: len(data) - first] = data[first:]
            self._n += len(data)
            self.version += 1

    def snapshot(self) -> FloatArray:
        """Samples oldest first (fewer than the capacity until it has filled)."""
        cap = self.capacity
        with self._lock:
            if self._n < cap:
                return self._v[: self._n].copy()
            i = self._n % cap
            return np.concatenate((self._v[i:], self._v[:i]))
