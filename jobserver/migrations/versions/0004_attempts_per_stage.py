"""attempts counted per stage, failed jobs at the stage they failed at,
first/last arrival per throughput minute

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('throughput', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('last_at', sa.Float(), nullable=True))
    # A job failed for good now stays at the (even) stage it was claimed
    # from, where its history records the failure.
    op.execute("UPDATE jobs SET stage = stage - 1 WHERE state = 'failed' AND stage % 2 = 1")
    # Attempts count failures and losses at the job's current stage (plus
    # the one running now), no longer every claim since the job was pushed.
    op.execute(
        "UPDATE jobs SET attempts = (SELECT count(*) FROM attempts a WHERE a.job_id = jobs.id "
        "AND a.stage = jobs.stage - jobs.stage % 2 "
        "AND a.outcome IN ('failed', 'lost', 'running')) WHERE attempts > 0")
    # The kept counters follow the moved failed jobs: count once, here.
    op.execute("DELETE FROM stage_counts")
    op.execute("INSERT INTO stage_counts (board_id, stage, state, n) "
               "SELECT board_id, stage, state, count(*) FROM jobs GROUP BY board_id, stage, state")


def downgrade():
    with op.batch_alter_table('throughput', schema=None) as batch_op:
        batch_op.drop_column('last_at')
        batch_op.drop_column('first_at')
