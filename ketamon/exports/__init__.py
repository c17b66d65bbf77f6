"""Documents ketamon writes from the record: the REMS form (``pmf_pdf``) and the session exports
(PDF, tidy CSV, JSON, FHIR R4) and the HL7 v2 ORU^R01 messages. Qt's QtGui only, no widgets and
no database: callers pass in what they read (the session's entries and readings).

:func:`export_session` is what the command line and the review screen call (off the UI
thread): it builds the export from the record, writes it through a temporary file and a rename,
and returns what it wrote; the caller audits it (``ketamon.storage.outbox.record_export``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.readings import Reading
from ketamon.domain.record import SessionEntry
from ketamon.exports.files import ExportError, ExportRefused, write_atomic

#: export formats and their default file extensions
FORMATS = {"pdf": "pdf", "csv": "zip", "json": "json", "fhir": "json"}
#: vital-sign Observations validated at export time (the tests validate whole bundles)
VALIDATE_VITALS = 1000
#: formats that need a signed session, and why
NEEDS_SIGNATURE = {
    "fhir": "the FHIR bundle carries the physician's signature in its Provenance",
}

__all__ = [
    "FORMATS",
    "NEEDS_SIGNATURE",
    "ExportError",
    "ExportRefused",
    "ExportResult",
    "default_name",
    "export_session",
]


@dataclass(frozen=True, slots=True)
class ExportResult:
    session_id: int
    format: str
    paths: tuple[Path, ...]
    bytes: int
    sha256: str  # of the file (a CSV folder: of the three files in order)
    counts: dict[str, int] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "format": self.format,
            "paths": [str(p) for p in self.paths],
            "bytes": self.bytes,
            "sha256": self.sha256,
            "counts": self.counts,
        }


def default_name(session_id: int, fmt: str) -> str:
    suffix = "-fhir" if fmt == "fhir" else ""
    return f"session-{session_id}{suffix}.{FORMATS[fmt]}"


def export_session(
    entries: Iterable[SessionEntry],
    readings: Iterable[Reading],
    fmt: str,
    path: str | Path,
    *,
    generated_at: datetime | None = None,
    site_name: str = "",
    exported_by: str = "",
    page_size: str = "a4",
    downsample_s: float | None = None,
    validate: bool = True,
) -> ExportResult:
    """Export one session (its entries, in order, and its stored readings) to ``path``.

    Raises :class:`ExportRefused` when the format needs what the session lacks (a signature),
    :class:`ExportError` when the file cannot be written (nothing is left behind then).
    """
    from ketamon.exports.record import SessionExport

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if downsample_s is not None and downsample_s <= 0:
        raise ExportError(f"--downsample must be a positive number of seconds, got {downsample_s}")
    x = SessionExport.build(
        entries,
        readings,
        generated_at=generated_at or datetime.now(UTC),
        site_name=site_name,
        exported_by=exported_by,
    )
    if fmt in NEEDS_SIGNATURE and not x.state.signed:
        raise ExportRefused(
            f"session {x.session_id} is not signed, and the {fmt} export needs a signed "
            f"session ({NEEDS_SIGNATURE[fmt]}); sign it in the review desk first"
        )
    target = Path(path)
    counts = {"entries": len(x.entries), "readings": len(x.readings)}
    if fmt == "csv":
        from ketamon.exports.tidy import write_csv

        paths = write_csv(x, target, downsample_s)
        digest = hashlib.sha256()
        size = 0
        for p in paths:
            data = p.read_bytes()
            digest.update(data)
            size += len(data)
        counts["files"] = len(paths)
        return ExportResult(x.session_id, fmt, tuple(paths), size, digest.hexdigest(), counts)
    if fmt == "pdf":
        from ketamon.exports.session_pdf import session_pdf_bytes

        data = session_pdf_bytes(x, page_size)
    elif fmt == "json":
        from ketamon.exports.record import session_document

        data = _json_bytes(session_document(x))
    else:
        from ketamon.exports.fhir import fhir_bundle, validate_bundle

        bundle = fhir_bundle(x, downsample_s)
        if validate:  # every kind of resource, and the first vital signs (all: in the tests)
            validate_bundle(bundle, vital_sample=VALIDATE_VITALS)
        counts["resources"] = len(bundle["entry"])
        data = (json.dumps(bundle, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    size = write_atomic(target, [data])
    return ExportResult(
        x.session_id, fmt, (target,), size, hashlib.sha256(data).hexdigest(), counts
    )


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
