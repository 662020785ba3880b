"""a person's Slack user id (`approvers add NAME --slack U…`): a click on an approval request's button in Slack is
that person's decision

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('approvers') as batch:
        batch.add_column(sa.Column('slack_user', sa.String(length=32), nullable=True))
    op.create_index('ix_approvers_slack_user', 'approvers', ['slack_user'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_approvers_slack_user', table_name='approvers')
    with op.batch_alter_table('approvers') as batch:
        batch.drop_column('slack_user')
