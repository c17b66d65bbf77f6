"""What widgets may know of the layers below: the read-only buffer and reading types they
draw from, and the simulator's scenario names for the monitor picker. Widgets import these from
here, never from the acquisition or the device layer."""

from __future__ import annotations

from devices.readings import Reading
from devices.scenarios import SCENARIOS
from ketamon.acquisition.buffers import Series, TrendBuffers, WaveBuffer

SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

__all__ = ["SCENARIO_NAMES", "Reading", "Series", "TrendBuffers", "WaveBuffer"]
