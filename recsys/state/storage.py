"""The service's durable state file: SQLite in WAL mode with ``synchronous=FULL``, so a committed write
survives a killed process. Shared by the inventory, the feedback log and the model pointer, and by every
worker process on one host.

The schema is created on first use and versioned (``schema_version``): version 2 added the stock rows'
sequence number (``seq``), by which another process catches up with the changes it has not seen; version 3
the API keys (hashed), the shared secrets (the answer-signing key) and the feedback's answer key (one
decision per answer); version 4 the stock snapshot markers (``stock_snapshots``: per store, its closed-world
flag and the sequence numbers of its last snapshot and of its last replacement); version 5 the online experiments
(``experiments``), their answer and whole-order counters per arm (``experiment_answers``) and the feedback's
experiment (older rows: none).
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import unquote

#: the schema this build writes; older files are migrated in place when opened
SCHEMA_VERSION: Final[int] = 5


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
        # version 4: a version-3 file has no snapshot yet, so every store in it stays as it was (not closed-world)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS stock_snapshots (store_id BLOB PRIMARY KEY, unlisted_out INTEGER NOT NULL, "
            "seq INTEGER NOT NULL, replaced_seq INTEGER, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
        if "answer" not in {row[1] for row in connection.execute("PRAGMA table_info(feedback)")}:
            connection.execute("ALTER TABLE feedback ADD COLUMN answer TEXT")  # older rows: NULL, never learned
        connection.execute("CREATE UNIQUE INDEX IF NOT EXISTS feedback_answer ON feedback (answer)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
            "scopes TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)")
        connection.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL")
        connection.execute("CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
        # version 5: online experiments; feedback recorded before them belongs to none
        connection.execute(
            "CREATE TABLE IF NOT EXISTS experiments (name TEXT PRIMARY KEY, control TEXT NOT NULL, "
            "treatment TEXT NOT NULL, share REAL NOT NULL, stores TEXT NOT NULL, starts_at TEXT NOT NULL, "
            "stops_at TEXT, stopped_at TEXT, created_at TEXT NOT NULL)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS experiment_answers (name TEXT NOT NULL, arm TEXT NOT NULL, "
            "answers INTEGER NOT NULL, orders INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, arm))")
        # version 5 too: the whole orders (batch answers) served per arm; a file written before: 0 so far
        if "orders" not in {row[1] for row in connection.execute("PRAGMA table_info(experiment_answers)")}:
            connection.execute("ALTER TABLE experiment_answers ADD COLUMN orders INTEGER NOT NULL DEFAULT 0")
        if "experiment" not in {row[1] for row in connection.execute("PRAGMA table_info(feedback)")}:
            connection.execute("ALTER TABLE feedback ADD COLUMN experiment TEXT")
        connection.execute("CREATE INDEX IF NOT EXISTS feedback_experiment ON feedback (experiment)")
        # version 5 too: merchandising rules, one JSON body per name
        connection.execute("CREATE TABLE IF NOT EXISTS rules (name TEXT PRIMARY KEY, body TEXT NOT NULL, "
                           "updated_at TEXT NOT NULL)")
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


MASK: Final[str] = "***"
#: a URL (``postgresql://...``, ``sqlite:///...``): libpq tells its two forms apart by this prefix
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: how a libpq ``key=value`` connection string starts: a keyword, then ``=`` (a file path has a separator first)
_CONNINFO = re.compile(r"\s*[A-Za-z_]+\s*=")
#: one parameter of a URL's query: separator, key, value
_QUERY_PARAM = re.compile(r"([?&])([^&=#]*)=([^&#]*)")


def is_conninfo(text: str) -> bool:
    """Whether ``text`` is a libpq ``key=value`` connection string (``host=db dbname=recsys``) rather than a URL
    or a file path."""
    return _URL.match(text) is None and _CONNINFO.match(text) is not None


def conninfo_values(conninfo: str) -> list[tuple[str, int, int]] | None:
    """(keyword, start, end) of each value of a libpq ``key=value`` string, read by libpq's rules (blanks around
    ``=``, values quoted with ``'``, backslash escapes); None when it is malformed."""
    values: list[tuple[str, int, int]] = []
    i, n = 0, len(conninfo)
    while True:
        while i < n and conninfo[i].isspace():
            i += 1
        if i == n:
            return values
        start = i
        while i < n and not conninfo[i].isspace() and conninfo[i] != "=":
            i += 1
        keyword = conninfo[start:i]
        while i < n and conninfo[i].isspace():
            i += 1
        if not keyword or i == n or conninfo[i] != "=":
            return None
        i += 1
        while i < n and conninfo[i].isspace():
            i += 1
        start = i
        if i < n and conninfo[i] == "'":
            i += 1
            while i < n and conninfo[i] != "'":
                i += 2 if conninfo[i] == "\\" else 1
            if i >= n:
                return None  # an unterminated quote
            i += 1
        else:
            while i < n and not conninfo[i].isspace():
                i += 2 if conninfo[i] == "\\" else 1
            i = min(i, n)
        values.append((keyword, start, i))


def _password_spans(url: str) -> list[tuple[int, int]] | None:
    """Where the passwords are in a state URL or libpq connection string (None: a malformed connection string)."""
    prefix = _URL.match(url)
    if prefix is None:
        if not is_conninfo(url):
            return []  # a file path
        values = conninfo_values(url)
        return None if values is None else [(start, end) for keyword, start, end in values if keyword == "password"]
    spans = []
    # the user part ends at the last "@": libpq and urlsplit split a password holding an unescaped "@", "/" or "?"
    # differently, so the widest reading is hidden
    at = url.rfind("@", prefix.end())
    colon = url.find(":", prefix.end(), at) if at >= 0 else -1
    if colon >= 0:
        spans.append((colon + 1, at))
    spans += [(m.start(3), m.end(3)) for m in _QUERY_PARAM.finditer(url, prefix.end()) if unquote(m[2]) == "password"]
    return spans


def has_password(url: str) -> bool:
    """Whether a state URL or libpq connection string carries a non-empty password."""
    spans = _password_spans(url)
    return spans is None and "password" in url or any(end > start for start, end in spans or ())


def utc_now() -> str:
    """Now in UTC to the second (ISO 8601): when a state row was written."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def redact(url: str) -> str:
    """``url`` with each password replaced by ``***``: a state URL (its user part and a ``password`` query
    parameter) or libpq ``key=value`` connection string as it may be logged and shown."""
    spans = _password_spans(url)
    if spans is None:  # libpq would refuse it too: hide all from the first password on
        cut = url.find("password")
        return url if cut < 0 else f"{url[:cut]}password={MASK}"
    parts, last = [], 0
    for start, end in sorted(spans):
        if start >= last:
            parts += [url[last:start], MASK]
        last = max(last, end)
    return "".join(parts) + url[last:]
