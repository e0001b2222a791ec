"""operations: drop the index on transaction_id alone

``ix_operations_transaction_id_state`` (transaction_id, state) serves every lookup by
transaction_id (its leading column), so the index on transaction_id alone only cost a second
entry per operation row version: two per operation, as settling an operation changes its state
(issue 11, docs/performance.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index("ix_operations_transaction_id")


def downgrade() -> None:
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index("ix_operations_transaction_id", ["transaction_id"], unique=False)
