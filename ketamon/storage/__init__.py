"""Storage: SQLAlchemy models, migrations, engine set-up, the audit trail, users, the single
writer thread. No Qt here."""

from __future__ import annotations

# Importing the audit module registers its ORM hooks for every Session in the process, so no
# write to audited data can skip the trail, whichever module imported the models first.
from ketamon.storage import audit as _audit  # noqa: F401
