"""The one spot for what differs between SQLite and PostgreSQL."""
from __future__ import annotations

import collections
import functools
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, NamedTuple

from sqlalchemy import Table, Text, bindparam, cast, event, func, literal_column, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine


def insert_ignore(table: Table, conflict_columns: list[str], dialect_name: str) -> Any:
    """An INSERT that silently skips rows whose unique key already exists."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    raise NotImplementedError(f"unsupported database: {dialect_name}")


def insert_rows_ignore(conn: Connection, table: Table, conflict_columns: list[str],
                       columns: list[str], rows: list[tuple]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order), skipping those whose
    unique key already exists; returns how many were inserted.

    On SQLite the statement (compiled by SQLAlchemy, once) goes to the
    driver's executemany, whose rowcount is the exact sum of inserted rows;
    this skips SQLAlchemy's per-row parameter processing, which was a third
    of a big push.  Elsewhere, INSERT ... ON CONFLICT DO NOTHING RETURNING,
    counted (a portable count, where executemany's rowcount is not)."""
    if not rows:
        return 0
    if conn.dialect.name == "sqlite":
        sql = _positional_insert_ignore(table, tuple(conflict_columns), tuple(columns))
        return conn.exec_driver_sql(sql, rows).rowcount
    return len(insert_rows_returning(conn, table, conflict_columns, columns, rows,
                                     tuple(c.name for c in table.primary_key)))


