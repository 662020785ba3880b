"""signed webhooks' signatures are remembered in the store for the window, not in one process: a replay to another
replica, or after a restart, is refused too

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('seen_signatures',
                    sa.Column('signature', sa.String(length=80), primary_key=True),
                    sa.Column('expires_at', sa.DateTime(), nullable=False))
    op.create_index('ix_seen_signatures_expires_at', 'seen_signatures', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_seen_signatures_expires_at', table_name='seen_signatures')
    op.drop_table('seen_signatures')
