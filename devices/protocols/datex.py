"""GE Datex-Ohmeda S/5 Computer Interface (CARESCAPE B4x0/B6x0/B8x0, B20–B125, S/5, AS/3, CS/3).

devices.md §2.2. The host sends one PHDB (physiological database) request for displayed values
at an interval (>= 5 s); the monitor then pushes a record every interval without further polls.
Framing, checksum and struct layout live in :mod:`devices.protocols._datex_codec`.

Decoded from the basic class: ECG HR, NIBP sys/dia/mean, SpO2 + pulse rate, RR (CO2 module,
else ECG impedance), temperature T1–T4, EtCO2 (as %, the unit the record carries). Fields are
1/100 units except HR/PR/RR (1/min). Special values (<= -32001) are never turned into readings.

NIBP is episodic. A record keeps showing the last cuff result for minutes, so a new measurement
is recognised by the auxiliary-info ``nibp_time`` (Unix s of the latest NIBP) when the record
carries it; without it, by the status bits: a result that is not being measured, not flagged
"older than 60 s", and differs from the last one emitted or follows a finished cuff cycle.
"""

from __future__ import annotations

from datetime import UTC, datetime

from devices.protocols import _datex_codec as dx
from devices.protocols.base import DeviceProtocol, Parity, SerialSettings
from devices.readings import Reading, make_reading

# ---- status and "no value": the Datex table ----------------------------------------------------
# Source: GE S/5 DRI specification 8005313 (devices.md §2.2). Every field is a signed 16-bit value;
# anything <= -32001 is a special value and never a reading: -32767 invalid, -32766 not updated,
# -32765 discontinuity (VSCapture), -32764 under range, -32763 over range, -32762 not calibrated.
# NIBP label bits: 5 measuring / 7 calibrating → the shown values are not a new result (no
# reading), 8 "older than 60 s" → not a new measurement. The record has no demo/test flag.
# Origins: ECG status bits 3-6 = HR source (1 ECG, 2-5 invasive BP1-4, 6 pleth); CO2 label bits
# 0-2 = RR source (1 CO2, 2 impedance); the ECG group's own RR is impedance.
_HR_SOURCE = {1: "ecg", 2: "invasive", 3: "invasive", 4: "invasive", 5: "invasive", 6: "pleth"}
_RR_SOURCE = {1: "co2", 2: "impedance"}


