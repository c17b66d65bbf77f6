"""A bedside monitor that exports IHE PCD-01 ORU^R01 numerics over MLLP (TCP or serial).

Like the real senders (devices.md §2.4) it pushes a message every few seconds without being
asked, gives every message a new MSH-10, waits for the receiver's ACK and retransmits an un-ACKed
message once. Each message carries HR, PR, SpO2 and RR sampled at the message time and the
latest NIBP with its own measurement time (OBX-14), so a receiver must de-duplicate NIBP.

:class:`TcpServer` serves an emulator on a loopback listening socket, the way a monitor or an
HL7 gateway waits for the host to connect; ``PtyServer`` (base.py) serves it on a serial pty.
"""

from __future__ import annotations

import contextlib
import math
import random
import select
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import hl7

from devices.emulators.base import DeviceEmulator, EmulatorServer
from devices.protocols.hl7 import MllpDeframer, format_ts, mllp_wrap
from devices.scenarios import Link, Scenario

#: the EUI-64 this emulated monitor reports in MSH-3 and the MDS row (OBX-18)
DEVICE_EUI64 = "0012A5FFFE3C4D21"
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"


@dataclass(slots=True)
class _Pending:
    control_id: str
    frame: bytes
    sent_at: float
    retried: bool = False


def build_oru(
    control_id: str,
    sample_time: datetime,
    *,
    hr: float,
    pr: float,
    spo2: float | None,
    rr: float,
    nibp: tuple[float, float, float, datetime] | None,
    processing_id: str = "P",
) -> str:
    """One PCD-01 ORU^R01 (segments joined by CR, no MLLP block).

    ``spo2=None`` sends the SpO2 row the way a monitor showing '?' does: no value, status X.
    Units are deliberately a mix of MDC codes and UCUM, as both occur in the field.
    """
    ts = format_ts(sample_time)
    sender = f"KETAMON-EMU^{DEVICE_EUI64}^EUI-64"
    filler = f"{control_id}^KETAMON-EMU^{DEVICE_EUI64}^EUI-64"
    # OBX rows without their set id (OBX-1), numbered below. The MDS row comes first, then the
    # NIBP VMD/channel/metrics exactly as in the NIST PCD-01 message quoted in devices.md §2.4,
    # then the periodic numerics.
    rows = [
        f"69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||"
        f"{DEVICE_EUI64}^^{DEVICE_EUI64}^EUI-64",
    ]
    if nibp is not None:
        sys_, dia, mean, measured = nibp
        cuff = format_ts(measured)
        rows += [
            "|70686^MDC_DEV_PRESS_BLD_NONINV_VMD^MDC|1.1.0.0|||||||X",
            "|70687^MDC_DEV_PRESS_BLD_NONINV_CHAN^MDC|1.1.1.0|||||||X",
            f"NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|{sys_:.0f}|mm[Hg]^mm[Hg]^UCUM"
            f"|||||R|||{cuff}",
            f"NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.1.2|{dia:.0f}|mm[Hg]^mm[Hg]^UCUM"
            f"|||||R|||{cuff}",
            f"NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.1.3|{mean:.0f}|mm[Hg]^mm[Hg]^UCUM"
            f"|||||R|||{cuff}",
        ]
    rows += [
        f"NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.1|{hr:.0f}|264864^MDC_DIM_BEAT_PER_MIN^MDC"
        f"|||||R|||{ts}",
        f"NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.1|{pr:.0f}|{{beat}}/min^{{beat}}/min^UCUM"
        f"|||||R|||{ts}",
        (
            f"NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.2|{spo2:.0f}|262688^MDC_DIM_PERCENT^MDC"
            f"|||||R|||{ts}"
            if spo2 is not None
            else f"NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.2||262688^MDC_DIM_PERCENT^MDC"
            f"|||||X|||{ts}"
        ),
        f"NM|151562^MDC_RESP_RATE^MDC|1.4.1.1|{rr:.0f}|264928^MDC_DIM_RESP_PER_MIN^MDC"
        f"|||||R|||{ts}",
    ]
    rows[0] = "|" + rows[0]  # the MDS row has an empty value type
    segs = [
        f"MSH|^~\\&|{sender}|KETAMON|||{ts}||ORU^R01^ORU_R01|{control_id}|{processing_id}|2.6"
        f"|||AL|NE||||||{PCD01_PROFILE}",
        "PID|||EMU0001^^^KETAMON^PI||Emulated^Patient^^^^^L",
        "PV1||O|CHAIR^1",
        f"OBR|1|{filler}|{filler}|182777000^monitoring of patient^SNOMED-CT|||{ts}",
        *(f"OBX|{n}|{row}" for n, row in enumerate(rows, start=1)),
    ]
    return "\r".join(segs) + "\r"


