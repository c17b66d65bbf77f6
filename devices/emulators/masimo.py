"""The oximeter side of Masimo "ASCII 1" serial output (devices.md §2.3).

Sends one line per second of its own accord, in the layout of the chosen model
(``radical7`` – default, newer colour firmware – ``radical7_legacy`` or ``rad8``); it ignores
anything the host sends. The timestamp is the device clock in ``device_tz`` (default: host local
time, matching :class:`~devices.protocols.masimo.MasimoProtocol`'s default). In the artifact
scenario it puts line noise, a line cut short, and a "sensor off" line on the wire now and then.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from devices.emulators.base import DeviceEmulator
from devices.protocols.masimo import EXC_SENSOR_OFF, VARIANTS
from devices.scenarios import Scenario, Vitals

LINE_PERIOD_S = 1.0


def _junk(seed: int, n: int) -> bytes:
    out = bytearray()
    x = (seed * 2654435761 + 7) & 0xFFFFFFFF
    for _ in range(n):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def _pi(t: float) -> float:
    # Perfusion index wanders slowly between ~1.5 and ~3.5 %.
    return round(2.5 + ((int(t) * 37) % 200 - 100) / 100.0, 2)


def format_line(
    variant: str,
    when: datetime,
    vitals: Vitals | None,
    *,
    pi: float | None = None,
    exceptions: int = 0,
    serial: str = "0000070986",
) -> str:
    """One line (without CR LF) in the given model's layout; ``vitals=None`` = no reading."""
    v = VARIANTS[variant]
    stamp = when.strftime("%m/%d/%y %H:%M:%S")
    spo2 = f"{round(vitals.spo2):03d}" if vitals else "---"
    bpm = f"{round(vitals.pr):03d}" if vitals else "---"
    pi_s = f"{pi:05.2f}" if (vitals and pi is not None) else "--.--"
    exc_w, alarm_w = v.widths["EXC"], v.widths["ALARM"]
    fields: dict[str, str]
    if variant == "radical7":
        fields = {
            "SN": serial,
            "SPO2": f"{spo2}%",
            "BPM": bpm,
            "PI": pi_s,
            "SPCO": "--%",
            "SPMET": "--.-%",
            "SPHB": "--.-",
            "SPOC": "--",
            "RESVD": "---",
            "DESAT": "--",
            "PIDELTA": "+--",
            "PVI": "---",
            "ALARM": "0" * alarm_w,
            "EXC": f"{exceptions:0{exc_w}X}",
            "EXC1": "0" * v.widths["EXC1"],
        }
    elif variant == "radical7_legacy":
        fields = {
            "SN": serial,
            "SPO2": f"{spo2}%",
            "BPM": bpm,
            "PI": f"{pi_s}%",
            "SPCO": "--.-%",
            "SPMET": "--.-%",
            "DESAT": "--",
            "PIDELTA": "+--",
            "PVI": "---",
            "ALARM": "0" * alarm_w,
            "EXC": f"{exceptions:0{exc_w}X}",
        }
    elif variant == "radical5":  # MD PnP poxrad_discrete.h example layout
        fields = {
            "SPO2": f"{spo2}%",
            "BPM": bpm,
            "PI": f"{pi_s}%",
            "ALARM": "0" * alarm_w,
            "EXC": f"{exceptions:0{exc_w}X}",
        }
    else:  # rad8
        fields = {
            "SN": serial,
            "SPO2": f"{spo2}%",
            "BPM": f"{bpm}%",  # the Rad-8 sample line prints % after BPM too
            "DESAT": "--",
            "PIDELTA": "+--",
            "ALARM": "0" * alarm_w,
            "EXC": f"{exceptions:0{exc_w}X}",
        }
    assert tuple(fields) == v.keys
    return stamp + " " + " ".join(f"{k}={val}" for k, val in fields.items())


class MasimoEmulator(DeviceEmulator):
    name = "masimo"

    def __init__(
        self,
        scenario: Scenario,
        device_epoch: datetime | None = None,
        *,
        variant: str = "radical7",
        device_tz: tzinfo | None = None,
    ) -> None:
        super().__init__(scenario, device_epoch)
        if variant not in VARIANTS:
            raise ValueError(f"unknown Masimo variant {variant!r}; choose one of {list(VARIANTS)}")
        self.variant = variant
        self.device_tz = device_tz
        self._next_due: float | None = None
        self._garbage_window = -1

    def on_host_bytes(self, data: bytes, t_s: float) -> bytes:
        return b""  # the oximeter has no receive path in ASCII 1 mode

    def tick(self, t_s: float) -> bytes:
        if self._next_due is None:
            self._next_due = float(int(t_s))  # lines on whole device seconds
        if t_s < self._next_due:
            return b""
        due = self._next_due
        nxt = due + LINE_PERIOD_S
        self._next_due = nxt if nxt > t_s else float(int(t_s)) + LINE_PERIOD_S
        return self.line_bytes(due)

    def clock(self, t: float) -> datetime:
        """The device's wall clock (no zone on the wire) at scenario time ``t``."""
        dt = self.device_time(t)
        return dt.astimezone(self.device_tz) if self.device_tz is not None else dt.astimezone()

    def line_bytes(self, t: float) -> bytes:
        sc = self.scenario
        when = self.clock(t)
        if sc.garbage_due(t) and int(t / 7.0) != self._garbage_window:
            self._garbage_window = int(t / 7.0)
            good = format_line(self.variant, when, sc.vitals(t), pi=_pi(t))
            # Noise, a line cut short by it, then the sensor slipping off for this second.
            off = format_line(self.variant, when, None, exceptions=EXC_SENSOR_OFF)
            cut = good[: len(good) * 2 // 3]
            return (
                _junk(self._garbage_window, 19)
                + b"\r\n"
                + cut.encode()
                + b"\r\n"
                + (off.encode() + b"\r\n")
            )
        return format_line(self.variant, when, sc.vitals(t), pi=_pi(t)).encode() + b"\r\n"

    def reset(self) -> None:
        self._next_due = None
