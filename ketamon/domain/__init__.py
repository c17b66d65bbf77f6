"""Pure domain logic: no Qt, no database. Threshold profiles, alarm evaluation, session clock."""

from __future__ import annotations
