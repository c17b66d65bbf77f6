"""Widgets. Never touches a serial port or a database session (checked by import-linter)."""

from __future__ import annotations
