"""The service's durable state file: SQLite in WAL mode with ``synchronous=FULL``, so a committed write
survives a killed process. Shared by the inventory, the feedback log and the model pointer, and by every
worker process on one host.

The schema is created on first use and versioned (``schema_version``): version 2 added the stock rows'
sequence number (``seq``), by which another process catches up with the changes it has not seen.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

#: the schema this build writes; older files are migrated in place when opened
SCHEMA_VERSION: Final[int] = 2


class StateUnavailableError(RuntimeError):
    """The state database cannot be reached: nothing was written, so nothing may be acknowledged."""


class StateSchemaError(RuntimeError):
    """The state database was written by a newer build (its schema version is higher than this one's)."""


def connect(path: str | Path | None) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (callers serialise with their own lock), with the
    current schema; ``None`` opens a private in-memory database."""
    if path is None:
        connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # several worker processes share the file: wait for another's write rather than fail at once
        connection = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None, timeout=10.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    ensure_schema(connection)
    return connection


def ensure_schema(connection: sqlite3.Connection) -> None:
    """Create or migrate every table (idempotent; safe when several processes open the file at once)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS stock (store_id BLOB NOT NULL, item_id BLOB NOT NULL, "
            "in_stock INTEGER NOT NULL, restock_eta TEXT, updated_at TEXT DEFAULT CURRENT_TIMESTAMP, "
            "seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (store_id, item_id))")
        columns = {row[1] for row in connection.execute("PRAGMA table_info(stock)")}
        if "seq" not in columns:  # a version-1 file: its rows get sequence 0, read by every first load
            connection.execute("ALTER TABLE stock ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
        connection.execute("CREATE INDEX IF NOT EXISTS stock_seq ON stock (seq)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS model_pointer (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "version TEXT NOT NULL, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)")
        stored = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if stored is None:
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif stored < SCHEMA_VERSION:
            connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        elif stored > SCHEMA_VERSION:
            raise StateSchemaError(f"state schema version {stored} is newer than this build's "
                                        f"{SCHEMA_VERSION}: upgrade recsys")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``: a state URL as it may be logged and shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
