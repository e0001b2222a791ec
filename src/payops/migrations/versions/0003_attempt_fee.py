"""payment attempts remember the fee they asked for

A successful attempt decides the parent's amount and fee (decisions §13), so each attempt keeps
the fee that was part of its requested total. Existing attempts take their parent's fee, which
nothing could change after an attempt was recorded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fee", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )
    op.execute(
        "UPDATE payment_attempts SET fee = (SELECT payment_transactions.fee "
        "FROM payment_transactions WHERE payment_transactions.id = payment_attempts.transaction_id)"
    )
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.alter_column("fee", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_column("fee")
