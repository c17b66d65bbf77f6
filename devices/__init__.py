"""Monitor side of the wire: readings, transports, protocols, supervisor, emulators, simulator.

This package imports neither Qt, a database library nor ``ketamon``; the import-linter contracts in
``pyproject.toml`` check that.
"""

from __future__ import annotations