def insert_rows_returning(conn: Connection, table: Table, conflict_columns: list[str],
                          columns: list[str], rows: list[tuple],
                          returning: tuple[str, ...]) -> list[Any]:
    """As insert_rows_ignore, answering the ``returning`` columns of the
    rows inserted.  On PostgreSQL the rows travel as one array per column
    in a single INSERT ... SELECT FROM unnest(...): a statement per chunk,
    not per row, which made pushes several times faster there."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        sql = _unnest_insert_ignore(table, tuple(conflict_columns), tuple(columns), returning)
        return conn.exec_driver_sql(sql, tuple(list(col) for col in zip(*rows))).all()
    stmt = (insert_ignore(table, conflict_columns, conn.dialect.name)
            .returning(*(table.c[c] for c in returning)))
    return conn.execute(stmt, [dict(zip(columns, row)) for row in rows]).all()


@functools.lru_cache(maxsize=16)
def _unnest_insert_ignore(table: Table, conflict_columns: tuple[str, ...],
                          columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
    """PostgreSQL's INSERT ... SELECT * FROM unnest(%s::type[], ...) ON
    CONFLICT DO NOTHING RETURNING ..., one array parameter per column."""
    pg = postgresql.dialect()
    arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=pg)}[]" for c in columns)
    quote = pg.identifier_preparer.quote
    return (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({', '.join(quote(c) for c in conflict_columns)}) DO NOTHING "
            f"RETURNING {', '.join(quote(c) for c in returning)}")


@functools.lru_cache(maxsize=16)
def _positional_insert_ignore(table: Table, conflict_columns: tuple[str, ...],
                              columns: tuple[str, ...]) -> str:
    """SQLite's INSERT ... ON CONFLICT DO NOTHING with one ``?`` per column,
    in ``columns`` order."""
    stmt = (sqlite.insert(table).values({c: bindparam(c) for c in columns})
            .on_conflict_do_nothing(index_elements=list(conflict_columns)))
    compiled = stmt.compile(dialect=sqlite.dialect())
    assert list(compiled.positiontup or ()) == list(columns)
    return compiled.string


class _Prepared(NamedTuple):
    sql: str
    names: tuple[str, ...] | None  # the parameters' order (positional styles), else None
    fixed: dict[str, Any]  # values the statement carries itself (literals), processed
    processors: dict[str, Any]  # SQLAlchemy's per-type conversions of parameters


class Hot:
    """A statement of the hot path (claims and reports), written with
    SQLAlchemy Core, compiled once per dialect and run on the DBAPI cursor of
    the transaction's connection (so, in its transaction).

    SQLAlchemy's execution layer (an execution context, parameter handling
    and a Result for every statement) cost more Python time than SQLite
    took to run the statements themselves: measured on the classic loop,
    1.3 of its 1.85 ms per job in-process (bench/scale_bench.py shows the
    effect through HTTP).  Parameters are given by name, as to
    ``conn.execute``; no expanding IN lists.  While statement listeners or
    echo are on, they run through SQLAlchemy instead.  Errors are the
    driver's own (nothing here catches SQLAlchemy's wrapped ones)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._prepared: dict[str, _Prepared] = {}
        self._rows: dict[str, Any] = {}

    def _for(self, dialect: Any) -> _Prepared:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            compiled = self.statement.compile(dialect=dialect)
            processors = dict(compiled._bind_processors)
            fixed = {name: bind.effective_value for bind, name in compiled.bind_names.items()
                     if not bind.required}
            # columns with a default in Python (not in the database) that
            # the statement leaves out: scalar ones are constants
            for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
                default = column.onupdate if column in compiled.update_prefetch else column.default
                if default is None or not default.is_scalar:
                    raise ValueError(f"Hot cannot compute the default of {column}: give it")
                fixed[column.key] = default.arg
            fixed = {k: processors[k](v) if k in processors else v for k, v in fixed.items()}
            names = tuple(compiled.positiontup) if compiled.positiontup else None
            prepared = self._prepared[dialect.name] = _Prepared(compiled.string, names, fixed,
                                                                processors)
        return prepared

    def _cursor(self, conn: Connection, params: dict[str, Any]) -> Any:
        p = self._for(conn.dialect)
        values = dict(p.fixed)
        for k, v in params.items():
            proc = p.processors.get(k)
            values[k] = v if proc is None else proc(v)
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute(p.sql, values if p.names is None else tuple([values[k] for k in p.names]))
        return cursor

    @staticmethod
    def _observed(conn: Connection) -> bool:
        """Somebody listens to statements (query recording, tracing, tests):
        then they go through SQLAlchemy, as every other statement does."""
        return bool(conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute
                    or conn.engine.echo)

    def all(self, conn: Connection, params: dict[str, Any]) -> list[Any]:
        """The rows it answers, as named tuples."""
        if self._observed(conn):
            return list(conn.execute(self.statement, params))
        cursor = self._cursor(conn, params)
        try:
            rows = cursor.fetchall()
            row = self._rows.get(conn.dialect.name)
            if row is None:
                row = self._rows[conn.dialect.name] = collections.namedtuple(
                    "Row", [d[0] for d in cursor.description], rename=True)
            return [row._make(r) for r in rows]
        finally:
            cursor.close()

    def first(self, conn: Connection, params: dict[str, Any]) -> Any:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def run(self, conn: Connection, params: dict[str, Any]) -> int:
        """Runs it; answers how many rows it changed."""
        if self._observed(conn):
            return conn.execute(self.statement, params).rowcount
        cursor = self._cursor(conn, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()


def tune_engine(engine: Engine) -> None:
    """Per-connection settings: WAL, a busy timeout and foreign keys on
    SQLite; commits that do not wait for the disk on PostgreSQL, except in
    durable transactions (see write_transaction)."""
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _postgresql_settings(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()
        return
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


class _Writer:
    """SQLite's single writer of one process: a lock and the connection that
    holds it.  Writes queue on the lock instead of in SQLite's busy handler
    (whose sleeps of up to 100 ms would throttle a busy server), and reuse
    one connection instead of a pool checkout each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: Connection | None = None


_writers: "weakref.WeakKeyDictionary[Engine, _Writer]" = weakref.WeakKeyDictionary()
_writers_guard = threading.Lock()


def _writer(engine: Engine) -> _Writer:
    with _writers_guard:
        w = _writers.get(engine)
        if w is None:
            w = _writers[engine] = _Writer()
        return w


# the server's own setting (postgresql.conf, the role's), not the
# connections' "off": an operator's remote_apply stays in force
_DURABLE_COMMIT = Hot(text("SET LOCAL synchronous_commit TO DEFAULT"))


def _durable(conn: Connection) -> None:
    """This transaction's commit waits for the disk as the server is set to
    (PostgreSQL; see write_transaction)."""
    if conn.dialect.name == "postgresql":
        _DURABLE_COMMIT.run(conn, {})


def durable_commit(conn: Connection) -> None:
    """For transactions not opened by write_transaction (migrations)."""
    _durable(conn)


@contextmanager
def write_transaction(engine: Engine, durable: bool = True) -> Iterator[Connection]:
    """One write transaction, committed on success and rolled back on error.

    On SQLite a process has one writer (see _Writer); other processes (a
    cron sweep, a second server) still wait on SQLite's busy timeout.
    PostgreSQL takes a pooled connection: row locks do the rest.

    ``durable=False`` (claims, reports, heartbeats): on PostgreSQL the
    commit does not wait for its WAL to reach the disk (the connections'
    setting, see tune_engine; other transactions ask for the server's own
    setting back).  A server process killed at any moment loses nothing; a
    crash of PostgreSQL (its machine, or its server process) may forget the
    last fraction of a second of claims and reports: their jobs are then
    claimed or run again, and a worker still holding such a forgotten claim
    gets a 409 when it reports, unless the attempt number was handed out
    again meanwhile.  Pushes and every other write wait for the disk.  It
    halves the time a claim holds the board's counter rows, which every
    claim and report updates, and saves a round trip."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            if durable:
                _durable(conn)
            yield conn
        return
    w = _writer(engine)
    with w.lock:
        if w.conn is None or w.conn.closed or w.conn.invalidated:
            w.conn = engine.connect()
        try:
            with w.conn.begin():
                yield w.conn
        except BaseException:
            if w.conn.invalidated:
                w.conn.close()
                w.conn = None
            raise


def close_writer(engine: Engine) -> None:
    """Give the writer connection back (before the engine is disposed)."""
    w = _writers.get(engine)
    if w is not None and w.conn is not None:
        with w.lock:
            w.conn.close()
            w.conn = None


def add_to_counters(table: Table, key_columns: list[str], dialect_name: str,
                    latest: tuple[str, ...] = (), rows: int = 1) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET n = n + excluded.n: adds
    to a counter row, creating it at first use (SQLite and PostgreSQL).
    The ``latest`` columns take the new row's value on every add (the
    others keep the value of the row's first insert).

    With ``rows`` > 1, one statement adds to that many counters (distinct
    keys), its parameters named ``<column>_<i>``: a claim or a report moves
    two or three counters, and one statement is far cheaper than an
    executemany (which psycopg runs as a pipeline)."""
    if rows > 1:
        # SQLAlchemy does not cache the compiled form of a multi-row
        # VALUES, and compiling it costs more than it saves: the statement
        # is written out once here (names from the table's metadata, values
        # bound), in the syntax SQLite and PostgreSQL share
        columns = [c.name for c in table.columns]
        values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")"
                           for i in range(rows))
        sets = ", ".join([f"n = {table.name}.n + excluded.n",
                          *(f"{c} = excluded.{c}" for c in latest)])
        return text(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {values} "
                    f"ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {sets}")
    if dialect_name == "postgresql":
        stmt = postgresql.insert(table)
    elif dialect_name == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise NotImplementedError(f"unsupported database: {dialect_name}")
    return stmt.on_conflict_do_update(
        index_elements=key_columns,
        set_={"n": table.c.n + stmt.excluded.n, **{c: stmt.excluded[c] for c in latest}})


def optimize(engine: Engine) -> None:
    """Refresh the query planner's statistics (SQLite's ANALYZE, sampling at
    most 1,000 rows an index, so a million-row table takes milliseconds).
    Without them SQLite may walk a whole board to find its few failed jobs."""
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL's autovacuum analyzes by itself
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")


SWEEP_LOCK = 0x6A6F6273776570  # an arbitrary 64-bit key: "jobswep"


def try_sweep_lock(conn: Connection) -> bool:
    """Whether this transaction may sweep: on PostgreSQL, one process at a
    time holds a transaction-scoped advisory lock (released at its commit,
    or when its process dies); SQLite's single writer needs none."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)",
                                     (SWEEP_LOCK,)).scalar())


def json_object(dialect_name: str, *pairs: Any) -> Any:
    """A JSON object built by the database from (key, column) pairs, as
    text: SQLite's json_object, PostgreSQL's json_build_object."""
    args = [a for key, column in pairs for a in (literal_column(f"'{key}'"), column)]
    if dialect_name == "postgresql":
        return cast(func.json_build_object(*args), Text)
    return func.json_object(*args)
