"""the approval pages' sessions live in the store, so logging out ends them

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ui_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('approver_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['approver_id'], ['approvers.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_ui_sessions_approver_id', 'ui_sessions', ['approver_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ui_sessions_approver_id', table_name='ui_sessions')
    op.drop_table('ui_sessions')
