"""leases (a host being remediated by one replica, until it expires unless renewed), pauses (no new claims in a scope),
and an incident's not_before (held back by a wave or a cap)

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leases',
                    sa.Column('key', sa.String(length=300), nullable=False),
                    sa.Column('incident_id', sa.String(length=32), nullable=False),
                    sa.Column('owner', sa.String(length=200), nullable=False),
                    sa.Column('claimed_at', sa.DateTime(), nullable=False),
                    sa.Column('expires_at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('key'))
    op.create_index('ix_leases_incident_id', 'leases', ['incident_id'])
    op.create_index('ix_leases_owner', 'leases', ['owner'])
    op.create_table('pauses',
                    sa.Column('scope', sa.String(length=256), nullable=False),
                    sa.Column('by', sa.String(length=64), nullable=False),
                    sa.Column('reason', sa.Text(), nullable=False),
                    sa.Column('at', sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint('scope'))
    with op.batch_alter_table('incidents') as batch:
        batch.add_column(sa.Column('not_before', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('incidents') as batch:
        batch.drop_column('not_before')
    op.drop_table('pauses')
    op.drop_index('ix_leases_owner', 'leases')
    op.drop_index('ix_leases_incident_id', 'leases')
    op.drop_table('leases')
