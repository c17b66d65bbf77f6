"""Sign-off and addenda at the review desk (21 CFR 11.50, 11.200; clinical.md §8 items 39-41)."""

from __future__ import annotations
