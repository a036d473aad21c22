"""workflows: dependencies between jobs, priorities, per-job attempts,
a cap on running jobs per board, notes counted per attempt

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('boards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_running', sa.Integer(), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))
        batch_op.add_column(sa.Column('max_attempts', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('waiting_on', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))
    # claims now take the highest priority first
    op.drop_index('ix_jobs_claim', table_name='jobs')
    op.create_index('ix_jobs_claim', 'jobs',
                    ['board_id', 'stage', 'state', sa.text('priority DESC'), 'entered_at', 'id'])
    op.create_table(
        'dependencies',
        sa.Column('upstream_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('satisfied', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['upstream_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('upstream_id', 'job_id'),
    )
    op.create_index('ix_dependencies_job', 'dependencies', ['job_id'])


def downgrade():
    op.drop_index('ix_dependencies_job', table_name='dependencies')
    op.drop_table('dependencies')
    op.drop_index('ix_jobs_claim', table_name='jobs')
    op.create_index('ix_jobs_claim', 'jobs', ['board_id', 'stage', 'state', 'entered_at'])
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('notes')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('waiting_on')
        batch_op.drop_column('max_attempts')
        batch_op.drop_column('priority')
    with op.batch_alter_table('boards', schema=None) as batch_op:
        batch_op.drop_column('max_running')
