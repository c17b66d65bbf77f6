"""Alembic migrations of ketamon's database (run from the package by ketamon.storage.migrate)."""
