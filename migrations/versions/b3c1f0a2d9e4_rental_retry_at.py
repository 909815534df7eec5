"""rentals.retry_at: when a shipment that failed transiently is due again

Revision ID: b3c1f0a2d9e4
Revises: 7724562804f7
Create Date: 2026-11-30 03:20:00

"""
from alembic import op
import sqlalchemy as sa

import app.models.base


revision = 'b3c1f0a2d9e4'
down_revision = '7724562804f7'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rentals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_at', app.models.base.UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('rentals', schema=None) as batch_op:
        batch_op.drop_column('retry_at')
