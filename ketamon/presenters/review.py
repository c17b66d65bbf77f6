"""The review presenter: finished sessions for the physician's (and auditor's) review desk.

Everything it reads or records runs on the station's command thread; widgets get snapshots:
the session as recorded, its figures, its record in words, a chart buffer of its readings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, Signal

from ketamon.acquisition.buffers import TrendBuffers
from ketamon.core import commands as c
from ketamon.core.desk import Reviewed, SessionDesk
from ketamon.core.read_models import RecordLine, SessionFigures, record_lines, session_figures
from ketamon.core.session import Refused
from ketamon.domain.roles import Action, Actor, allowed
from ketamon.domain.session_clock import SessionClock
from ketamon.presenters.runner import CommandRunner, Pending

FloatArray = npt.NDArray[np.float64]


class SessionSeries(Protocol):
    """A session's readings as columns (``ketamon.storage.history.SessionSeries``)."""

    @property
    def columns(self) -> Mapping[str, Any]: ...  # parameter -> .t, .v, .valid arrays

    def valid_tuples(self, parameters: Iterable[str]) -> list[tuple[str, float, datetime]]: ...

    def lowest_valid(
        self, parameter: str, since: datetime | None
    ) -> tuple[str, float, datetime]: ...


#: the readings the session's figures and the REMS form read (the chart reads them all)
BP = ("nibp_sys", "nibp_dia", "nibp_mean")


@dataclass(frozen=True, slots=True)
class ReviewView:
    """One session, opened for review."""

    reviewed: Reviewed
    lines: list[RecordLine]
    figures: SessionFigures
    buffers: TrendBuffers
    form: Any = None  # the PMF form (ketamon.core.pmf), for esketamine sessions
    deadline: Any = None
    #: the session's pleth: (epoch seconds, values), NaN at gaps; empty when none was stored
    pleth: tuple[FloatArray, FloatArray] | None = None

    @property
    def session_id(self) -> int:
        return self.reviewed.state.session_id

    def clock(self) -> SessionClock:
        s = self.reviewed.state
        return SessionClock(s.started, s.first_dose)

    def end(self) -> datetime:
        s = self.reviewed.state
        return s.ended_at or (self.reviewed.entries[-1].at if self.reviewed.entries else s.started)


