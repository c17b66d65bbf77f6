"""Storage: SQLAlchemy models, engine set-up, the single writer thread. No Qt here."""

from __future__ import annotations
