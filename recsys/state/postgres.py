"""The shared state in PostgreSQL (psycopg 3 and its connection pool): what lets many replicas on many hosts
serve one inventory, collect one feedback log and follow one model pointer.

Imported only when a ``postgresql://`` state URL is opened, so the package works without psycopg.

- The schema is created on first contact (idempotent, under an advisory lock so that replicas starting
  together do not race) and versioned in ``recsys_schema_version``.
- A stock batch takes a transaction-level advisory lock before it draws its sequence number, so sequence
  numbers follow commit order: a reader that has seen N has seen every batch before N, and "the rows after N"
  never skips a batch that committed late.
- The batch's ``NOTIFY`` is sent in the same transaction, so it is delivered only if, and after, the batch
  committed. Notifications are only a wake-up: a replica that was disconnected catches up by sequence.
- A store's snapshot is one such batch: it deletes the store's rows (closed-world) or upserts the listed ones,
  and writes the store's marker, in one transaction. A catch-up reads the rows and the markers in one
  ``REPEATABLE READ`` transaction, so it never sees a snapshot's rows without its marker.
- A database that cannot be reached raises :class:`recsys.state.storage.StateUnavailableError` (nothing written).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from recsys.model.registry import check_version
from recsys.state.experiments import COLUMNS, Experiment, ExperimentError, counter_rows, experiment_of, row_of
from recsys.state.feedback import Feedback, Recorded, answer_key, from_json, to_json
from recsys.state.inventory import (
    StockChanges,
    StockUpdate,
    check_snapshot,
    id_blob,
    snapshot_marker_of,
    stock_update_of,
)
from recsys.state.keys import ApiKey, api_key_of
from recsys.state.storage import SCHEMA_VERSION, StateSchemaError, StateUnavailableError, redact, utc_now

CHANNEL: Final[str] = "recsys_state"
#: arbitrary constants naming this package's advisory locks
SCHEMA_LOCK: Final[int] = 0x7265637379730001
STOCK_LOCK: Final[int] = 0x7265637379730002
CONNECT_TIMEOUT_S: Final[int] = 3

SCHEMA: Final[tuple[str, ...]] = (
    "CREATE TABLE IF NOT EXISTS recsys_schema_version (version integer NOT NULL)",
    "CREATE SEQUENCE IF NOT EXISTS recsys_stock_seq",
    "CREATE TABLE IF NOT EXISTS recsys_stock (store_id bytea NOT NULL, item_id bytea NOT NULL, "
    "in_stock boolean NOT NULL, restock_eta text, updated_at timestamptz NOT NULL DEFAULT now(), "
    "seq bigint NOT NULL, PRIMARY KEY (store_id, item_id))",
    "CREATE INDEX IF NOT EXISTS recsys_stock_seq_idx ON recsys_stock (seq)",
    "CREATE TABLE IF NOT EXISTS recsys_feedback (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "body text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS recsys_model_pointer (id integer PRIMARY KEY CHECK (id = 1), "
    "version text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    # schema 3: one decision per answer (older rows have none, and are never learned from), keys, secrets
    "ALTER TABLE recsys_feedback ADD COLUMN IF NOT EXISTS answer text",
    "CREATE UNIQUE INDEX IF NOT EXISTS recsys_feedback_answer_idx ON recsys_feedback (answer)",
    "CREATE TABLE IF NOT EXISTS recsys_api_keys (key_hash text PRIMARY KEY, name text NOT NULL, "
    "scopes text NOT NULL, created_at text NOT NULL, revoked_at text)",
    "CREATE UNIQUE INDEX IF NOT EXISTS recsys_api_keys_active_name ON recsys_api_keys (name) "
    "WHERE revoked_at IS NULL",
    "CREATE TABLE IF NOT EXISTS recsys_secrets (name text PRIMARY KEY, value bytea NOT NULL)",
    # schema 4: whole-store stock snapshots (a store without a marker is as it was: not closed-world)
    "CREATE TABLE IF NOT EXISTS recsys_stock_snapshots (store_id bytea PRIMARY KEY, unlisted_out boolean NOT NULL, "
    "seq bigint NOT NULL, replaced_seq bigint, updated_at timestamptz NOT NULL DEFAULT now())",
    # schema 5: online experiments, their answer counters, and the feedback's experiment (older rows: none)
    "CREATE TABLE IF NOT EXISTS recsys_experiments (name text PRIMARY KEY, control text NOT NULL, "
    "treatment text NOT NULL, share double precision NOT NULL, stores text NOT NULL, starts_at text NOT NULL, "
    "stops_at text, stopped_at text, created_at text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recsys_experiment_answers (name text NOT NULL, arm text NOT NULL, "
    "answers bigint NOT NULL, PRIMARY KEY (name, arm))",
    "ALTER TABLE recsys_feedback ADD COLUMN IF NOT EXISTS experiment text",
    # schema 5 too: the whole orders (batch answers) served per arm; a database written before: 0 so far
    "ALTER TABLE recsys_experiment_answers ADD COLUMN IF NOT EXISTS orders bigint NOT NULL DEFAULT 0",
    # schema 5 too: merchandising rules, one JSON body per name
    "CREATE TABLE IF NOT EXISTS recsys_rules (name text PRIMARY KEY, body text NOT NULL, "
    "updated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS recsys_feedback_experiment_idx ON recsys_feedback (experiment)",
)


class PostgresState:
    """:class:`recsys.state.store.StateStore` on PostgreSQL. Creating one never waits for the server: the pool
    connects in the background, and each call raises :class:`StateUnavailableError` while it is down."""

    def __init__(self, url: str, pool_size: int = 4, timeout_s: float = 3.0, password: str | None = None) -> None:
        """``password``: used when ``url`` has none (given apart from it, it stays out of the process list)."""
        self.url = redact(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"state URL {self.url!r}: {exc}") from exc
        if password and not params.get("password"):
            params["password"] = password
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        self._params: dict[str, Any] = params  # libpq keywords, passed to psycopg.connect as they are
        self._timeout_s = timeout_s
        self._pool = ConnectionPool(kwargs=params, min_size=1, max_size=pool_size, open=False, timeout=timeout_s,
                                    check=ConnectionPool.check_connection, reconnect_timeout=float("inf"),
                                    name="recsys-state")
        self._pool.open(wait=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._listener: psycopg.Connection | None = None
        self.stock = _Stock(self)
        self.feedback = _Feedback(self)
        self.experiments = _Experiments(self)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction, committed on exit; any connection failure becomes
        :class:`StateUnavailableError`, so a caller never acknowledges what may not have committed."""
        try:
            with self._pool.connection() as connection:
                if not self._schema_ready:
                    self._create_schema(connection)
                with connection.transaction():
                    yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StateUnavailableError(f"state database {self.url} unreachable: {exc}") from exc

    def _create_schema(self, connection: psycopg.Connection) -> None:
        with self._schema_lock, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                connection.execute(statement)
            row = connection.execute("SELECT max(version) FROM recsys_schema_version").fetchone()
            stored = row[0] if row else None
            if stored is None:
                connection.execute("INSERT INTO recsys_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif stored > SCHEMA_VERSION:
                raise StateSchemaError(f"state schema version {stored} is newer than this build's "
                                       f"{SCHEMA_VERSION}: upgrade recsys")
            elif stored < SCHEMA_VERSION:
                connection.execute("UPDATE recsys_schema_version SET version = %s", (SCHEMA_VERSION,))
        self._schema_ready = True

    def model_pointer(self) -> str | None:
        with self.transaction() as connection:
            row = connection.execute("SELECT version FROM recsys_model_pointer WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def set_model_pointer(self, version: str) -> None:
        check_version(version)
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO recsys_model_pointer (id, version) VALUES (1, %s) ON CONFLICT (id) DO UPDATE "
                "SET version = excluded.version, updated_at = now()", (version,))
            connection.execute("SELECT pg_notify(%s, 'model')", (CHANNEL,))

    def add_key(self, key: ApiKey) -> None:
        try:
            with self.transaction() as connection:
                connection.execute(
                    "INSERT INTO recsys_api_keys (key_hash, name, scopes, created_at) VALUES (%s, %s, %s, %s)",
                    (key.key_hash, key.name, ",".join(sorted(key.scopes)), key.created_at))
                connection.execute("SELECT pg_notify(%s, 'keys')", (CHANNEL,))
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(f"a key named {key.name!r} exists: revoke it first") from exc

    def api_keys(self) -> list[ApiKey]:
        with self.transaction() as connection:
            rows = connection.execute("SELECT name, scopes, key_hash, created_at, revoked_at FROM recsys_api_keys "
                                      "ORDER BY created_at, name").fetchall()
        return [api_key_of(*row) for row in rows]

    def revoke_key(self, name: str) -> bool:
        with self.transaction() as connection:
            cursor = connection.execute("UPDATE recsys_api_keys SET revoked_at = %s WHERE name = %s AND "
                                        "revoked_at IS NULL", (utc_now(), name))
            # announced: the other replicas drop the key at once, not at their next poll
            connection.execute("SELECT pg_notify(%s, 'keys')", (CHANNEL,))
        return cursor.rowcount > 0

    def save_rule(self, name: str, body: str) -> bool:
        with self.transaction() as connection:
            row = connection.execute(
                "INSERT INTO recsys_rules (name, body) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET "
                "body = excluded.body, updated_at = now() RETURNING (xmax = 0)", (name, body)).fetchone()
            connection.execute("SELECT pg_notify(%s, 'rules')", (CHANNEL,))  # the others apply it at once
        return bool(row[0])  # type: ignore[index]

    def rules(self) -> list[str]:
        with self.transaction() as connection:
            rows = connection.execute("SELECT body FROM recsys_rules ORDER BY name").fetchall()
        return [str(body) for (body,) in rows]

    def remove_rule(self, name: str) -> bool:
        with self.transaction() as connection:
            cursor = connection.execute("DELETE FROM recsys_rules WHERE name = %s", (name,))
            connection.execute("SELECT pg_notify(%s, 'rules')", (CHANNEL,))
        return cursor.rowcount > 0

    def shared_secret(self, name: str) -> bytes:
        with self.transaction() as connection:
            connection.execute("INSERT INTO recsys_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                               "DO NOTHING", (name, secrets.token_bytes(32)))
            row = connection.execute("SELECT value FROM recsys_secrets WHERE name = %s", (name,)).fetchone()
        return bytes(row[0])  # type: ignore[index]

    def wait_for_change(self, timeout_s: float) -> bool:
        """``LISTEN`` on a connection of its own (not the pool's); reconnects on the next call after a failure."""
        try:
            if self._listener is None:
                listener = psycopg.connect(**self._params, autocommit=True)
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                self._listener = listener
            for _ in self._listener.notifies(timeout=timeout_s, stop_after=1):
                return True
            return False
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop_listener()
            raise StateUnavailableError(f"state database {self.url} unreachable: {exc}") from exc

    def interrupt(self) -> None:
        pass  # a wait lasts one polling interval at most

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except psycopg.Error:
                pass

    def close(self) -> None:
        self._drop_listener()
        self._pool.close(timeout=self._timeout_s)


class _Stock:
    def __init__(self, state: PostgresState) -> None:
        self._state = state

    def save_stock(self, updates: list[StockUpdate]) -> int:
        rows = [_row(u) for u in updates]
        with self._state.transaction() as connection:
            seq = _draw_seq(connection)
            with connection.cursor() as cursor:
                cursor.executemany(_UPSERT, [(*row, seq) for row in rows])
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"stock {seq}"))
        return seq

    def save_snapshot(self, store_id: str, updates: list[StockUpdate], unlisted_out: bool) -> int:
        check_snapshot(store_id, updates)
        store = id_blob(store_id)
        rows = [_row(u) for u in updates]
        with self._state.transaction() as connection:
            seq = _draw_seq(connection)
            with connection.cursor() as cursor:
                if unlisted_out:
                    # the store becomes exactly the listed rows: a nightly import does not grow the database
                    cursor.execute("DELETE FROM recsys_stock WHERE store_id = %s", (store,))
                    with cursor.copy("COPY recsys_stock (store_id, item_id, in_stock, restock_eta, seq) "
                                     "FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row((*row, seq))
                    cursor.execute(
                        "INSERT INTO recsys_stock_snapshots (store_id, unlisted_out, seq, replaced_seq) "
                        "VALUES (%s, true, %s, %s) ON CONFLICT (store_id) DO UPDATE SET unlisted_out = true, "
                        "seq = excluded.seq, replaced_seq = excluded.replaced_seq, updated_at = now()",
                        (store, seq, seq))
                else:
                    cursor.executemany(_UPSERT, [(*row, seq) for row in rows])
                    # the closed-world flag and the last replacement stay as they were
                    cursor.execute(
                        "INSERT INTO recsys_stock_snapshots (store_id, unlisted_out, seq) VALUES (%s, false, %s) "
                        "ON CONFLICT (store_id) DO UPDATE SET seq = excluded.seq, updated_at = now()", (store, seq))
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"stock {seq}"))
        return seq

    def stock_since(self, seq: int) -> StockChanges:
        with self._state.transaction() as connection:
            # both reads from one snapshot of the database: a snapshot's rows never without its marker
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = connection.execute(
                "SELECT store_id, item_id, in_stock, restock_eta, seq FROM recsys_stock WHERE seq > %s "
                "ORDER BY seq", (seq,)).fetchall()
            markers = connection.execute(
                "SELECT store_id, unlisted_out, replaced_seq, seq FROM recsys_stock_snapshots WHERE seq > %s",
                (seq,)).fetchall()
        return StockChanges(
            [stock_update_of(store, item, in_stock, eta) for store, item, in_stock, eta, _ in rows],
            [snapshot_marker_of(*marker[:3]) for marker in markers],
            max([seq, *(int(row[4]) for row in rows), *(int(marker[3]) for marker in markers)]))


