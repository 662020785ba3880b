"""an alert belongs to the sender that posted it: `alerts.owner`, and the identity a resend is a no-op under is
(fingerprint, startsAt, status, owner), so another sender's copy neither captures nor resolves it

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('owner', sa.String(length=64), nullable=False, server_default=''))
    op.execute("UPDATE alerts SET owner = COALESCE((SELECT d.sender FROM deliveries d WHERE d.id = alerts.delivery_id), '')")
    with op.batch_alter_table('alerts') as batch:
        batch.drop_constraint('uq_alert_identity', type_='unique')
        batch.create_unique_constraint('uq_alert_identity', ['fingerprint', 'starts_at', 'status', 'owner'])


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.drop_constraint('uq_alert_identity', type_='unique')
    # two senders' copies of one alert cannot both stay under the older identity: keep the first
    op.execute("DELETE FROM alerts WHERE id NOT IN (SELECT MIN(id) FROM alerts GROUP BY fingerprint, starts_at, status)")
    with op.batch_alter_table('alerts') as batch:
        batch.create_unique_constraint('uq_alert_identity', ['fingerprint', 'starts_at', 'status'])
        batch.drop_column('owner')
