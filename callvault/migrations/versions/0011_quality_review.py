"""quality review: random samples, review queue, scorecards, comments, training clips (A6, B8)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 21:58:12.455394
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('qa_samples',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('policy_id', sa.String(length=100), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('schedule_key', sa.String(length=200), nullable=True),
    sa.Column('seed', sa.String(length=64), nullable=False),
    sa.Column('rule', sa.JSON(), nullable=False),
    sa.Column('population', sa.JSON(), nullable=False),
    sa.Column('population_sha256', sa.String(length=64), nullable=False),
    sa.Column('selected', sa.JSON(), nullable=False),
    sa.Column('excluded', sa.JSON(), nullable=False),
    sa.Column('run_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_samples')),
    sa.UniqueConstraint('schedule_key', name=op.f('uq_qa_samples_schedule_key'))
    )
    with op.batch_alter_table('qa_samples', schema=None) as batch_op:
        batch_op.create_index('ix_qa_samples_period', ['policy_id', 'period_start'], unique=False)

    op.create_table('qa_review_items',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('sample_id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_qa_review_items_recording_id_recordings')),
    sa.ForeignKeyConstraint(['sample_id'], ['qa_samples.id'], name=op.f('fk_qa_review_items_sample_id_qa_samples'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_review_items')),
    sa.UniqueConstraint('sample_id', 'recording_id', name=op.f('uq_qa_review_items_sample_id'))
    )
    with op.batch_alter_table('qa_review_items', schema=None) as batch_op:
        batch_op.create_index('ix_qa_review_items_agent', ['agent'], unique=False)
        batch_op.create_index('ix_qa_review_items_state_created', ['state', 'created_at'], unique=False)

    op.create_table('qa_training_clips',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('duration_seconds', sa.Float(), nullable=False),
    sa.Column('sample_rate', sa.Integer(), nullable=False),
    sa.Column('masked_spans', sa.Integer(), nullable=False),
    sa.Column('transcript_used', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('blob_key', sa.String(length=200), nullable=False),
    sa.Column('kek_id', sa.String(length=64), nullable=True),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('destroy_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('destroyed_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_qa_training_clips_recording_id_recordings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_training_clips'))
    )
    with op.batch_alter_table('qa_training_clips', schema=None) as batch_op:
        batch_op.create_index('ix_qa_training_clips_agent', ['agent', 'state'], unique=False)
        batch_op.create_index('ix_qa_training_clips_recording', ['recording_id'], unique=False)
        batch_op.create_index('ix_qa_training_clips_state_due', ['state', 'destroy_after'], unique=False)

    op.create_table('qa_comments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=False),
    sa.Column('at_seconds', sa.Float(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['qa_review_items.id'], name=op.f('fk_qa_comments_item_id_qa_review_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_comments'))
    )
    with op.batch_alter_table('qa_comments', schema=None) as batch_op:
        batch_op.create_index('ix_qa_comments_item', ['item_id', 'at_seconds'], unique=False)

    op.create_table('qa_reviews',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('item_id', sa.String(length=36), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('scorecard_id', sa.String(length=64), nullable=False),
    sa.Column('scorecard_version', sa.String(length=32), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('section_scores', sa.JSON(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('auto_failed', sa.Boolean(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('coaching_note', sa.Text(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('agent_response', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['qa_review_items.id'], name=op.f('fk_qa_reviews_item_id_qa_review_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_reviews')),
    sa.UniqueConstraint('item_id', 'reviewer', name=op.f('uq_qa_reviews_item_id'))
    )
    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.create_index('ix_qa_reviews_agent_submitted', ['agent', 'submitted_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_reviews_agent_submitted')

    op.drop_table('qa_reviews')
    with op.batch_alter_table('qa_comments', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_comments_item')

    op.drop_table('qa_comments')
    with op.batch_alter_table('qa_training_clips', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_training_clips_state_due')
        batch_op.drop_index('ix_qa_training_clips_recording')
        batch_op.drop_index('ix_qa_training_clips_agent')

    op.drop_table('qa_training_clips')
    with op.batch_alter_table('qa_review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_review_items_state_created')
        batch_op.drop_index('ix_qa_review_items_agent')

    op.drop_table('qa_review_items')
    with op.batch_alter_table('qa_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_qa_samples_period')

    op.drop_table('qa_samples')
