"""The chair presenter: commands never wait on the UI thread, results come back by signal, and a
storage fault becomes a technical flag. The repository here is the in-memory one with a gate, so
the test decides when the "database" answers; the flows in tests/ui use the real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from ketamon.acquisition.chair import ChairAcquisition, MonitorSpec
from ketamon.core.memory import MemoryRepository
from ketamon.core.ports import EntryDraft
from ketamon.domain.record import PatientInfo, Plan, SessionEntry
from ketamon.domain.roles import Actor
from ketamon.domain.session_rules import Treatment
from ketamon.presenters.chair import ChairPresenter
from ketamon.presenters.runner import CommandRunner
from tests.core.helpers import AUDITOR, NURSE, Passwords, profile


class GatedRepository(MemoryRepository):
    """Appends wait until the test opens the gate: a slow or locked database."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def create(self, draft: EntryDraft, actor: Actor) -> SessionEntry:
        self.waiting.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().create(draft, actor)

    def append(
        self, session_id: int, drafts: Sequence[EntryDraft], actor: Actor
    ) -> list[SessionEntry]:
        self.waiting.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().append(session_id, drafts, actor)


class Rig:
    def __init__(self, user: Actor = NURSE) -> None:
        def never() -> tuple[object, object]:
            raise AssertionError("the monitor is not started in these tests")

        self.acq = ChairAcquisition(
            "Chair 1",
            MonitorSpec(make=never, description="none"),
            profile(),  # type: ignore[arg-type]
        )
        self.repo = GatedRepository()
        self.runner = CommandRunner()
        self.problem: str | None = None
        self.user = user
        self.presenter = ChairPresenter(
            self.acq,
            self.repo,
            Passwords(),
            self.runner,
            lambda: self.user,
            storage_problem=lambda: self.problem,
        )

    def close(self) -> None:
        self.repo.gate.set()
        self.runner.wait_idle(10)
        self.runner.stop()


@pytest.fixture
def rig(qtbot: object) -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()


ALEX = PatientInfo(None, "MRN-1", "Alex", "Demo", weight_kg=70.0, rems_enrolled=True)


def test_a_command_does_not_wait_on_the_ui_thread(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    p = rig.presenter
    with qtbot.assertNotEmitted(p.sig_changed):
        pending = p.start_session(ALEX, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True)
        # the command thread is inside the (blocked) database write; the UI thread is free
        assert rig.repo.waiting.wait(5)
        assert not pending.done and p.state is None
        qtbot.wait(50)  # the event loop runs meanwhile
    with qtbot.waitSignal(p.sig_changed, timeout=5000):
        rig.repo.gate.set()
    assert pending.ok and p.state is not None and p.state.patient.mrn == "MRN-1"


def test_a_refusal_by_role_comes_back_at_once(rig: Rig) -> None:
    rig.user = AUDITOR
    pending = rig.presenter.start_session(ALEX, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True)
    assert pending.done and not pending.ok
    assert "read-only" in pending.reasons[0]
    assert not rig.repo.waiting.is_set()  # nothing reached the record


def test_a_refusal_by_rule_comes_back_by_signal_and_keeps_nothing(rig: Rig) -> None:
    rig.repo.gate.set()
    pending = rig.presenter.start_session(ALEX, Plan(Treatment.ESKETAMINE, 56.0), confirmed=False)
    pending.wait(5)
    assert not pending.ok and "Confirm" in pending.reasons[0]
    assert rig.presenter.state is None and rig.repo.open_sessions() == []


def test_a_failed_write_is_reported_not_raised(rig: Rig, qtbot) -> None:  # type: ignore[no-untyped-def]
    rig.repo.gate.set()
    rig.repo.fail_next = OSError("disk full")
    with qtbot.waitSignal(rig.presenter.sig_error, timeout=5000) as sig:
        pending = rig.presenter.start_session(
            ALEX, Plan(Treatment.ESKETAMINE, 56.0), confirmed=True
        )
    assert "disk full" in sig.args[0]
    assert not pending.ok and "Nothing of it was recorded" in pending.reasons[0]


def test_a_storage_fault_raises_and_clears_a_technical_flag(rig: Rig) -> None:
    rig.problem = "OperationalError: database is locked"
    rig.presenter.tick()
    flags = {a.key: a for a in rig.presenter.active_alarms()}
    assert "tech_storage" in flags and flags["tech_storage"].technical
    assert "database is locked" in flags["tech_storage"].message
    rig.problem = None
    rig.presenter.tick()
    assert "tech_storage" not in {a.key for a in rig.presenter.active_alarms()}
