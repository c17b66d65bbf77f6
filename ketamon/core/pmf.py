"""The REMS Patient Monitoring Form from the record (clinical.md §1.4, §8 items 30-36)."""

from __future__ import annotations
