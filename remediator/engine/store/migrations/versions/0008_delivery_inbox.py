"""deliveries are an inbox: acknowledged first, taken into incidents after (ingested_at, outcome)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ingested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.JSON(), nullable=True))
        batch_op.create_index('ix_deliveries_ingested_at', ['ingested_at'], unique=False)
    # Deliveries stored before this revision were taken in within the same transaction.
    op.execute("UPDATE deliveries SET ingested_at = received_at")


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_ingested_at')
        batch_op.drop_column('outcome')
        batch_op.drop_column('ingested_at')
