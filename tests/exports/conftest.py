"""PDF exports need a Qt application for fonts. Tests share pytest-qt's QApplication: an export
making its own QGuiApplication first would leave the later widget tests without a QApplication."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _qt_application(qapp: Any) -> None:
    return None
