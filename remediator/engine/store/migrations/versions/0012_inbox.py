"""the inbox: acknowledged webhooks wait here (on SQLite, in a file of their own) until the ingester moves them

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbox',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('received_at', sa.DateTime(), nullable=False),
                    sa.Column('group_key', sa.Text(), nullable=False),
                    sa.Column('status', sa.String(length=16), nullable=False),
                    sa.Column('alerts_count', sa.Integer(), nullable=False),
                    sa.Column('truncated', sa.Integer(), nullable=False),
                    sa.Column('body', sa.JSON(), nullable=False),
                    sa.Column('sender', sa.String(length=64), nullable=True),
                    sa.PrimaryKeyConstraint('id'),
                    sqlite_autoincrement=True)


def downgrade() -> None:
    op.drop_table('inbox')