class HL7Emulator(DeviceEmulator):
    """Device side of :class:`devices.protocols.hl7.HL7Protocol`."""

    name = "hl7"
    #: seconds between ORU messages (scenario time)
    period_s: ClassVar[float] = 5.0
    #: how long to wait for an ACK before the one retransmission
    ack_timeout_s: ClassVar[float] = 3.0
    #: scenario.garbage_due() window length used for artifact injection
    garbage_period_s: ClassVar[float] = 7.0

    def __init__(self, scenario: Scenario, device_epoch: datetime | None = None) -> None:
        super().__init__(scenario, device_epoch)
        # Message counter survives reconnects so MSH-10 stays unique, as on a real monitor.
        self._seq = 0
        self._rx = MllpDeframer()
        self._rng = random.Random(f"hl7-{scenario.name}")  # garbage is reproducible
        self._broken_kind = 0
        self._last_garbage_window = -1
        self.messages_sent = 0
        self.retransmits = 0
        self.broken_sent = 0
        self.garbage_bytes = 0
        self.acks: dict[str, int] = {}
        self.unmatched_acks = 0
        self._pending: _Pending | None = None
        self._next_due: float | None = None

    def reset(self) -> None:
        # A new connection: the half-received host bytes and the un-ACKed message are gone.
        self._rx.reset()
        self._pending = None
        self._next_due = None

    # ---- messages ---------------------------------------------------------------------------
    def _control_id(self) -> str:
        self._seq += 1
        return f"{DEVICE_EUI64[-8:]}{self._seq:010d}"

    def message(self, sample_t: float, control_id: str) -> str:
        """The ORU for scenario time ``sample_t`` (values sampled exactly then)."""
        v = self.scenario.vitals(sample_t)
        idx = self.scenario.cuff_index_at(sample_t)
        nibp = None
        if idx >= 0:
            c = self.scenario.cuff(idx)
            nibp = (c.sys, c.dia, c.mean, self.device_time(c.t_s))
        # Artifact: while junk is on the line the SpO2 probe reads '?' (no value, status X).
        spo2: float | None = v.spo2
        if self.scenario.garbage_due(sample_t, self.garbage_period_s):
            spo2 = None
        return build_oru(
            control_id,
            self.device_time(sample_t),
            hr=v.hr,
            pr=v.pr,
            spo2=spo2,
            rr=v.rr,
            nibp=nibp,
        )

    def _broken_frame(self, t_s: float) -> bytes:
        """A damaged MLLP block of one of four kinds, in turn (never yields a reading)."""
        text = self.message(math.floor(t_s), self._control_id())
        kind = self._broken_kind % 4
        self._broken_kind += 1
        self.broken_sent += 1
        if kind == 0:  # cut off: the sender restarted mid-message, no end block
            return b"\x0b" + text[: len(text) * 3 // 5].encode()
        if kind == 1:  # a segment id damaged: receiver answers AE
            return mllp_wrap(text.replace("\rOBX|2|", "\rOB#|2|", 1))
        if kind == 2:  # end block without its CR
            return b"\x0b" + text.encode() + b"\x1c?"
        return mllp_wrap("MSG" + text[3:])  # no MSH at all

    def _garbage(self) -> bytes:
        n = self._rng.randint(8, 40)
        junk = bytes(self._rng.randrange(256) for _ in range(n))
        self.garbage_bytes += n
        return junk

    # ---- DeviceEmulator ---------------------------------------------------------------------
    def on_host_bytes(self, data: bytes, t_s: float) -> bytes:
        for event in self._rx.feed(data):
            if event.frame is None:
                continue
            try:
                ack = hl7.parse(event.frame.decode("utf-8", "replace"))
                msa = ack.segment("MSA")
                code = str(msa.extract_field(1, 1, 1, 1, 1))
                acked_id = str(msa.extract_field(1, 2, 1, 1, 1))
            except Exception:
                self.unmatched_acks += 1
                continue
            self.acks[code] = self.acks.get(code, 0) + 1
            if self._pending is not None and acked_id == self._pending.control_id:
                # AA: delivered. AE/AR: the receiver refused it; resending the same bytes
                # would be refused again, so a real sender logs it and moves on.
                self._pending = None
            else:
                self.unmatched_acks += 1
        return b""

    def tick(self, t_s: float) -> bytes:
        out = bytearray()
        pending = self._pending
        if (
            pending is not None
            and not pending.retried
            and t_s - pending.sent_at >= self.ack_timeout_s
        ):
            pending.retried = True
            self.retransmits += 1
            out += pending.frame
        window = int(t_s / self.garbage_period_s)
        if (
            self.scenario.garbage_due(t_s, self.garbage_period_s)
            and window != self._last_garbage_window
        ):
            self._last_garbage_window = window
            out += self._garbage() + self._broken_frame(t_s) + self._garbage()
        if self._next_due is None:
            self._next_due = math.floor(t_s / self.period_s) * self.period_s
        if t_s >= self._next_due - 1e-6:
            # Sample on the monitor's own grid; after a silence only the latest is sent.
            sample = math.floor((t_s + 1e-6) / self.period_s) * self.period_s
            self._next_due = sample + self.period_s
            control_id = self._control_id()
            frame = mllp_wrap(self.message(sample, control_id))
            self._pending = _Pending(control_id, frame, t_s)  # a newer message supersedes
            self.messages_sent += 1
            out += frame
        return bytes(out)


class TcpServer(EmulatorServer):
    """Serves one emulator on a loopback TCP socket until :meth:`stop`.

    The host connects with ``TcpTransport(server.host, server.port)``. Link faults follow
    ``PtyServer``: PULLED closes the connection and the listening socket (connects are refused)
    for the window; SILENT keeps the connection but sends nothing and ignores the host. The
    port stays the same across a pulled window, as a monitor's address does.
    """

    def __init__(
        self,
        emulator: DeviceEmulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        start_at_s: float = 0.0,
        tick_s: float = 0.05,
    ) -> None:
        super().__init__(emulator, speed=speed, start_at_s=start_at_s, tick_s=tick_s)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    def _open(self) -> None:
        self._listen()
        if self._listener is None:
            raise OSError(f"cannot listen on {self.host}:{self.port}")

    def _close(self) -> None:
        self._drop_client()
        self._close_listener()

    # ---- internals --------------------------------------------------------------------------
    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Re-binding the same port right after a pulled window must not fail on TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(1)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()

    def _drop_client(self) -> None:
        sock, self._client = self._client, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        # One receiver at a time: a host that reconnects after a half-open link replaces it.
        self._drop_client()
        conn.setblocking(True)
        conn.settimeout(2.0)
        self._client = conn
        self.connections += 1
        self.emulator.reset()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = self.scenario_time()
            link = self.link_state(t)
            if link is Link.PULLED:
                self._drop_client()
                self._close_listener()
                time.sleep(self.tick_s)
                continue
            if self._listener is None:
                self._listen()
                if self._listener is None:
                    time.sleep(self.tick_s)
                    continue
            watch = [self._listener] + ([self._client] if self._client else [])
            readable, _, _ = select.select(watch, [], [], self.tick_s)
            if self._listener in readable:
                self._accept()
            client = self._client
            if client is None:
                continue
            data = b""
            if client in readable:
                try:
                    data = client.recv(65536)
                except OSError:
                    data = b""
                if not data:  # the host closed its end
                    self._drop_client()
                    continue
                self.bytes_received += len(data)
            if link is Link.SILENT:
                continue  # the monitor ignores the host and sends nothing
            t = self.scenario_time()
            out = self.emulator.on_host_bytes(data, t) if data else b""
            out += self.emulator.tick(t)
            if out:
                try:
                    client.sendall(out)
                    self.bytes_sent += len(out)
                except OSError:
                    self._drop_client()
