"""Writing an export so that it appears whole or not at all.

The bytes go to a temporary file in the target's own folder (so the rename cannot cross file
systems), are flushed to the disk, and the temporary file is renamed over the target. Whatever
fails (a missing folder, no permission, a read-only or full disk) leaves no file behind, and the
error names the path and the reason in words.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


class ExportError(Exception):
    """An export could not be made or written; the message says what and where."""


class ExportRefused(ExportError):
    """The session cannot be exported in this format (e.g. it is not signed)."""


_REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "the path is a folder",
    errno.EFBIG: "the file is too large for this file system",
}


def describe_os_error(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def write_atomic(path: str | Path, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to ``path`` through a temporary file and a rename; returns the size.

    Raises :class:`ExportError` (the target untouched, no temporary file left) on any failure.
    """
    target = Path(path)
    if target.is_dir():
        raise ExportError(f"cannot write {target}: {_REASONS[errno.EISDIR]}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"cannot write {target}: the folder {folder} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {describe_os_error(exc)}") from exc
    tmp = Path(tmp_name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"cannot write {target}: {describe_os_error(exc)}; nothing was written"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return size
