"""auth: shared failed-login counters; users.credentials_version

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_ends_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_failures")),
    )
    with op.batch_alter_table("auth_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_failures_window_ends_ms"), ["window_ends_ms"], unique=False
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "credentials_version", sa.Integer(), server_default=sa.text("1"), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("credentials_version")
    with op.batch_alter_table("auth_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_failures_window_ends_ms"))
    op.drop_table("auth_failures")
