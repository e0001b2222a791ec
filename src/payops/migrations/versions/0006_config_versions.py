"""version counters on gateway configurations and merchant settings; open operations by parent

Each process caches gateway configurations (with their decrypted connector) and merchant settings;
a change bumps the row's version, which every process sees on its next operation and reloads.
The reservations of an operation (open operations of its parent) are read through an index on
(transaction_id, state), so their cost does not grow with the parent's settled operations.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_configs") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
    with op.batch_alter_table("merchant_settings") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
    op.create_index(
        "ix_operations_transaction_id_state",
        "operations",
        ["transaction_id", "state"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_operations_transaction_id_state", table_name="operations")
    with op.batch_alter_table("merchant_settings") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("gateway_configs") as batch:
        batch.drop_column("version")