def _unix(ts: int) -> datetime | None:
    if ts <= 0:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class DatexProtocol(DeviceProtocol):
    """Host side of the S/5 Computer Interface, displayed values of the basic class."""

    name = "datex"
    # 19200 8E1 with RTS/CTS; the monitor's settings cannot be changed (CARESCAPE SW >= 3 can
    # also run 115200 – pass other settings to the transport for that).
    default_serial = SerialSettings(baudrate=19200, bytesize=8, parity=Parity.EVEN, rtscts=True)
    # One record per request interval (5 s by default): two missed records plus slack.
    quiet_time_s = 12.0
    # A displayed-values record with an aux-info subrecord is ~600 bytes on the wire every 5 s.
    nominal_bytes_per_s = 120.0

    def __init__(
        self,
        source: str = "",
        *,
        interval_s: int = dx.TX_MIN_PERIODIC_S,
        dri_level: int = 0,
    ) -> None:
        super().__init__(source)
        if interval_s < dx.TX_MIN_PERIODIC_S:
            raise ValueError(f"the monitor sends periodic records at >= {dx.TX_MIN_PERIODIC_S} s")
        self.interval_s = interval_s
        # dri_level 0 in requests: icu_devices reports the monitor accepts it (devices.md §2.2).
        self.dri_level = dri_level
        self._deframer = dx.Deframer()
        self._last_request: datetime | None = None
        # NIBP novelty. Kept across reset(): the same cuff result seen again after a reconnect
        # is still the same measurement and must not be stored twice.
        self._last_nibp_time = 0
        self._last_nibp_values: tuple[int, int, int] | None = None
        self._cuff_cycle_seen = False
        #: the last record's NIBP status word, for diagnostics
        self.nibp_status = 0
        #: the device's own DRI level from the last record
        self.device_dri_level: int | None = None

    # ---- requests -------------------------------------------------------------------------------
    def request_bytes(self, interval_s: int | None = None) -> bytes:
        """Framed PHDB request: displayed values, basic class, every ``interval_s`` seconds."""
        ival = self.interval_s if interval_s is None else interval_s
        req = dx.PhdbRequest(dx.SR_DISPLAYED, ival, dx.REQ_BASIC)
        return dx.frame(dx.encode_phdb_request(req, dri_level=self.dri_level))

    def stop_bytes(self) -> bytes:
        """Framed request that cancels the periodic transmission (tx_ival 0)."""
        return self.request_bytes(dx.TX_STOP)

    def on_connect(self, now: datetime) -> bytes:
        self._streaming = False
        self._last_request = now
        return self.request_bytes()

    def outgoing(self, now: datetime) -> bytes:
        # The monitor may wait a whole interval before its first record, so only repeat the
        # request when more than two intervals passed without one (a repeat restarts its timer).
        if self._streaming or self._last_request is None:
            return b""
        if (now - self._last_request).total_seconds() >= 2 * self.interval_s + 1:
            self._last_request = now
            return self.request_bytes()
        return b""

    def reset(self) -> None:
        super().reset()
        self._deframer.reset()
        self._last_request = None
        self._cuff_cycle_seen = False

    # ---- receiving ------------------------------------------------------------------------------
    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        self.stats.bytes_in += len(data)
        out: list[Reading] = []
        try:
            results = self._deframer.feed(data)
        except Exception as exc:  # pragma: no cover - defensive: feed() must never raise
            self._deframer.reset()
            self.stats.bad_frame(f"internal framing error: {exc!r}")
            return out
        for res in results:
            if res.record is None:
                self.stats.bad_frame(res.error)
                continue
            try:
                readings, err = self._decode_record(res.record, now)
            except Exception as exc:  # pragma: no cover - defensive
                readings, err = [], f"record could not be decoded: {exc!r}"
            if err:
                self.stats.bad_frame(err)
                continue
            self.stats.frames_ok += 1
            out.extend(readings)
        self.stats.readings += len(out)
        return out

    def _decode_record(self, record: bytes, now: datetime) -> tuple[list[Reading], str]:
        header, err = dx.parse_header(record)
        if header is None:
            return [], err
        if header.maintype != dx.MT_PHDB:
            return [], ""  # waveform/alarm/network records are valid but not ours
        data = record[dx.HEADER_LEN :]
        spans, err = dx.subrecord_spans(header, len(data))
        if err:
            return [], err
        basic: dx.PhdbSubrecord | None = None
        nibp_time: int | None = None
        for typ, start, end in spans:
            if typ not in (dx.SR_DISPLAYED, dx.SR_AUX_INFO):
                continue  # trend subrecords repeat displayed data; requests are not for us
            sub = dx.parse_phdb_subrecord(typ, data[start:end])
            if sub is None:
                return [], f"PHDB subrecord type {typ} of {end - start} bytes is too short"
            # Auxiliary info is marked by its subrecord type or by class 4 in cl_drilvl_subt.
            if typ == dx.SR_AUX_INFO or sub.phdb_class == dx.CLASS_AUX:
                nibp_time = dx.aux_nibp_time(sub.data)
            elif sub.phdb_class == dx.CLASS_BASIC and basic is None:
                basic = sub
        self.device_dri_level = header.dri_level
        self._streaming = True
        if basic is None:
            return [], ""
        device_time = _unix(header.r_time) or _unix(basic.time_s)
        return self._readings(dx.decode_basic_class(basic.data), nibp_time, device_time, now), ""

    def _readings(
        self,
        groups: dict[str, dx.Group],
        nibp_time: int | None,
        device_time: datetime | None,
        now: datetime,
    ) -> list[Reading]:
        out: list[Reading] = []

        def add(
            param: str,
            raw: int,
            scale: float,
            *,
            unit: str | None = None,
            origin: str | None = None,
            channel: str = "",
        ) -> None:
            if dx.is_special(raw):
                return  # invalid / not updated / out of range: the device gives no number
            out.append(
                make_reading(
                    param,
                    raw / scale,
                    now,
                    device_time=device_time,
                    source=self.source,
                    unit=unit,
                    origin=origin,
                    channel=channel,
                )
            )

        def value_of(group: str, name: str) -> int | None:
            g = groups[group]
            return g.get(dx.BASIC_GROUPS[group], name) if g.exists else None

        hr = value_of("ecg", "hr")
        if hr is not None:
            add("hr", hr, 1, origin=_HR_SOURCE.get((groups["ecg"].status >> 3) & 0xF, "ecg"))
        spo2 = value_of("spo2", "spo2")
        if spo2 is not None:
            add("spo2", spo2, 100)
        pr = value_of("spo2", "pr")
        if pr is not None:
            add("pr", pr, 1)
        # RR: the CO2 group's rr is the displayed RR (its label says CO2 or impedance source);
        # the ECG group's impedance RR is used when there is no CO2 module.
        rr = value_of("co2", "rr")
        rr_origin = _RR_SOURCE.get(groups["co2"].label & 0x7, "co2")
        if rr is None or dx.is_special(rr):
            rr, rr_origin = value_of("ecg", "imp_rr"), "impedance"
        if rr is not None:
            add("rr", rr, 1, origin=rr_origin)
        et = value_of("co2", "et")
        if et is not None:
            add("etco2_pct", et, 100, unit="%")
        for i in range(1, 5):
            temp = value_of(f"t{i}", "temp")
            if temp is not None:
                add(
                    "temp" if i == 1 else f"temp{i}",
                    temp,
                    100,
                    unit="Cel",
                    origin="unspecified",
                    channel=f"T{i}",
                )
        out.extend(self._nibp(groups["nibp"], nibp_time, device_time, now))
        return out

    def _nibp(
        self,
        group: dx.Group,
        nibp_time: int | None,
        device_time: datetime | None,
        now: datetime,
    ) -> list[Reading]:
        self.nibp_status = group.status
        if not group.exists:
            return []
        status = group.status
        layout = dx.BASIC_GROUPS["nibp"]
        sys_, dia, mean = (group.get(layout, f) for f in ("sys", "dia", "mean"))
        measuring = bool(status & dx.NIBP_MEASURING)
        if measuring:
            self._cuff_cycle_seen = True
        if measuring or status & dx.NIBP_CALIBRATING:
            return []  # values on display belong to the previous cycle (or are not readings)
        values = (sys_, dia, mean)
        if all(dx.is_special(v) for v in values):
            return []
        if nibp_time:
            # The monitor tells us when the latest cuff result was taken: that is the marker.
            # (Compared for change, not order, so a clock set back does not hide new results.)
            if nibp_time == self._last_nibp_time:
                return []
            if self._last_nibp_time == 0 and values == self._last_nibp_values:
                # Already emitted from the status bits before aux info arrived: same result.
                self._last_nibp_time = nibp_time
                return []
            when = _unix(nibp_time) or device_time
        else:
            if status & dx.NIBP_OLDER_60S:
                return []  # an old result of unknown age: not a new measurement
            if values == self._last_nibp_values and not self._cuff_cycle_seen:
                return []
            when = device_time
        if nibp_time:
            self._last_nibp_time = nibp_time
        self._last_nibp_values = values
        self._cuff_cycle_seen = False
        out: list[Reading] = []
        for param, raw in zip(("nibp_sys", "nibp_dia", "nibp_mean"), values, strict=True):
            if dx.is_special(raw):
                continue
            out.append(make_reading(param, raw / 100, now, device_time=when, source=self.source))
        return out
