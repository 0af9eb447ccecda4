"""The service's durable state file: SQLite in WAL mode with ``synchronous=FULL``, so a committed write
survives a killed process. Shared by the inventory and the feedback log."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path | None) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (callers serialise with their own lock); ``None``
    opens a private in-memory database."""
    if path is None:
        return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection
