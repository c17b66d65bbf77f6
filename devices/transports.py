"""Transports: a pyserial port, a TCP socket, a file of recorded bytes, or nothing (simulator).

A transport moves bytes and nothing else. ``read`` returns ``b""`` on a timeout and raises
:class:`ConnectionLost` when the far end is gone (cable pulled, USB adapter removed, socket
closed), so the supervisor can go back to connecting.
"""

from __future__ import annotations

import contextlib
import socket
import termios
import time
from pathlib import Path
from typing import IO, Any, Protocol

from devices.protocols.base import SerialSettings


class TransportError(Exception):
    """The transport could not be opened (port missing, busy, refused)."""


class ConnectionLost(TransportError):
    """The link was open and went away."""


class Transport(Protocol):
    description: str

    def open(self) -> None: ...

    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    """A pyserial port; works the same on a USB-serial adapter and on a pseudo-terminal."""

    def __init__(self, path: str, settings: SerialSettings, raw_log: IO[bytes] | None = None):
        self.path = path
        self.settings = settings
        self.description = f"{path} ({settings.describe()})"
        self._raw_log = raw_log
        self._port: Any = None  # serial.Serial; pyserial ships no type hints

    def open(self) -> None:
        import serial  # pyserial

        s = self.settings
        try:
            self._port = serial.Serial(
                self.path,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity.value,
                stopbits=s.stopbits,
                rtscts=s.rtscts,
                xonxoff=s.xonxoff,
                timeout=0.05,  # the supervisor's read timeout: no re-configuration per read
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open serial port {self.path}: {exc}") from exc

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        port = self._port
        if port is None:
            raise ConnectionLost(f"{self.path} is not open")
        try:
            # Setting the timeout makes pyserial re-apply every termios setting; on a pty with
            # even parity that fails (EINVAL) after the open succeeded. Only set it on change.
            if port.timeout != timeout:
                port.timeout = timeout
            first = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            rest = port.read(min(waiting, max_bytes - 1)) if waiting else b""
        except (serial.SerialException, OSError, termios.error) as exc:
            # A pulled USB cable and a closed pty master both end up here.
            raise ConnectionLost(f"{self.path}: {exc}") from exc
        data = bytes(first + rest)
        if self._raw_log is not None:
            self._raw_log.write(data)
            self._raw_log.flush()
        return data

    def write(self, data: bytes) -> None:
        import serial

        if not data:
            return
        port = self._port
        if port is None:
            raise ConnectionLost(f"{self.path} is not open")
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()


class _SocketLink:
    """Reading and writing one connected socket; a closed or failed socket is a lost link."""

    description: str
    _raw_log: IO[bytes] | None
    _sock: socket.socket | None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"{self.description}: not connected")
        sock.settimeout(timeout)
        try:
            data = sock.recv(max_bytes)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise ConnectionLost(f"{self.description}: {exc}") from exc
        if not data:
            raise ConnectionLost(f"{self.description}: closed by peer")
        if self._raw_log is not None:
            self._raw_log.write(data)
            self._raw_log.flush()
        return data

    def write(self, data: bytes) -> None:
        if not data:
            return
        sock = self._sock
        if sock is None:
            raise ConnectionLost(f"{self.description}: not connected")
        try:
            sock.sendall(data)
        except OSError as exc:
            raise ConnectionLost(f"{self.description}: {exc}") from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class TcpTransport(_SocketLink):
    """A TCP client socket (HL7 over MLLP from a monitor or gateway that listens)."""

    def __init__(self, host: str, port: int, raw_log: IO[bytes] | None = None):
        self.host, self.port = host, port
        self.description = f"tcp://{host}:{port}"
        self._raw_log = raw_log
        self._sock = None

    def open(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=3.0)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc


class TcpListenTransport(_SocketLink):
    """Listens on HOST:PORT and takes one sender at a time (HL7 senders usually connect to the
    receiver). A sender that disconnects is a lost link; the next open() waits for another."""

    def __init__(self, host: str, port: int, raw_log: IO[bytes] | None = None):
        self.host, self.port = host, port
        self.description = f"listening on {host}:{port}"
        self._raw_log = raw_log
        self._server: socket.socket | None = None
        self._sock = None

    def _listen(self) -> socket.socket:
        if self._server is None:
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                srv.bind((self.host, self.port))
            except OSError as exc:
                srv.close()
                raise TransportError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
            srv.listen(1)
            self.port = srv.getsockname()[1]  # the real port when 0 was asked for
            self.description = f"listening on {self.host}:{self.port}"
            self._server = srv
        return self._server

    def open(self) -> None:
        srv = self._listen()
        srv.settimeout(1.0)
        try:
            conn, peer = srv.accept()
        except TimeoutError as exc:
            raise TransportError(f"no sender has connected to {self.host}:{self.port}") from exc
        except OSError as exc:
            raise TransportError(f"{self.description}: {exc}") from exc
        self._sock = conn
        self.description = f"{peer[0]}:{peer[1]} → {self.host}:{self.port}"

    def shutdown(self) -> None:
        """Stop listening (the supervisor's close() only drops the current sender)."""
        self.close()
        srv, self._server = self._server, None
        if srv is not None:
            srv.close()


class ReplayTransport:
    """Plays back a file of recorded device→host bytes; writes are discarded.

    ``chunk`` bytes are returned per read; ``bytes_per_s`` (if set) paces playback like the line.
    After the end of the file the link reports :class:`ConnectionLost` with ``eof`` set.
    """

    def __init__(self, path: str | Path, chunk: int = 4096, bytes_per_s: float | None = None):
        self.path = Path(path)
        self.description = f"replay of {self.path}"
        self.chunk = chunk
        self.bytes_per_s = bytes_per_s
        self._data = b""
        self._pos = 0
        self.eof = False

    def open(self) -> None:
        try:
            self._data = self.path.read_bytes()
        except OSError as exc:
            raise TransportError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        self._pos = 0

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self._pos >= len(self._data):
            self.eof = True
            raise ConnectionLost(f"end of {self.path}")
        n = min(self.chunk, max_bytes)
        data = self._data[self._pos : self._pos + n]
        self._pos += len(data)
        if self.bytes_per_s:
            time.sleep(len(data) / self.bytes_per_s)
        return data

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class NullTransport:
    """No wire at all: the simulator produces readings from :meth:`DeviceProtocol.poll`."""

    description = "simulator"

    def open(self) -> None:
        return None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        time.sleep(timeout)
        return b""

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None
