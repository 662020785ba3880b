"""alerts and incidents keep the alert's generatorURL (its PromQL expression, for verify)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('alerts', 'incidents'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('generator_url', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    for table in ('alerts', 'incidents'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('generator_url')
