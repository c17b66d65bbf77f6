"""The protocol half of a driver: framing, checksums, decoding, requests and keep-alive.

A protocol is *sans-I/O*: it never touches a port. The supervisor (or ``ketamon decode``) hands it
bytes with :meth:`DeviceProtocol.feed` and sends whatever :meth:`DeviceProtocol.outgoing` returns.
That lets one implementation serve a serial port, a TCP socket and a file of recorded bytes, and
lets tests split the input at every byte boundary.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from devices.readings import Reading, Waveform


class Parity(enum.StrEnum):
    NONE = "N"
    EVEN = "E"
    ODD = "O"


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings; each protocol declares the device's own defaults."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = Parity.NONE
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False

    def describe(self) -> str:
        flow = "RTS/CTS" if self.rtscts else ("XON/XOFF" if self.xonxoff else "no flow control")
        stop = int(self.stopbits) if float(self.stopbits).is_integer() else self.stopbits
        return f"{self.baudrate} {self.bytesize}{self.parity.value}{stop}, {flow}"


@dataclass(slots=True)
class ProtocolStats:
    bytes_in: int = 0
    frames_ok: int = 0
    frames_bad: int = 0
    readings: int = 0
    last_error: str = ""
    errors: list[str] = field(default_factory=list)

    def bad_frame(self, why: str) -> None:
        self.frames_bad += 1
        self.last_error = why
        if len(self.errors) < 100:  # keep the first ones for the report, never grow unbounded
            self.errors.append(why)


class DeviceProtocol(abc.ABC):
    """Base class for every monitor protocol.

    Subclasses set the class attributes and implement :meth:`feed`. Protocols that must ask the
    device for data or keep an association alive override :meth:`on_connect` and
    :meth:`outgoing`.
    """

    #: name used on the command line (``--protocol``)
    name: ClassVar[str]
    #: the device's own serial defaults
    default_serial: ClassVar[SerialSettings] = SerialSettings()
    #: seconds without a byte after which the link counts as silent
    quiet_time_s: ClassVar[float] = 5.0
    #: nominal line rate in bytes/s of a typical stream, for the decode benchmark
    nominal_bytes_per_s: ClassVar[float] = 100.0

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.stats = ProtocolStats()
        self._streaming = False

    # ---- I/O-free interface -------------------------------------------------------------------
    def on_connect(self, now: datetime) -> bytes:
        """Bytes to send right after the transport opens (association, data request)."""
        self._streaming = False
        return b""

    @abc.abstractmethod
    def feed(self, data: bytes, now: datetime) -> list[Reading]:
        """Consume received bytes; return the readings completed by them.

        Never raises on bad input: a damaged frame is counted in :attr:`stats` and skipped.
        """

    def outgoing(self, now: datetime) -> bytes:
        """Bytes due to be sent now (ACKs, polls, keep-alives). Called often; usually empty."""
        return b""

    def poll(self, now: datetime) -> list[Reading]:
        """Readings produced without input (only the simulator uses this)."""
        return []

    def take_waveforms(self) -> list[Waveform]:
        """Waveform blocks completed since the last call (pleth); most protocols have none."""
        return []

    def summary(self) -> list[str]:
        """Things worth telling the user after a replay: values skipped on purpose (vendor
        sentinels, withheld results, stray bytes) and notes about the sender. Default: none."""
        return []

    @property
    def streaming(self) -> bool:
        """True once the device has accepted the host and data flows."""
        return self._streaming

    def reset(self) -> None:
        """Forget partial frames and session state (called on reconnect)."""
        self._streaming = False
