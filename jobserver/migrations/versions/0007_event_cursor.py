"""events: a cursor in commit order (the writing transaction's id on
PostgreSQL), per-board retention marker

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# PostgreSQL: the id of the transaction that writes the event (xid8, as a
# bigint); readers stop below the oldest transaction still running (see
# lifecycle/events.py).  SQLite has one writer at a time: 0 there, ids suffice.
PG_TX = "(pg_current_xact_id()::text::bigint)"


def upgrade():
    # plain ALTER TABLE ADD COLUMN (SQLite too): no table is copied, and
    # no board's jobs go with a dropped copy by cascade
    op.add_column('events', sa.Column('tx', sa.BigInteger(), nullable=False,
                                      server_default=sa.text('0')))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"ALTER TABLE events ALTER COLUMN tx SET DEFAULT {PG_TX}")
    else:
        # AUTOINCREMENT: SQLite would otherwise give the id of the newest
        # event again once the retention (or a board's deletion) removed it,
        # and a follower's cursor would skip the new one.  No table refers
        # to events, so copying it is safe.
        with op.batch_alter_table('events', recreate='always',
                                  table_kwargs={'sqlite_autoincrement': True}):
            pass
    op.create_index('ix_events_cursor', 'events', ['board_id', 'tx', 'id'])
    # the retention walks the cursor index: no index by age, which every
    # event written (two per job) would pay for
    op.drop_index('ix_events_board_at', table_name='events')
    # the newest cursor removed by the retention: older cursors get 410
    for column in ('events_pruned_tx', 'events_pruned_id'):
        op.add_column('boards', sa.Column(column, sa.BigInteger(), nullable=False,
                                          server_default=sa.text('0')))


def downgrade():
    # plain DROP COLUMN (SQLite 3.35+), for the reason given above
    op.drop_column('boards', 'events_pruned_id')
    op.drop_column('boards', 'events_pruned_tx')
    op.create_index('ix_events_board_at', 'events', ['board_id', 'at'])
    op.drop_index('ix_events_cursor', table_name='events')
    op.drop_column('events', 'tx')
