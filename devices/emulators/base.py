"""Running an emulator on a pseudo-terminal, following a scenario's physiology and link faults.

An emulator is *sans-I/O* like a protocol: :meth:`DeviceEmulator.on_host_bytes` answers what the
host sent, :meth:`DeviceEmulator.tick` produces what the device sends on its own.
:class:`PtyServer`
owns the pty, the scenario clock and the faults (cable pulled = the pty closes and a new one opens
behind the same symlink; silent = the monitor stops sending).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import select
import threading
import time
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Self

from devices.scenarios import Link, Scenario


class DeviceEmulator(abc.ABC):
    """The device side of one protocol."""

    name: ClassVar[str]

    def __init__(self, scenario: Scenario, device_epoch: datetime | None = None) -> None:
        self.scenario = scenario
        #: the device's wall clock at scenario time 0
        self.device_epoch = device_epoch or datetime.now(UTC)

    def device_time(self, t_s: float) -> datetime:
        return self.device_epoch + timedelta(seconds=t_s)

    @abc.abstractmethod
    def on_host_bytes(self, data: bytes, t_s: float) -> bytes:
        """Bytes the host sent; return the device's reply (may be empty)."""

    @abc.abstractmethod
    def tick(self, t_s: float) -> bytes:
        """Called about 20 times a second; return what the device sends on its own now."""

    def reset(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """A new connection (the cable was plugged back in): drop association state."""


class Pty:
    """A raw-mode pseudo-terminal pair; the host opens :attr:`path` with pyserial."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:  # EIO: nobody has the slave open
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> int:
        """Write what the line takes; like a real line with nobody listening, excess is lost."""
        try:
            return os.write(self.master, data)
        except (BlockingIOError, OSError):
            return 0

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class EmulatorServer(abc.ABC):
    """What every emulator server shares: the scenario clock, a manual link override for
    tests, and a serving thread with a bounded stop. Subclasses open and close their endpoint
    (a pty, a TCP listener) and run the serving loop."""

    def __init__(
        self,
        emulator: DeviceEmulator,
        *,
        speed: float = 1.0,
        start_at_s: float = 0.0,
        tick_s: float = 0.05,
    ) -> None:
        self.emulator = emulator
        self.speed = speed
        self.start_at_s = start_at_s
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._forced: Link | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.connections = 0

    def scenario_time(self) -> float:
        return self.start_at_s + (time.monotonic() - self._t0) * self.speed

    def link_state(self, t: float) -> Link:
        return self._forced or self.emulator.scenario.link(t)

    def force_link(self, state: Link | None) -> None:
        """Override the scenario's link state (tests pull the cable by hand with this)."""
        self._forced = state

    def start(self) -> Self:
        self._t0 = time.monotonic()
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"emulator-{self.emulator.name}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._t0 = time.monotonic()
        self._open()
        self._run()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    @abc.abstractmethod
    def _open(self) -> None:
        """Make the endpoint the host connects to."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Take the endpoint away (stop)."""

    @abc.abstractmethod
    def _run(self) -> None:
        """Serve until stopped, honouring :meth:`link_state`."""


class PtyServer(EmulatorServer):
    """Serves one emulator on a pty until :meth:`stop`.

    ``speed`` runs scenario time faster than the wall clock (tests). ``link`` (optional) is a
    symlink kept pointing at the current pty, so a restored cable reappears under the same path,
    as a USB-serial adapter does on a real machine.
    """

    def __init__(
        self,
        emulator: DeviceEmulator,
        *,
        speed: float = 1.0,
        link: str | Path | None = None,
        start_at_s: float = 0.0,
        tick_s: float = 0.05,
    ) -> None:
        super().__init__(emulator, speed=speed, start_at_s=start_at_s, tick_s=tick_s)
        self.link = Path(link) if link else None
        self._pty: Pty | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        """The path the host should open (the symlink if there is one)."""
        if self.link is not None:
            return str(self.link)
        with self._lock:
            if self._pty is None:
                raise RuntimeError("pty is closed (cable pulled)")
            return self._pty.path

    def _open(self) -> None:
        self._open_pty()

    def _close(self) -> None:
        self._close_pty()
        if self.link is not None:
            with contextlib.suppress(OSError):
                self.link.unlink()

    # ---- internals --------------------------------------------------------------------------
    def _open_pty(self) -> None:
        pty = Pty()
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(OSError):
                tmp.unlink()
            os.symlink(pty.path, tmp)
            os.replace(tmp, self.link)
        with self._lock:
            self._pty = pty
        self.connections += 1
        self.emulator.reset()

    def _close_pty(self) -> None:
        with self._lock:
            pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = self.scenario_time()
            link = self.link_state(t)
            if link is Link.PULLED:
                if self._pty is not None:
                    self._close_pty()
                    # Like an unplugged USB adapter, the device path disappears; otherwise a
                    # pty reused by another process could answer behind the stale symlink.
                    if self.link is not None:
                        with contextlib.suppress(OSError):
                            self.link.unlink()
                time.sleep(self.tick_s)
                continue
            if self._pty is None:
                self._open_pty()
            pty = self._pty
            assert pty is not None
            data = pty.read(self.tick_s)
            t = self.scenario_time()
            if link is Link.SILENT:
                continue  # the monitor ignores the host and sends nothing
            out = b""
            if data:
                self.bytes_received += len(data)
                out += self.emulator.on_host_bytes(data, t)
            out += self.emulator.tick(t)
            if out:
                self.bytes_sent += pty.write(out)
