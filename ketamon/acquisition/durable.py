"""The ``--raw`` capture file: a copy of the received bytes that never stops a recording.

The transports write every received chunk to it. A write that fails (full disk, a removed
drive) is reported once (warning and ``on_failure``, which raises a technical flag) and the
capture stops; the recording goes on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import IO

log = logging.getLogger(__name__)


class RawCapture:
    """A binary file-like sink whose failures never reach the transport."""

    def __init__(self, f: IO[bytes], name: str) -> None:
        self._f: IO[bytes] | None = f
        self.name = name
        self.failed: str | None = None
        self.bytes_written = 0
        #: called once, in the device thread, with why the capture stopped
        self.on_failure: Callable[[str], object] | None = None

    def write(self, data: bytes) -> int:
        f = self._f
        if f is None:
            return 0
        try:
            n = f.write(data)
            self.bytes_written += len(data)
            return n
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return 0

    def flush(self) -> None:
        f = self._f
        if f is None:
            return
        try:
            f.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        why = getattr(exc, "strerror", None) or str(exc)
        self.failed = f"{self.name}: {why}"
        log.warning("raw capture to %s stopped (%s); the recording goes on", self.name, why)
        f, self._f = self._f, None
        if f is not None:
            with contextlib.suppress(OSError, ValueError):
                f.close()
        cb = self.on_failure
        if cb is not None:
            try:
                cb(self.failed)
            except Exception:
                log.exception("raw capture failure listener failed")

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except (OSError, ValueError) as exc:
                log.warning("raw capture %s could not be closed: %s", self.name, exc)
