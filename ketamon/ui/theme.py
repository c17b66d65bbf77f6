"""Colours and text conventions. Alarm colours follow IEC 60601-1-8 (high red, medium yellow,
low cyan); every colour is paired with a text marker so colour is never the only signal."""

from __future__ import annotations

from ketamon.domain.thresholds import Priority
from ketamon.resources import read_text

PRIORITY_COLOURS = {Priority.HIGH: "#ff3b30", Priority.MEDIUM: "#ffcc00", Priority.LOW: "#32d2f0"}
PRIORITY_TEXT = {Priority.HIGH: "HIGH", Priority.MEDIUM: "MEDIUM", Priority.LOW: "LOW"}

PARAMETER_COLOURS = {
    "nibp_sys": "#ff8a65",
    "nibp_dia": "#ffb74d",
    "nibp_mean": "#e0e0e0",
    "hr": "#66bb6a",
    "pr": "#81c784",
    "spo2": "#4fc3f7",
    "rr": "#fff176",
}
BACKGROUND = "#101418"
GRID_COLOUR = "#222a31"
THRESHOLD_COLOUR = "#8d7b3a"


def stylesheet() -> str:
    return read_text("styles", "dark.qss")


def priority_from_int(value: int) -> Priority | None:
    return Priority(value) if value in (1, 2, 3) else None
