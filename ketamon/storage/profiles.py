"""The admin tab's writes of the clinic's profiles (issue 13): the site profile and the threshold
profile, each edited in its TOML file and audited (old → new, the reason) in the database.

Where an edited profile lives: the file ``config.toml`` names (``site_file``,
``thresholds_file``). When it names none, the admin's first save writes ``site.toml`` (or
``thresholds.toml``) beside ``config.toml``, starting from the shipped profile, and adds
``site_file = "..."`` (``thresholds_file``) at the top of ``config.toml``. Every station and
command that reads the configuration then reads the edited profile; the trail says who changed
what and why. The TOML keeps its comments (tomlkit); each value changed gets its
``<setting>_source`` (a limit its ``source``) rewritten to name the admin, the day and the reason.

A save is checked as ``ketamon thresholds check`` (and the site profile's own parser) checks a
file, before anything is written; the file is replaced atomically, and the audit rows commit
only once it is; if they cannot, the file is put back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import tomlkit
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ketamon.domain.site import SiteProfile, SiteProfileError, parse_site_profile
from ketamon.domain.thresholds import ThresholdError, ThresholdProfile, parse_profile
from ketamon.resources import read_text
from ketamon.storage.audit import acting_as, append_entry
from ketamon.storage.models import AuditAction


class ProfileSaveError(ValueError):
    """The edited profile is not valid (the message names the field) or cannot be written."""


@dataclass(frozen=True, slots=True)
class ProfileFile:
    """Where a profile is kept, and the configuration that must name it."""

    kind: str  # "site" | "thresholds"
    path: Path
    config_file: Path
    named: bool  # config.toml names it already

    @property
    def config_key(self) -> str:
        return "site_file" if self.kind == "site" else "thresholds_file"

    @property
    def entity(self) -> str:
        return "site_profile" if self.kind == "site" else "threshold_profile"

    def text(self) -> str:
        """The profile as stored now (the shipped one until the first save)."""
        if self.path.exists():
            return self.path.read_text(encoding="utf-8")
        return read_text("site.toml" if self.kind == "site" else "thresholds.toml")


def profile_file(kind: str, configured: str, config_file: Path) -> ProfileFile:
    if configured:
        return ProfileFile(kind, Path(configured).expanduser(), config_file, True)
    name = "site.toml" if kind == "site" else "thresholds.toml"
    return ProfileFile(kind, config_file.parent / name, config_file, False)


def _toml_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_toml_value(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sourced(old: str, who: str, why: str) -> str:
    base = old.split(" · changed by ")[0]
    return f"{base} · changed by {who} on {date.today().isoformat()}: {why}"


def edit_site_text(
    text: str, current: SiteProfile, changes: Mapping[str, Any], who: str, why: str
) -> str:
    """``text`` with ``changes`` (setting → value) applied; each one's source names ``who``."""
    from ketamon.domain.site import setting_sections

    doc = tomlkit.parse(text)
    where = {k: section for section, keys in setting_sections().items() for k in keys}
    for key, value in changes.items():
        section = where.get(key)
        if section is None:
            raise ProfileSaveError(f"site profile: unknown setting {key!r}")
        if section not in doc:  # an optional table the file leaves out: written whole
            table = tomlkit.table()
            for k in setting_sections()[section]:
                table[k] = _toml_value(getattr(current, k))
                table[f"{k}_source"] = current.source(k)
            doc[section] = table
        table = doc[section]
        table[key] = _toml_value(value)
        table[f"{key}_source"] = _sourced(str(table.get(f"{key}_source", "")), who, why)
    return tomlkit.dumps(doc)


def edit_thresholds_text(text: str, changes: Mapping[str, Any], who: str, why: str) -> str:
    """``changes`` keyed ``limit.<id>.<low|high|priority>``, ``predose_advisory.<key>`` or
    ``bp_rise.<key>``; a low or high of None removes that bound."""
    doc = tomlkit.parse(text)
    for name, value in changes.items():
        parts = name.split(".")
        if parts[0] == "limit" and len(parts) == 3:
            tables = [t for t in doc.get("limit", []) if t.get("id") == parts[1]]
            if not tables:
                raise ProfileSaveError(f"threshold profile: no limit {parts[1]!r}")
            table, key = tables[0], parts[2]
        elif parts[0] in ("predose_advisory", "bp_rise") and len(parts) == 2:
            table, key = doc[parts[0]], parts[1]
        else:
            raise ProfileSaveError(f"threshold profile: unknown setting {name!r}")
        if value is None:
            if key in table:
                del table[key]
        else:
            table[key] = _toml_value(value)
        table["source"] = _sourced(str(table.get("source", "")), who, why)
    return tomlkit.dumps(doc)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _name_in_config(pf: ProfileFile) -> str | None:
    """Add ``site_file = "..."`` at the top of config.toml (top-level keys come before any
    table); returns the old text to put back on failure (None: there was no file)."""
    cfg = pf.config_file
    old = cfg.read_text(encoding="utf-8") if cfg.exists() else None
    line = f"{pf.config_key} = {json.dumps(str(pf.path))}  # written by the admin tab\n"
    _write_atomic(cfg, line + (old or ""))
    return old


def save_profile(
    engine: Engine,
    pf: ProfileFile,
    new_text: str,
    changes: Mapping[str, tuple[Any, Any]],
    *,
    user_id: int,
    why: str,
) -> ThresholdProfile | SiteProfile:
    """Check ``new_text``, write it to ``pf.path`` and audit each change (setting → (old, new))
    as ``user_id`` with ``why``, in one transaction committed only once the file is written."""
    origin = str(pf.path)
    try:
        profile: ThresholdProfile | SiteProfile = (
            parse_site_profile(new_text, origin)
            if pf.kind == "site"
            else parse_profile(new_text, origin)
        )
    except (SiteProfileError, ThresholdError) as exc:
        raise ProfileSaveError(str(exc)) from None
    before = pf.path.read_text(encoding="utf-8") if pf.path.exists() else None
    digest = hashlib.sha256(new_text.encode()).hexdigest()
    with Session(engine) as s:
        with acting_as(s, user_id):
            for key, (old, new) in changes.items():
                append_entry(
                    s,
                    action=AuditAction.UPDATE,
                    entity=pf.entity,
                    field=key[:64],
                    old=old,
                    new=new,
                    why=why,
                )
            append_entry(
                s,
                action=AuditAction.UPDATE,
                entity=pf.entity,
                field="file",
                old=None if before is None else hashlib.sha256(before.encode()).hexdigest(),
                new={"path": origin, "sha256": digest},
                why=why,
            )
        config_before: str | None = None
        try:
            _write_atomic(pf.path, new_text)
            if not pf.named:
                config_before = _name_in_config(pf)
        except OSError as exc:
            s.rollback()
            raise ProfileSaveError(f"{origin}: cannot write the profile: {exc}") from None
        try:
            s.commit()
        except BaseException:
            _undo(pf, before, config_before)
            raise
    return profile


def _undo(pf: ProfileFile, before: str | None, config_before: str | None) -> None:
    if before is None:
        pf.path.unlink(missing_ok=True)
    else:
        _write_atomic(pf.path, before)
    if not pf.named and pf.config_file.exists():
        if config_before is None:
            pf.config_file.unlink(missing_ok=True)
        else:
            _write_atomic(pf.config_file, config_before)
