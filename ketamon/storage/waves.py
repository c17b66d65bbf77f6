"""Waveforms (the pleth) stored with their session, and read back for review.

The monitor hands the pleth over in small blocks (a tenth of a second or so). A
:class:`WaveformRecorder` joins the blocks of one session into rows of about ten seconds and
hands each finished row to the one database writer; a gap in the samples (a cable pull, a
reconnect) starts a new row, so a row's samples are always evenly spaced. What a crash can lose is
the row being filled: at most ``block_s`` seconds of pleth, never a numeric reading.

:func:`session_waveform` reads a session's pleth back as two numpy arrays (times and values):
an 8-hour session is 3.6 million samples, read in a few tens of milliseconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from devices.readings import Waveform
from ketamon.storage.history import epoch_us, epoch_us_sql, fetch_raw
from ketamon.storage.models import WaveformBlock

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
#: hands a database operation to the one writer (``DatabaseWriter.submit``)
Submit = Callable[[Callable[[Session], object]], object]

#: samples as stored: little-endian float32
SAMPLE_DTYPE = np.dtype("<f4")


@dataclass(slots=True)
class _Open:
    """The row being filled for one (session, parameter)."""

    session_id: int
    parameter: str
    start: datetime
    rate_hz: float
    source: str
    chunks: list[npt.NDArray[np.float32]] = field(default_factory=list)
    n: int = 0

    def next_start(self) -> datetime:
        return self.start + timedelta(seconds=self.n / self.rate_hz)

    def row(self) -> dict[str, object]:
        data = np.concatenate(self.chunks).astype(SAMPLE_DTYPE, copy=False)
        return {
            "session_id": self.session_id,
            "parameter": self.parameter,
            "start_at": self.start,
            "rate_hz": self.rate_hz,
            "n": len(data),
            "samples": data.tobytes(),
            "source": self.source,
        }


class WaveformRecorder:
    """Joins a chair's waveform blocks into stored rows (thread-safe: the chair's thread adds,
    any thread flushes).

    ``submit`` gives a database operation to the one writer; ``block_s`` is the length of a
    stored row; a block that does not follow on within ``gap_tolerance`` sample periods starts
    a new row.
    """

    def __init__(
        self,
        submit: Submit,
        *,
        source: str = "",
        block_s: float = 10.0,
        gap_tolerance: float = 2.0,
    ) -> None:
        self._submit = submit
        self.source = source
        self.block_s = block_s
        self.gap_tolerance = gap_tolerance
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self.rows_submitted = 0
        self.samples_submitted = 0

    def add(self, session_id: int | None, waves: Sequence[Waveform]) -> None:
        """Waveform blocks from the monitor; ``session_id`` None (no session running) stores
        nothing and closes what was open."""
        done: list[_Open] = []
        with self._lock:
            if session_id is None:
                done += self._open.values()
                self._open.clear()
            else:
                for w in waves:
                    if not w.samples or w.rate_hz <= 0:
                        continue
                    cur = self._open.get(w.parameter)
                    if cur is not None and not self._follows(cur, session_id, w):
                        done.append(cur)
                        cur = None
                    if cur is None:
                        cur = self._open[w.parameter] = _Open(
                            session_id, w.parameter, w.start, w.rate_hz, self.source
                        )
                    cur.chunks.append(np.asarray(w.samples, dtype=np.float32))
                    cur.n += len(w.samples)
                    if cur.n >= self.block_s * cur.rate_hz:
                        done.append(cur)
                        del self._open[w.parameter]
        self._store(done)

    def _follows(self, cur: _Open, session_id: int, w: Waveform) -> bool:
        if cur.session_id != session_id or cur.rate_hz != w.rate_hz:
            return False
        drift = abs((w.start - cur.next_start()).total_seconds())
        return drift <= self.gap_tolerance / w.rate_hz

    def flush(self) -> None:
        """Store every row being filled (at a session's end and at shutdown)."""
        with self._lock:
            done = list(self._open.values())
            self._open.clear()
        self._store(done)

    def _store(self, done: list[_Open]) -> None:
        if not done:
            return
        rows = [o.row() for o in done]

        def op(s: Session) -> None:
            s.execute(insert(WaveformBlock), rows)

        self.rows_submitted += len(rows)
        self.samples_submitted += sum(o.n for o in done)
        try:
            self._submit(op)
        except Exception:  # a stopped writer: the pleth is lost, the numerics are not
            log.exception("pleth of %s: %d rows not stored", self.source, len(rows))


def session_waveform(
    engine: Engine, session_id: int, parameter: str = "pleth"
) -> tuple[FloatArray, FloatArray]:
    """The session's stored ``parameter`` samples: (epoch seconds, values), oldest first.

    Between two rows (a gap in the recording) a NaN is put in so a chart draws a break, not a
    line across the gap.
    """
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = (
        f"SELECT {epoch_us_sql(engine, 'start_at')}, rate_hz, n, samples FROM waveform_block "
        f"WHERE session_id = {mark} AND parameter = {mark} ORDER BY start_at, id"
    )
    rows = fetch_raw(engine, sql, (session_id, parameter))
    if not rows:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty.copy()
    starts = epoch_us([r[0] for r in rows]) / 1e6
    rates = np.fromiter((float(r[1]) for r in rows), dtype=np.float64, count=len(rows))
    counts = np.fromiter((int(r[2]) for r in rows), dtype=np.int64, count=len(rows))
    values = np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype=SAMPLE_DTYPE)
    # sample k of row j is at starts[j] + k / rates[j]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(len(values)) - first
    t = np.repeat(starts, counts) + k / np.repeat(rates, counts)
    v = values.astype(np.float64)
    # a break between rows that do not follow on
    ends = starts + counts / rates
    gaps = np.nonzero(starts[1:] - ends[:-1] > 2.0 / rates[1:])[0] + 1
    if len(gaps):
        at = np.cumsum(counts)[gaps - 1]
        t = np.insert(t, at, starts[gaps] - 0.5 / rates[gaps])
        v = np.insert(v, at, np.nan)
    return t, v


__all__ = ["WaveformRecorder", "session_waveform"]
