"""stage counts and throughput tables, flagged, failed and per-board job indexes

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stage_counts',
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('stage', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('board_id', 'stage', 'state'),
    )
    op.create_table(
        'throughput',
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('stage', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('minute', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('board_id', 'stage', 'minute'),
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_board', ['board_id', 'id'], unique=False)
        batch_op.create_index('ix_jobs_flagged', ['board_id'], unique=False,
                              sqlite_where=sa.text('flagged = 1'), postgresql_where=sa.text('flagged'))
        batch_op.create_index('ix_jobs_failed', ['board_id', 'entered_at'], unique=False,
                              sqlite_where=sa.text("state = 'failed'"),
                              postgresql_where=sa.text("state = 'failed'"))
    # Existing boards: count once, here.
    op.execute("INSERT INTO stage_counts (board_id, stage, state, n) "
               "SELECT board_id, stage, state, count(*) FROM jobs GROUP BY board_id, stage, state")


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_failed')
        batch_op.drop_index('ix_jobs_flagged')
        batch_op.drop_index('ix_jobs_board')
    op.drop_table('throughput')
    op.drop_table('stage_counts')
