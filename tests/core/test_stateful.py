from __future__ import annotations

from hypothesis import HealthCheck, settings

from ketamon.core.memory import MemoryRepository
from tests.core.stateful import machine

Memory = machine(MemoryRepository)
Memory.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemory = Memory.TestCase
