"""What the admin tab reads and writes (issue 13), on the station's command thread: accounts
(add, disable, reset a password, unlock) and the clinic's site and threshold profiles
(:mod:`ketamon.storage.profiles`). Every change is audited as the admin, with the reason."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ketamon.domain.roles import Actor
from ketamon.domain.site import SiteProfile, parse_site_profile
from ketamon.domain.thresholds import ThresholdProfile, parse_profile
from ketamon.storage import profiles
from ketamon.storage.audit import acting_as, reason
from ketamon.storage.emergency import Emergency, emergencies, review_emergency
from ketamon.storage.users import (
    UserError,
    UserInfo,
    create_user,
    disable_user,
    list_users,
    reset_password,
    unlock_user,
)


class AdminStore:
    """The admin presenter's store (``ketamon.presenters.admin.AdminStore``)."""

    def __init__(
        self, engine: Engine, site_file: profiles.ProfileFile, thresholds: profiles.ProfileFile
    ) -> None:
        self.engine, self.site_file, self.thresholds_file = engine, site_file, thresholds

    # ---- accounts --------------------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        return list_users(self.engine, include_system=False)

    def _as(self, by: Actor, why: str) -> AbstractContextManager[Session]:
        return _acting(self.engine, by.id, why)

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
    ) -> UserInfo:
        with self._as(by, why) as s:
            user = create_user(
                s,
                username=username,
                full_name=full_name,
                role=role,
                password=password,
                credentials=credentials,
            )
            name = user.username
        return self._one(name)

    def disable_user(self, by: Actor, username: str, why: str) -> UserInfo:
        with self._as(by, why) as s:
            name = disable_user(s, username, why=why).username
        return self._one(name)

    def unlock_user(self, by: Actor, username: str, why: str) -> UserInfo:
        with self._as(by, why) as s:
            name = unlock_user(s, username, why=why).username
        return self._one(name)

    def reset_password(
        self, by: Actor, username: str, password: str, why: str, min_length: int
    ) -> UserInfo:
        with self._as(by, why) as s:
            name = reset_password(s, username, password, why=why, min_length=min_length).username
        return self._one(name)

    def emergencies(self) -> list[Emergency]:
        """Every break-glass sign-in, newest first (open ones flagged on the review board)."""
        return emergencies(self.engine)

    def review_emergency(self, by: Actor, access_id: int, note: str) -> Emergency:
        with Session(self.engine) as s, s.begin():
            return review_emergency(s, access_id, note, admin_id=by.id)

    def _one(self, username: str) -> UserInfo:
        for u in self.users():
            if u.username == username:
                return u
        raise UserError(f"no user {username!r}")

    # ---- profiles ----------------------------------------------------------------------------
    def site_profile(self) -> tuple[str, SiteProfile]:
        pf = self.site_file
        return str(pf.path), parse_site_profile(pf.text(), str(pf.path))

    def thresholds_profile(self) -> tuple[str, ThresholdProfile]:
        pf = self.thresholds_file
        return str(pf.path), parse_profile(pf.text(), str(pf.path))

    def save_site(
        self, by: Actor, changes: Mapping[str, tuple[Any, Any]], why: str
    ) -> SiteProfile:
        pf = self.site_file
        _, current = self.site_profile()
        who = f"{by.full_name} ({by.username})"
        text = profiles.edit_site_text(
            pf.text(), current, {k: new for k, (_old, new) in changes.items()}, who, why
        )
        out = profiles.save_profile(self.engine, pf, text, changes, user_id=by.id, why=why)
        assert isinstance(out, SiteProfile)
        return out

    def save_thresholds(
        self, by: Actor, changes: Mapping[str, tuple[Any, Any]], why: str
    ) -> ThresholdProfile:
        pf = self.thresholds_file
        who = f"{by.full_name} ({by.username})"
        text = profiles.edit_thresholds_text(
            pf.text(), {k: new for k, (_old, new) in changes.items()}, who, why
        )
        out = profiles.save_profile(self.engine, pf, text, changes, user_id=by.id, why=why)
        assert isinstance(out, ThresholdProfile)
        return out


@contextmanager
def _acting(engine: Engine, user_id: int, why: str) -> Iterator[Session]:
    """One transaction acting as the admin, with the reason on every change."""
    with Session(engine) as s, s.begin(), acting_as(s, user_id), reason(s, why):
        yield s