class ReviewPresenter(QObject):
    sig_session_changed = Signal(object)  # ReviewView, after a signature, addendum or PMF entry

    def __init__(
        self,
        desk: SessionDesk,
        runner: CommandRunner,
        user: Callable[[], Actor],
        *,
        list_sessions: Callable[[], Sequence[Any]],
        load_series: Callable[[int], SessionSeries],
        load_pleth: Callable[[int], tuple[FloatArray, FloatArray]] | None = None,
        form: Callable[[Reviewed, list[tuple[str, float, datetime]]], tuple[Any, Any]]
        | None = None,
        print_form: Callable[[ReviewView, str], None] | None = None,
        open_emergencies: Callable[[], Sequence[Any]] | None = None,
        export: Callable[[int, str, str, str, Actor], Any] | None = None,
    ) -> None:
        super().__init__()
        self._desk = desk
        self._runner = runner
        self._user = user
        self._list = list_sessions
        self._load = load_series
        self._pleth = load_pleth
        self._form = form
        self._print = print_form
        self._emergencies = open_emergencies
        self._export = export

    @property
    def actor(self) -> Actor:
        return self._user()

    def now(self) -> datetime:
        """The station's clock (the list's "today" and "yesterday" follow it)."""
        return self._desk.clock()

    def may(self, action: Action) -> bool:
        try:
            return allowed(self.actor.role, action)
        except Refused:  # the screen is locked
            return False

    def sessions(self) -> Pending[Sequence[Any]]:
        return self._runner.submit(self._list, "session list")

    def emergencies(self) -> Pending[Sequence[Any]]:
        """Break-glass sign-ins no admin has reviewed yet (flagged on the board)."""
        load = self._emergencies
        return self._runner.submit(lambda: list(load()) if load else [], "emergency access")

    def _view(self, reviewed: Reviewed) -> ReviewView:
        state = reviewed.state
        series = self._load(state.session_id)
        buffers = TrendBuffers()
        for parameter, col in series.columns.items():
            buffers.load(parameter, col.t, col.v, ~col.valid)
        bp = series.valid_tuples(BP)
        form = deadline = None
        if self._form is not None:
            form, deadline = self._form(reviewed, bp)
        try:  # the figures want the lowest SpO2 after the dose: one reading, not 10,000
            lowest = [series.lowest_valid("spo2", state.first_dose)]
        except LookupError:
            lowest = []
        return ReviewView(
            reviewed,
            record_lines(reviewed.entries),
            session_figures(state, bp + lowest),
            buffers,
            form,
            deadline,
            None if self._pleth is None else self._pleth(state.session_id),
        )

    def _refused(self, what: str, exc: Refused) -> Pending[Any]:
        """A request no one may make now (the screen locked): refused, not raised."""
        p: Pending[Any] = Pending(what)
        p.reasons = exc.reasons
        p._resolve()
        return p

    def open(self, session_id: int) -> Pending[ReviewView]:
        try:
            desk, actor = self._desk, self.actor
        except Refused as exc:
            return self._refused("review", exc)
        return self._runner.submit(lambda: self._view(desk.open(session_id, actor)), "review")

    def _do(self, session_id: int, command: object, what: str) -> Pending[ReviewView]:
        try:
            desk, actor = self._desk, self.actor
        except Refused as exc:
            return self._refused(what, exc)

        def run() -> ReviewView:
            return self._view(desk.execute(session_id, command, actor))

        pending = self._runner.submit(run, what)
        pending.on_done(self._on_done)
        return pending

    def _on_done(self, p: Pending[ReviewView]) -> None:
        if p.ok and p.result is not None:
            self.sig_session_changed.emit(p.result)

    def sign(self, session_id: int, meaning_id: str, password: str) -> Pending[ReviewView]:
        return self._do(session_id, c.Sign(meaning_id, password), "signature")

    def add_addendum(self, session_id: int, text: str, password: str) -> Pending[ReviewView]:
        """A physician's signed addendum; anyone else's is a late entry to be countersigned."""
        if self.may(Action.ADDENDUM):
            return self._do(session_id, c.AddAddendum(text, password), "addendum")
        return self._do(session_id, c.AddLateEntry(text, password), "late entry")

    def countersign(self, session_id: int, addendum_id: int, password: str) -> Pending[ReviewView]:
        return self._do(session_id, c.CountersignAddendum(addendum_id, password), "countersign")

    def enter_pmf(
        self, session_id: int, values: Mapping[str, object], form_version: str
    ) -> Pending[ReviewView]:
        return self._do(session_id, c.EnterPmfFields(dict(values), form_version), "PMF fields")

    def export(self, session_id: int, fmt: str, path: str, page_size: str = "a4") -> Pending[Any]:
        """The whole session to ``path`` as pdf, csv (zip), json or fhir, on the command
        thread, audited as the signed-in user; refused with the reason (unsigned for FHIR, an
        unwritable path, …)."""
        try:
            export, actor = self._export, self.actor
        except Refused as exc:
            return self._refused("export", exc)

        def run() -> Any:
            if export is None:
                raise Refused(["Exports are not available here"])
            return export(session_id, fmt, path, page_size, actor)

        return self._runner.submit(run, "export")

    def print_pmf(self, view: ReviewView, path: str) -> Pending[None]:
        """The filled form as a PDF at ``path`` (refused, with the reasons, while incomplete)."""
        p: Pending[None] = Pending("print")
        try:
            if self._print is None:
                raise Refused(["Printing is not available here"])
            missing = list(getattr(view.form, "missing", []) or [])
            if missing:
                raise Refused(["Fill these fields first: " + ", ".join(map(str, missing))])
            self._print(view, path)
        except Refused as exc:
            p.reasons = exc.reasons
        except OSError as exc:
            p.reasons = [f"Cannot write {path}: {exc.strerror or exc}"]
        p._resolve()
        return p

    def record_submission(
        self, session_id: int, method: str, submitted_at: str, reference: str
    ) -> Pending[ReviewView]:
        cmd = c.RecordPmfSubmission(method, submitted_at, reference)
        return self._do(session_id, cmd, "PMF submission")
