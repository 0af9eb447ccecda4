"""The live state that every serving process shares: stock changes, substitution feedback and the pointer to
the current model, behind one small interface, :class:`StateStore`, chosen by a URL:

- ``sqlite:///path`` (or a plain path): one SQLite file, embedded, for one host (all its worker processes);
- ``postgresql://user:pass@host:port/db``: one PostgreSQL database shared by replicas on many hosts
  (:mod:`recsys.state.postgres`; psycopg is imported only then, so the package works without it).

Every write is committed before it is acknowledged. Stock rows carry a sequence number assigned in commit
order, so a process catches up by reading "the changes after N" (:meth:`recsys.Inventory.catch_up`);
:meth:`StateStore.wait_for_change` returns early when another process wrote (PostgreSQL ``LISTEN``/``NOTIFY``)
and otherwise after a timeout, so a lost notification costs at most one polling interval.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import pandas as pd

from recsys.state import storage
from recsys.state.feedback import FeedbackLog, FeedbackStore, decisions_of
from recsys.state.inventory import SqliteStockStore, StockStore
from recsys.state.storage import StateUnavailableError, redact

__all__ = ["StateStore", "StateUnavailableError", "SqliteState", "check_url", "open_state", "read_decisions",
           "redact", "sqlite_path"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


class StateStore(Protocol):
    """Stock changes, feedback and the model pointer in one database."""

    url: str  # with any password hidden: safe to log and show

    @property
    def stock(self) -> StockStore: ...

    @property
    def feedback(self) -> FeedbackStore: ...

    def model_pointer(self) -> str | None:
        """The version every replica should serve, None when nothing was promoted through the state."""

    def set_model_pointer(self, version: str) -> None:
        """Point every replica at ``version`` (committed, and announced to the listening ones)."""

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until another process may have written (True) or ``timeout_s`` passed (False)."""

    def interrupt(self) -> None:
        """Make a :meth:`wait_for_change` in progress return soon (on shutdown)."""

    def close(self) -> None: ...


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL or a plain path; None for any other URL."""
    if url.startswith(SQLITE_PREFIX):
        return Path(url.removeprefix(SQLITE_PREFIX))
    if "://" in url:
        return None
    return Path(url)


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a state URL of a known kind (nothing is opened)."""
    path = sqlite_path(url)
    if path is not None:
        if str(path) in ("", "."):
            raise ValueError(f"state URL {url!r} names no file: use sqlite:///path/to/state.sqlite3")
        return
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES or not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"state URL {redact(url)!r}: expected sqlite:///path or "
                         "postgresql://user:pass@host:port/db")


def open_state(url: str, must_exist: bool = False) -> StateStore:
    """Open the state at ``url`` (creating its schema when needed). Raises ValueError for a URL of no known
    kind (or, with ``must_exist``, a SQLite file that is not there). A database server is not waited for: while
    it cannot be reached, each call raises :class:`StateUnavailableError`."""
    check_url(url)
    path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise ValueError(f"no state database at {path}")
        return SqliteState(path)
    try:
        from recsys.state.postgres import PostgresState
    except ImportError as exc:
        raise ValueError(f"a PostgreSQL state needs psycopg: pip install 'recsys[postgres]' ({exc})") from exc
    return PostgresState(url)


class SqliteState:
    """The embedded state: one SQLite file (WAL, ``synchronous=FULL``), shared by the processes of one host.
    No notifications: other processes' writes are found by polling."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"{SQLITE_PREFIX}{self.path}"
        self.stock = SqliteStockStore(self.path)
        self.feedback = FeedbackLog(self.path)
        self._connection = storage.connect(self.path)
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def model_pointer(self) -> str | None:
        with self._lock:
            row = self._connection.execute("SELECT version FROM model_pointer WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def set_model_pointer(self, version: str) -> None:
        with self._lock:
            self._connection.execute(
                "INSERT INTO model_pointer (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
                "version = excluded.version, updated_at = CURRENT_TIMESTAMP", (version,))

    def wait_for_change(self, timeout_s: float) -> bool:
        self._wake.wait(timeout_s)
        self._wake.clear()
        return False

    def interrupt(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._wake.set()
        with self._lock:
            self._connection.close()
        self.stock.close()
        self.feedback.close()


def read_decisions(path: str | Path) -> pd.DataFrame:
    """The decisions in a server's state (the trainer's ``--feedback``): a state URL (``postgresql://...``,
    ``sqlite:///path``) or the path of a SQLite file, which must exist."""
    if isinstance(path, str) and "://" in path:
        state = open_state(path, must_exist=True)
        try:
            return decisions_of(state.feedback.feedback())
        finally:
            state.close()
    if not Path(path).is_file():
        raise FileNotFoundError(f"no feedback database at {path}")
    log = FeedbackLog(path)
    try:
        return log.decisions()
    finally:
        log.close()