_UPSERT: Final[str] = (
    "INSERT INTO recsys_stock (store_id, item_id, in_stock, restock_eta, seq) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (store_id, item_id) DO UPDATE SET in_stock = excluded.in_stock, "
    "restock_eta = excluded.restock_eta, updated_at = now(), seq = excluded.seq")


def _row(update: StockUpdate) -> tuple[bytes, bytes, bool, str | None]:
    return (id_blob(update.store_id), id_blob(update.item_id), update.in_stock,
            update.restock_eta.isoformat() if update.restock_eta else None)


def _draw_seq(connection: psycopg.Connection) -> int:
    """The next sequence number, drawn under the stock lock, which is held until commit: sequence numbers
    follow commit order."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (STOCK_LOCK,))
    return int(connection.execute("SELECT nextval('recsys_stock_seq')").fetchone()[0])  # type: ignore[index]


class _Feedback:
    def __init__(self, state: PostgresState) -> None:
        self._state = state

    def record(self, feedback: Feedback) -> Recorded:
        key = answer_key(feedback.answer_id)
        with self._state.transaction() as connection:
            row = connection.execute("INSERT INTO recsys_feedback (body, answer, experiment) VALUES (%s, %s, %s) "
                                     "ON CONFLICT (answer) DO NOTHING RETURNING id",
                                     (to_json(feedback), key, feedback.experiment)).fetchone()
            if row is not None:
                return Recorded(int(row[0]), True, feedback)
            earlier = connection.execute("SELECT id, body FROM recsys_feedback WHERE answer = %s",
                                         (key,)).fetchone()
        return Recorded(int(earlier[0]), False, from_json(earlier[1]))  # type: ignore[index]

    def feedback(self) -> list[Feedback]:
        with self._state.transaction() as connection:
            rows = connection.execute("SELECT body FROM recsys_feedback ORDER BY id").fetchall()
        return [from_json(body) for (body,) in rows]

    def experiment_feedback(self, experiment: str) -> list[Feedback]:
        with self._state.transaction() as connection:
            rows = connection.execute("SELECT body FROM recsys_feedback WHERE experiment = %s ORDER BY id",
                                      (experiment,)).fetchall()
        return [from_json(body) for (body,) in rows]


class _Experiments:
    """The experiments and their answer counters; a new or stopped experiment is announced, so replicas follow it
    at once rather than at their next poll."""

    def __init__(self, state: PostgresState) -> None:
        self._state = state

    def add_experiment(self, experiment: Experiment) -> None:
        try:
            with self._state.transaction() as connection:
                connection.execute(f"INSERT INTO recsys_experiments ({COLUMNS}) VALUES "
                                   "(%s, %s, %s, %s, %s, %s, %s, %s, %s)", row_of(experiment))
                connection.execute("SELECT pg_notify(%s, 'experiments')", (CHANNEL,))
        except psycopg.errors.UniqueViolation as exc:
            raise ExperimentError("name", f"an experiment named {experiment.name!r} exists", True) from exc

    def experiments(self) -> list[Experiment]:
        with self._state.transaction() as connection:
            rows = connection.execute(f"SELECT {COLUMNS} FROM recsys_experiments ORDER BY created_at, name"
                                      ).fetchall()
        return [experiment_of(*row) for row in rows]

    def stop_experiment(self, name: str, at: str) -> bool:
        with self._state.transaction() as connection:
            cursor = connection.execute("UPDATE recsys_experiments SET stopped_at = %s WHERE name = %s AND "
                                        "stopped_at IS NULL", (at, name))
            connection.execute("SELECT pg_notify(%s, 'experiments')", (CHANNEL,))
        return cursor.rowcount > 0

    def add_answers(self, counts: Mapping[tuple[str, str], int],
                    orders: Mapping[tuple[str, str], int] | None = None) -> None:
        rows = counter_rows(counts, orders)
        if not rows:
            return
        with self._state.transaction() as connection, connection.cursor() as cursor:
            cursor.executemany("INSERT INTO recsys_experiment_answers (name, arm, answers, orders) "
                               "VALUES (%s, %s, %s, %s) ON CONFLICT (name, arm) DO UPDATE SET "
                               "answers = recsys_experiment_answers.answers + excluded.answers, "
                               "orders = recsys_experiment_answers.orders + excluded.orders", rows)

    def answers(self, name: str) -> dict[str, int]:
        with self._state.transaction() as connection:
            rows = connection.execute("SELECT arm, answers FROM recsys_experiment_answers WHERE name = %s",
                                      (name,)).fetchall()
        return {str(arm): int(n) for arm, n in rows}

    def orders(self, name: str) -> dict[str, int]:
        with self._state.transaction() as connection:
            rows = connection.execute("SELECT arm, orders FROM recsys_experiment_answers WHERE name = %s",
                                      (name,)).fetchall()
        return {str(arm): int(n) for arm, n in rows}
