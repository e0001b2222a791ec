"""gateway checkout: an attempt's return token, the stored start and its review flag

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_attempts") as batch:
        # PayOps's own unguessable token in the attempt's return/response/receipt URLs.
        batch.add_column(sa.Column("token", sa.String(length=64), nullable=True))
        # Where the customer's browser was sent: {"outcome", "method", "url", "fields", ...}.
        batch.add_column(sa.Column("start", sa.JSON(), nullable=True))
        # A success an operator must still look at (e.g. a duplicate payment).
        batch.add_column(
            sa.Column("review_reason", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
    op.create_index("uq_payment_attempts_token", "payment_attempts", ["token"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_payment_attempts_token", table_name="payment_attempts")
    with op.batch_alter_table("payment_attempts") as batch:
        batch.drop_column("review_reason")
        batch.drop_column("start")
        batch.drop_column("token")
