"""transcription: transcripts, keyed-hash search terms, CRM notes

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-23 19:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('transcripts',
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('engine', sa.String(length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sealed', sa.LargeBinary(), nullable=True),
    sa.Column('word_count', sa.Integer(), nullable=False),
    sa.Column('seconds_processed', sa.Float(), nullable=False),
    sa.Column('card_spans_removed', sa.Integer(), nullable=False),
    sa.Column('dtmf_spans_removed', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['data_keys.recording_id'], name=op.f('fk_transcripts_recording_id_data_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('recording_id', name=op.f('pk_transcripts'))
    )
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.create_index('ix_transcripts_status_claimed', ['status', 'claimed_at'], unique=False)

    op.create_table('transcript_terms',
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('term_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['data_keys.recording_id'], name=op.f('fk_transcript_terms_recording_id_data_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('recording_id', 'term_hash', name=op.f('pk_transcript_terms'))
    )
    with op.batch_alter_table('transcript_terms', schema=None) as batch_op:
        batch_op.create_index('ix_transcript_terms_hash', ['term_hash'], unique=False)

    op.create_table('crm_notes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('crm_ref', sa.String(length=100), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('sealed_note', sa.LargeBinary(), nullable=False),
    sa.Column('sealed_check', sa.LargeBinary(), nullable=True),
    sa.Column('flag_count', sa.Integer(), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=True),
    sa.Column('similarity_method', sa.String(length=32), nullable=True),
    sa.Column('check_state', sa.String(length=16), nullable=False),
    sa.Column('flags_summary', sa.JSON(), nullable=False),
    sa.Column('received_by', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['recording_id'], ['data_keys.recording_id'], name=op.f('fk_crm_notes_recording_id_data_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_notes'))
    )
    with op.batch_alter_table('crm_notes', schema=None) as batch_op:
        batch_op.create_index('ix_crm_notes_recording', ['recording_id', 'received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('crm_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_notes_recording')
    op.drop_table('crm_notes')
    with op.batch_alter_table('transcript_terms', schema=None) as batch_op:
        batch_op.drop_index('ix_transcript_terms_hash')
    op.drop_table('transcript_terms')
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.drop_index('ix_transcripts_status_claimed')
    op.drop_table('transcripts')
