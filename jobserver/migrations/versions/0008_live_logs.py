"""live logs: what running jobs print, in chunks per attempt, with the
bytes received per attempt and kept per board

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # new tables only: no existing table is altered (on SQLite a copied and
    # dropped boards or jobs table would take their rows with it by cascade)
    op.create_table(
        'log_chunks',
        # 64 bits on PostgreSQL (chunks come with every heartbeat); SQLite's
        # INTEGER PRIMARY KEY is its 64-bit rowid
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('stream', sa.String(length=3), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('offset', sa.BigInteger(), nullable=False),
        sa.Column('pos', sa.BigInteger(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_log_chunks_attempt', 'log_chunks', ['attempt_id', 'pos'])
    op.create_index('ix_log_chunks_board', 'log_chunks', ['board_id', 'id'])
    op.create_index('ix_log_chunks_job', 'log_chunks', ['job_id'])
    op.create_table(
        'attempt_logs',
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('out_end', sa.BigInteger(), nullable=False),
        sa.Column('err_end', sa.BigInteger(), nullable=False),
        sa.Column('pos', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('attempt_id'),
    )
    op.create_index('ix_attempt_logs_job', 'attempt_logs', ['job_id'])
    op.create_table(
        'board_logs',
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('board_id'),
    )


def downgrade():
    op.drop_table('board_logs')
    op.drop_index('ix_attempt_logs_job', table_name='attempt_logs')
    op.drop_table('attempt_logs')
    for name in ('ix_log_chunks_job', 'ix_log_chunks_board', 'ix_log_chunks_attempt'):
        op.drop_index(name, table_name='log_chunks')
    op.drop_table('log_chunks')
