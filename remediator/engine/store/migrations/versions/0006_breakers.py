"""circuit-breaker scopes

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'breakers',
        sa.Column('scope', sa.String(length=160), nullable=False),
        sa.Column('open', sa.Boolean(), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('reset_by', sa.String(length=64), nullable=False),
        sa.Column('reset_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('scope'),
    )


def downgrade() -> None:
    op.drop_table('breakers')
