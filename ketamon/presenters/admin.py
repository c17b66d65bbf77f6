"""The admin tab's presenter (issue 13): accounts, the clinic's threshold profile and the site
profile. Admin role only: every request checks the signed-in user's role here (not only in the
widgets) and wants a reason; the writes run on the command thread and are audited as the admin
with old → new and the reason (``ketamon.storage.admin``). Values typed as text are turned
into the setting's type here; the profile's own parser then checks them all, as
``ketamon thresholds check`` does, before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from ketamon.core.session import Refused
from ketamon.domain.roles import Action, Actor, allowed, refusal
from ketamon.domain.site import SiteProfile, setting_sections
from ketamon.domain.thresholds import Priority, ThresholdProfile
from ketamon.presenters.runner import CommandRunner, Pending


class AdminStore(Protocol):
    """What the presenter reads and writes (``ketamon.storage.admin.AdminStore``)."""

    def users(self) -> Sequence[Any]: ...

    def add_user(
        self,
        by: Actor,
        *,
        username: str,
        full_name: str,
        role: str,
        password: str,
        credentials: str,
        why: str,
    ) -> Any: ...

    def disable_user(self, by: Actor, username: str, why: str) -> Any: ...

    def unlock_user(self, by: Actor, username: str, why: str) -> Any: ...

    def reset_password(
        self, by: Actor, username: str, password: str, why: str, min_length: int
    ) -> Any: ...

    def emergencies(self) -> Sequence[Any]: ...

    def review_emergency(self, by: Actor, access_id: int, note: str) -> Any: ...

    def site_profile(self) -> tuple[str, SiteProfile]: ...

    def thresholds_profile(self) -> tuple[str, ThresholdProfile]: ...

    def save_site(
        self, by: Actor, changes: Mapping[str, tuple[Any, Any]], why: str
    ) -> SiteProfile: ...

    def save_thresholds(
        self, by: Actor, changes: Mapping[str, tuple[Any, Any]], why: str
    ) -> ThresholdProfile: ...


@dataclass(frozen=True, slots=True)
class Field:
    """One editable value: its name (``rems.hcp_phone``, ``limit.spo2.low``), the value as
    text, and where it comes from."""

    name: str
    text: str
    source: str


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Priority):
        return value.label
    return str(value)


def typed(name: str, current: Any, text: str) -> Any:
    """``text`` as a value of the type ``current`` has (bool, number list, int, float, str);
    a refusal names the setting and what was typed."""
    t = text.strip()
    try:
        if isinstance(current, bool):
            low = t.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if isinstance(current, tuple):
            return tuple(float(x) for x in t.replace(";", ",").split(",") if x.strip())
        if isinstance(current, int):
            return int(t)
        if isinstance(current, float):
            v = float(t)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        kind = (
            "true or false"
            if isinstance(current, bool)
            else "numbers separated by commas"
            if isinstance(current, tuple)
            else "a whole number"
            if isinstance(current, int)
            else "a number"
        )
        raise Refused([f"{name}: must be {kind}, got '{text}'"]) from None
    return t


class AdminPresenter(QObject):
    sig_site_saved = Signal(object)  # SiteProfile, on the UI thread
    sig_thresholds_saved = Signal(object)  # ThresholdProfile

    def __init__(
        self,
        runner: CommandRunner,
        user: Callable[[], Actor],
        store: AdminStore,
        *,
        password_min_length: Callable[[], int] = lambda: 12,
    ) -> None:
        super().__init__()
        self._runner, self._user, self._store = runner, user, store
        self._min_length = password_min_length

    # ---- who may ---------------------------------------------------------------------------
    def may(self, action: Action = Action.USERS) -> bool:
        try:
            return allowed(self._user().role, action)
        except Refused:
            return False

    def _admin(self, action: Action, why: str | None = "") -> Actor:
        """The signed-in admin, or a refusal (another role, the screen locked, no reason)."""
        actor = self._user()  # Refused while locked
        denied = refusal(actor.role, action)
        if denied:
            raise Refused([denied])
        if why is not None and not why.strip():
            raise Refused(["Give the reason for the change (it is kept in the audit trail)"])
        return actor

    def _submit(
        self, action: Action, why: str | None, run: Callable[[Actor], Any], what: str
    ) -> Pending[Any]:
        try:
            actor = self._admin(action, why)
        except Refused as exc:
            p: Pending[Any] = Pending(what)
            p.reasons = exc.reasons
            p._resolve()
            return p

        def job() -> Any:
            try:
                return run(actor)
            except ValueError as exc:  # the store's message names what is wrong
                raise Refused([str(exc)]) from None

        return self._runner.submit(job, what)

    # ---- accounts --------------------------------------------------------------------------
    def users(self) -> Pending[Any]:
        store = self._store
        return self._submit(Action.USERS, None, lambda _a: list(store.users()), "users")

    def add_user(
        self,
        username: str,
        full_name: str,
        role: str,
        password: str,
        credentials: str,
        why: str,
    ) -> Pending[Any]:
        store, n = self._store, self._min_length()

        def run(a: Actor) -> Any:
            if len(password) < n:
                raise Refused([f"The password must be at least {n} characters long"])
            return store.add_user(
                a,
                username=username,
                full_name=full_name,
                role=role,
                password=password,
                credentials=credentials,
                why=why.strip(),
            )

        return self._submit(Action.USERS, why, run, "add user")

    def disable_user(self, username: str, why: str) -> Pending[Any]:
        store = self._store

        def run(a: Actor) -> Any:
            if username.strip().lower() == a.username:
                raise Refused(["You cannot disable your own account"])
            return store.disable_user(a, username, why.strip())

        return self._submit(Action.USERS, why, run, "disable user")

    def unlock_user(self, username: str, why: str) -> Pending[Any]:
        store = self._store
        return self._submit(
            Action.USERS, why, lambda a: store.unlock_user(a, username, why.strip()), "unlock"
        )

    def reset_password(self, username: str, password: str, why: str) -> Pending[Any]:
        store, n = self._store, self._min_length()
        return self._submit(
            Action.USERS,
            why,
            lambda a: store.reset_password(a, username, password, why.strip(), n),
            "reset password",
        )

    # ---- emergency access (break-glass) ------------------------------------------------------
    def emergencies(self) -> Pending[Any]:
        store = self._store
        return self._submit(
            Action.USERS, None, lambda _a: list(store.emergencies()), "emergencies"
        )

    def review_emergency(self, access_id: int, note: str) -> Pending[Any]:
        """An admin's review of a break-glass sign-in (what they found); audited."""
        store = self._store
        return self._submit(
            Action.USERS,
            note,
            lambda a: store.review_emergency(a, access_id, note.strip()),
            "review emergency access",
        )

    # ---- the site profile ------------------------------------------------------------------
    def site_fields(self) -> Pending[Any]:
        """(path, [Field]) of the site profile as stored now."""
        store = self._store

        def run(_a: Actor) -> tuple[str, list[Field]]:
            path, p = store.site_profile()
            return path, [
                Field(f"{section}.{key}", as_text(getattr(p, key)), p.source(key))
                for section, keys in setting_sections().items()
                for key in keys
            ]

        return self._submit(Action.SITE_SETTINGS, None, run, "site profile")

    def save_site(self, texts: Mapping[str, str], why: str) -> Pending[Any]:
        """Save the settings typed (``section.key`` → text); only those that differ count."""
        store = self._store

        def run(a: Actor) -> SiteProfile:
            _path, current = store.site_profile()
            changes: dict[str, tuple[Any, Any]] = {}
            for name, text in texts.items():
                key = name.split(".")[-1]
                old = getattr(current, key, None)
                if old is None or key in ("name", "sources", "primary_sources"):
                    raise Refused([f"{name}: not a setting the admin tab edits"])
                new = typed(name, old, text)
                if new != old:
                    changes[key] = (_plain(old), _plain(new))
            if not changes:
                raise Refused(["Nothing was changed"])
            return store.save_site(a, changes, why.strip())

        p = self._submit(Action.SITE_SETTINGS, why, run, "save site profile")
        return p.on_done(lambda q: self.sig_site_saved.emit(q.result) if q.ok else None)

    # ---- the clinic's threshold profile ------------------------------------------------------
    def threshold_fields(self) -> Pending[Any]:
        store = self._store

        def run(_a: Actor) -> tuple[str, list[Field]]:
            path, p = store.thresholds_profile()
            out = []
            for lim in p.limits:
                for k in ("low", "high", "priority"):
                    out.append(Field(f"limit.{lim.id}.{k}", as_text(getattr(lim, k)), lim.source))
            a, r = p.predose_advisory, p.bp_rise
            out += [
                Field("predose_advisory.sys_above", as_text(a.sys_above), a.source),
                Field("predose_advisory.dia_above", as_text(a.dia_above), a.source),
                Field("bp_rise.sys_delta", as_text(r.sys_delta), r.source),
                Field("bp_rise.dia_delta", as_text(r.dia_delta), r.source),
                Field("bp_rise.priority", as_text(r.priority), r.source),
            ]
            return path, out

        return self._submit(Action.CLINIC_LIMITS, None, run, "threshold profile")

    def save_thresholds(self, texts: Mapping[str, str], why: str) -> Pending[Any]:
        """Save the values typed (``limit.<id>.low`` …; an empty low or high removes it)."""
        store = self._store

        def run(a: Actor) -> ThresholdProfile:
            _path, current = store.thresholds_profile()
            old_values = _threshold_values(current)
            changes: dict[str, tuple[Any, Any]] = {}
            for name, text in texts.items():
                if name not in old_values:
                    raise Refused([f"{name}: not a threshold setting"])
                old = old_values[name]
                t = text.strip()
                new: Any
                if name.endswith(".priority"):
                    if t.lower() not in ("high", "medium", "low"):
                        raise Refused([f"{name}: must be high, medium or low, got '{text}'"])
                    new = t.lower()
                elif t == "" and name.endswith((".low", ".high")):
                    new = None
                else:
                    new = typed(name, 0.0, t)
                if new != old:
                    changes[name] = (old, new)
            if not changes:
                raise Refused(["Nothing was changed"])
            return store.save_thresholds(a, changes, why.strip())

        p = self._submit(Action.CLINIC_LIMITS, why, run, "save thresholds")
        return p.on_done(lambda q: self.sig_thresholds_saved.emit(q.result) if q.ok else None)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _threshold_values(p: ThresholdProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lim in p.limits:
        out[f"limit.{lim.id}.low"] = lim.low
        out[f"limit.{lim.id}.high"] = lim.high
        out[f"limit.{lim.id}.priority"] = lim.priority.label
    a, r = p.predose_advisory, p.bp_rise
    out["predose_advisory.sys_above"] = a.sys_above
    out["predose_advisory.dia_above"] = a.dia_above
    out["bp_rise.sys_delta"] = r.sys_delta
    out["bp_rise.dia_delta"] = r.dia_delta
    out["bp_rise.priority"] = r.priority.label
    return out
