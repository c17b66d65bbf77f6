"""The monitor side of the GE Datex-Ohmeda S/5 Computer Interface (devices.md §2.2).

Silent until the host's PHDB request arrives; then one displayed-values record (basic class plus
an auxiliary-info subrecord carrying ``nibp_time``) every requested interval. ``tx_ival`` -1
sends one record, 0 stops. NIBP runs in AUTO mode: the measuring bit is set while the cuff is
inflated before each result, and "older than 60 s" once the shown result has aged.
"""

from __future__ import annotations

from datetime import datetime

from devices.emulators.base import DeviceEmulator
from devices.protocols import _datex_codec as dx
from devices.scenarios import Scenario

#: how long the cuff is "measuring" before each result (status bit 5)
CUFF_MEASURE_S = 40.0


def _junk(seed: int, n: int) -> bytes:
    """Deterministic line noise (includes flags and escape bytes now and then)."""
    out = bytearray()
    x = (seed * 2654435761 + 12345) & 0xFFFFFFFF
    for _ in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


class DatexEmulator(DeviceEmulator):
    name = "datex"

    def __init__(self, scenario: Scenario, device_epoch: datetime | None = None) -> None:
        super().__init__(scenario, device_epoch)
        self._deframer = dx.Deframer()
        self._interval: int | None = None  # None: not sending
        self._next_due = 0.0
        self._single_shot = False
        self._garbage_window = -1
        self._r_nbr = 0
        #: requests the emulator rejected (bad checksum, malformed), for tests
        self.rejected: list[str] = []
        #: requests accepted, in order
        self.requests: list[dx.PhdbRequest] = []

    # ---- host -> device ---------------------------------------------------------------------
    def on_host_bytes(self, data: bytes, t_s: float) -> bytes:
        for res in self._deframer.feed(data):
            if res.record is None:
                self.rejected.append(res.error)  # the monitor ignores damaged requests
                continue
            reqs, err = dx.parse_phdb_requests(res.record)
            if err:
                self.rejected.append(err)
                continue
            for req in reqs:
                self._apply(req, t_s)
        return b""

    def _apply(self, req: dx.PhdbRequest, t_s: float) -> None:
        if req.record_type != dx.SR_DISPLAYED:
            # Trends only flow after displayed values started and with a patient case
            # admitted; the emulated monitor has no case, so it ignores trend requests.
            return
        self.requests.append(req)
        if req.interval_s == dx.TX_STOP:
            self._interval = None
            self._single_shot = False
        elif req.interval_s == dx.TX_SINGLE_SHOT:
            self._single_shot = True
            self._next_due = t_s
        elif req.interval_s >= dx.TX_MIN_PERIODIC_S:
            self._interval = req.interval_s
            self._single_shot = False
            self._next_due = t_s  # first record right away, then every interval
        else:
            self.rejected.append(f"tx_ival {req.interval_s} s is below the 5 s minimum")

    # ---- device -> host ---------------------------------------------------------------------
    def tick(self, t_s: float) -> bytes:
        out = b""
        if self._single_shot:
            self._single_shot = False
            out += self._record(t_s)
            return out
        if self._interval is None or t_s < self._next_due:
            return out
        due = self._next_due
        nxt = due + self._interval
        # After a silent spell, resume on the grid from now instead of bursting old records.
        self._next_due = nxt if nxt > t_s else t_s + self._interval
        return self._record(due)

    def _record(self, t: float) -> bytes:
        sc = self.scenario
        artifact = sc.garbage_due(t)
        rec = self.displayed_record(t, sensor_off=artifact)
        self._r_nbr = (self._r_nbr + 1) & 0xFF
        good = dx.frame(rec)
        window = int(t / 7.0)
        if artifact and window != self._garbage_window:
            self._garbage_window = window
            # Line noise, then a copy of the record with a wrong checksum, then the real one.
            bad = dx.frame(rec, checksum_byte=dx.checksum(rec) ^ 0x5A)
            return _junk(window, 23) + bad + good
        return good

    def displayed_record(self, t: float, *, sensor_off: bool = False) -> bytes:
        """The record the monitor shows at scenario time ``t`` (unframed)."""
        sc = self.scenario
        v = sc.vitals(t)
        r_time = int(self.device_time(t).timestamp())
        groups: dict[str, dx.Group] = {
            name: dx.absent_group(name)
            for name in ("p1", "p2", "p3", "p4", "t1", "t2", "t3", "t4", "co2")
        }
        # ECG: HR and impedance respiration (no capnograph at an infusion chair).
        groups["ecg"] = dx.Group(
            dx.ST_EXISTS | dx.ST_ACTIVE,
            0,
            (round(v.hr), dx.DATA_INVALID, dx.DATA_INVALID, dx.DATA_INVALID, round(v.rr)),
        )
        if sensor_off:
            spo2 = (dx.DATA_INVALID, dx.DATA_INVALID, dx.DATA_INVALID, dx.DATA_INVALID)
        else:
            spo2 = (round(v.spo2 * 100), round(v.pr), 350, dx.DATA_INVALID)
        groups["spo2"] = dx.Group(dx.ST_EXISTS | dx.ST_ACTIVE, 0, spo2)
        groups["nibp"], nibp_time = self._nibp_group(t)
        return dx.DisplayedRecord(
            r_time=r_time, groups=groups, nibp_time=nibp_time, r_nbr=self._r_nbr
        ).encode()

    def _nibp_group(self, t: float) -> tuple[dx.Group, int]:
        sc = self.scenario
        status = dx.ST_EXISTS | dx.ST_ACTIVE | dx.NIBP_AUTO
        idx = sc.cuff_index_at(t)
        nxt = sc.cuff(idx + 1)
        if nxt.t_s - CUFF_MEASURE_S <= t < nxt.t_s:
            status |= dx.NIBP_MEASURING
        if idx < 0:
            return dx.Group(status, 0, (dx.DATA_INVALID,) * 4), 0
        cuff = sc.cuff(idx)
        if t - cuff.t_s > 60.0:
            status |= dx.NIBP_OLDER_60S
        pulse = round(sc.vitals(cuff.t_s).pr)
        values = (round(cuff.sys * 100), round(cuff.dia * 100), round(cuff.mean * 100), pulse)
        return dx.Group(status, 0, values), int(self.device_time(cuff.t_s).timestamp())

    def reset(self) -> None:
        """A new connection: the monitor forgets the transmission request."""
        self._deframer.reset()
        self._interval = None
        self._single_shot = False
