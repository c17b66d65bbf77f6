"""Readings keep what measured them: ``vital_reading.origin`` (ecg, pleth, cuff, impedance, co2,
a temperature site…) and ``channel`` (the device's channel when it has several of one kind: the
HL7 OBX-4 containment id, Datex T1-T4), as ``ketamon decode`` prints them. Two SpO2 channels,
or the ECG and pleth pulse rates, stay apart once stored.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "vital_reading",
        sa.Column("origin", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column(
        "vital_reading",
        sa.Column("channel", sa.String(length=32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("vital_reading", "channel")
    op.drop_column("vital_reading", "origin")
