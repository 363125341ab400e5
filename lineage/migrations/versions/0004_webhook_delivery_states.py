"""webhook deliveries: a state per row, and one row per alert, webhook and attempt

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 15:00:00

A delivery is now a row from the moment its alert is stored (``queued``) and each attempt is claimed
before its POST (``sending``), so a service that starts resumes what the previous one left unfinished,
and two processes never make the same attempt (the unique index). Rows written before this revision are
finished: delivered when they were, failed otherwise (the service that wrote them kept its retries in
memory, and they are gone).
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False,
                                      server_default='failed'))
    op.execute(sa.text("UPDATE webhook_deliveries SET state = 'delivered' WHERE ok"))
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ux_webhook_deliveries_attempt', ['alert_id', 'url_sha256', 'attempt'],
                              unique=True)
        batch_op.create_index('ix_webhook_deliveries_state', ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_state')
        batch_op.drop_index('ux_webhook_deliveries_attempt')
        batch_op.drop_column('state')
