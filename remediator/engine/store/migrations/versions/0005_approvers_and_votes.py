"""approvers with roles and hashed tokens; votes per approval; approvals keep their dry run

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'approvers',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('token_id', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('disabled_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
        sa.UniqueConstraint('token_id'),
    )
    op.create_table(
        'approval_votes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('approval_id', sa.String(length=32), nullable=False),
        sa.Column('approver', sa.String(length=64), nullable=False),
        sa.Column('decision', sa.String(length=16), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['approval_id'], ['approvals.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('approval_id', 'approver', name='uq_vote_per_approver'),
    )
    op.create_index('ix_approval_votes_approval_id', 'approval_votes', ['approval_id'])
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('required', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('risk', sa.String(length=16), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('rules', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('reasons', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('supersedes', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        for column in ('supersedes', 'reasons', 'rules', 'risk', 'required', 'preview'):
            batch_op.drop_column(column)
    op.drop_index('ix_approval_votes_approval_id', table_name='approval_votes')
    op.drop_table('approval_votes')
    op.drop_table('approvers')
