"""pools: the allocation workers run in, the allocations a pool asked for,
resource samples over time

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allocation', sa.String(length=200), nullable=True))
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allocation', sa.String(length=200), nullable=True))
    op.create_table(
        'allocations',
        sa.Column('board_id', sa.Integer(), nullable=False),
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('pool', sa.String(length=200), nullable=True),
        sa.Column('scheduler', sa.String(length=16), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('nodes', sa.Integer(), nullable=True),
        sa.Column('workers_per_node', sa.Integer(), nullable=True),
        sa.Column('time_limit_s', sa.Float(), nullable=True),
        sa.Column('submitted_at', sa.Float(), nullable=False),
        sa.Column('started_at', sa.Float(), nullable=True),
        sa.Column('ended_at', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['board_id'], ['boards.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('board_id', 'id'),
    )
    op.create_table(
        'samples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('attempt_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('host', sa.String(length=200), nullable=True),
        sa.Column('allocation', sa.String(length=200), nullable=True),
        sa.Column('cpu_percent', sa.Float(), nullable=True),
        sa.Column('rss_bytes', sa.BigInteger(), nullable=True),
        sa.Column('runtime_s', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['attempt_id'], ['attempts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_samples_attempt', 'samples', ['attempt_id', 'at'])


def downgrade():
    op.drop_index('ix_samples_attempt', table_name='samples')
    op.drop_table('samples')
    op.drop_table('allocations')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_column('allocation')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('allocation')
