"""ketamon: chair-side vital-sign documentation for ketamine and esketamine sessions.

ketamon's flags are advisory and for documentation; the bedside monitor stays the primary alarm.
"""

from __future__ import annotations

__version__ = "0.1.0"

SAFETY_STATEMENT = (
    "Advisory only: the bedside monitor remains the primary alarm. "
    "ketamon's flags support documentation and do not replace the monitor's alarms."
)
