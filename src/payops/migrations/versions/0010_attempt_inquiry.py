"""payment attempts: automatic inquiry (count, next time, lease), review reason and resolution

A pending attempt is inquired automatically after its configuration's window, up to three times,
under a lease; an attempt in review is settled by an operator, whose decision is kept with it.

``review_reason`` is also added by revision 0009 (hosted checkout); this revision adds it only
when that revision has not.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _has_review_reason() -> bool:
    columns = sa.inspect(op.get_bind()).get_columns("payment_attempts")
    return any(column["name"] == "review_reason" for column in columns)


def upgrade() -> None:
    add_reason = not _has_review_reason()
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("inquiry_count", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("next_inquiry_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("inquiry_claimed_until", sa.DateTime(timezone=True), nullable=True)
        )
        if add_reason:
            batch_op.add_column(
                sa.Column("review_reason", sa.Text(), nullable=False, server_default=sa.text("''"))
            )
        batch_op.add_column(sa.Column("resolution", sa.JSON(), nullable=True))
        batch_op.create_index("ix_payment_attempts_state_id", ["state", "id"], unique=False)


def downgrade() -> None:
    # review_reason stays when revision 0009 added it; that revision's downgrade drops it.
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_attempts_state_id")
        batch_op.drop_column("resolution")
        batch_op.drop_column("inquiry_claimed_until")
        batch_op.drop_column("next_inquiry_at")
        batch_op.drop_column("inquiry_count")
