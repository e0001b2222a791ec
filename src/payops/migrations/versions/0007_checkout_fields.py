"""checkout: URLs up to 2,000 characters (Ottu's limit); descriptive checkout fields

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_transactions") as batch:
        batch.alter_column(
            "webhook_url",
            existing_type=sa.String(length=200),
            type_=sa.String(length=2000),
            existing_nullable=False,
        )
        batch.alter_column(
            "redirect_url",
            existing_type=sa.String(length=200),
            type_=sa.String(length=2000),
            existing_nullable=False,
        )
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_transactions") as batch:
        batch.drop_column("details")
        batch.alter_column(
            "redirect_url",
            existing_type=sa.String(length=2000),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch.alter_column(
            "webhook_url",
            existing_type=sa.String(length=2000),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
