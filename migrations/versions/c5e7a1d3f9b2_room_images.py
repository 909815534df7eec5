"""room_images and image_inferences: room photographs and the nightly CLIP job's results (issue 15)

Revision ID: c5e7a1d3f9b2
Revises: b3c1f0a2d9e4
Create Date: 2026-11-30 04:35:06

"""
from alembic import op
import sqlalchemy as sa

import app.models.base  # noqa: F401  (custom column types used by autogenerate)


# revision identifiers, used by Alembic.
revision = 'c5e7a1d3f9b2'
down_revision = 'b3c1f0a2d9e4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('room_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=False),
    sa.Column('captured_at', app.models.base.UTCDateTime(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path', name='uq_room_images_path')
    )
    with op.batch_alter_table('room_images', schema=None) as batch_op:
        batch_op.create_index('ix_room_images_captured_at', ['captured_at'], unique=False)

    op.create_table('image_inferences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('model_name', sa.String(length=100), nullable=False),
    sa.Column('model_version', sa.String(length=100), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('embedding_size', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('inferred_at', app.models.base.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['room_images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'model_name', 'model_version', name='uq_image_inferences_image_model')
    )


def downgrade():
    op.drop_table('image_inferences')
    with op.batch_alter_table('room_images', schema=None) as batch_op:
        batch_op.drop_index('ix_room_images_captured_at')

    op.drop_table('room_images')
