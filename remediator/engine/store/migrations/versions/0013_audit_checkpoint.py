"""the audit chain's checkpoint: where a pruned prefix ended, signed, so the rest still verifies

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_checkpoint',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('seq', sa.Integer(), nullable=False),
                    sa.Column('hash', sa.String(length=64), nullable=False),
                    sa.Column('events', sa.Integer(), nullable=False),
                    sa.Column('at', sa.String(length=40), nullable=False),
                    sa.Column('signature', sa.String(length=64), nullable=False),
                    sa.PrimaryKeyConstraint('id'))


def downgrade() -> None:
    op.drop_table('audit_checkpoint')
