"""The bridge from device threads to the app: one QThread per monitor, ring buffers, alarm
evaluation where readings arrive, and the hand-off to the database writer. No widgets."""

from __future__ import annotations
