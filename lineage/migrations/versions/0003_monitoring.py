"""monitoring: stored alerts and webhook deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00

Monitoring derives alerts from what arrives after it exists: the watermarks start at the newest raw
event and audit row the store holds now, so upgrading a store with a long history does not raise (and
send to webhooks) an alert for every old failure.
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WATERMARKS = {'monitoring_events': 'events', 'monitoring_audit': 'audit_log'}


def upgrade() -> None:
    op.create_table(
        'alerts',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('rule', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('severity', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=True),
        sa.Column('job_namespace', sa.String(length=1024), nullable=True),
        sa.Column('job_name', sa.String(length=1024), nullable=True),
        sa.Column('dataset_namespace', sa.String(length=1024), nullable=True),
        sa.Column('dataset_name', sa.String(length=1024), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('details', sa.Text(), nullable=True),
        sa.Column('event_id', sa.BigInteger(), nullable=True),
        sa.Column('event_time', sa.String(length=32), nullable=True),
        sa.Column('raised_at', sa.String(length=32), nullable=False),
        sa.Column('dedup_key', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('dedup_key'),
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_raised_at', ['raised_at'], unique=False)
        batch_op.create_index('ix_alerts_rule', ['rule', 'raised_at'], unique=False)
        batch_op.create_index('ix_alerts_kind', ['kind', 'raised_at'], unique=False)
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', _ID, autoincrement=True, nullable=False),
        sa.Column('alert_id', sa.BigInteger(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('url_sha256', sa.String(length=64), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('attempted_at', sa.String(length=32), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_alert', ['alert_id', 'id'], unique=False)
    bind = op.get_bind()
    for key, table in _WATERMARKS.items():
        newest = bind.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar() or 0
        bind.execute(sa.text("DELETE FROM store_meta WHERE key = :key"), {"key": key})
        bind.execute(sa.text("INSERT INTO store_meta (key, value) VALUES (:key, :value)"),
                     {"key": key, "value": str(int(newest))})


def downgrade() -> None:
    bind = op.get_bind()
    for key in _WATERMARKS:
        bind.execute(sa.text("DELETE FROM store_meta WHERE key = :key"), {"key": key})
    op.drop_table('webhook_deliveries')
    op.drop_table('alerts')
