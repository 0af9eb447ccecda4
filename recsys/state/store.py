"""The live state that every serving process shares: stock changes, substitution feedback and the pointer to
the current model, behind one small interface, :class:`StateStore`, chosen by a URL:

- ``sqlite:///path`` (or a plain path): one SQLite file, embedded, for one host (all its worker processes);
- ``postgresql://user@host:port/db`` (or a libpq ``host=... dbname=...`` string): one PostgreSQL database shared
  by replicas on many hosts (:mod:`recsys.state.postgres`; psycopg is imported only then, so the package works
  without it). Its password best comes apart from the URL (:func:`state_password`).

Every write is committed before it is acknowledged. Stock rows carry a sequence number assigned in commit
order, so a process catches up by reading "the changes after N" (:meth:`recsys.Inventory.catch_up`);
:meth:`StateStore.wait_for_change` returns early when another process wrote (PostgreSQL ``LISTEN``/``NOTIFY``)
and otherwise after a timeout, so a lost notification costs at most one polling interval.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import pandas as pd

from recsys.model.registry import check_version
from recsys.state import storage
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.experiments import ExperimentStore, SqliteExperimentStore
from recsys.state.feedback import FeedbackLog, FeedbackStore, decisions_of, verified
from recsys.state.inventory import SqliteStockStore, StockStore
from recsys.state.keys import ApiKey, KeyStore, api_key_of
from recsys.state.storage import StateUnavailableError, redact, utc_now

__all__ = ["StateStore", "StateUnavailableError", "SqliteState", "check_url", "open_state", "read_decisions",
           "redact", "sqlite_path"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


class StateStore(KeyStore, Protocol):
    """Stock changes, feedback, the model pointer, API keys, shared secrets and online experiments in one
    database."""

    url: str  # with any password hidden: safe to log and show

    @property
    def stock(self) -> StockStore: ...

    @property
    def feedback(self) -> FeedbackStore: ...

    @property
    def experiments(self) -> ExperimentStore: ...

    def model_pointer(self) -> str | None:
        """The version every replica should serve, None when nothing was promoted through the state."""

    def set_model_pointer(self, version: str) -> None:
        """Point every replica at ``version`` (committed, and announced to the listening ones); a version that is
        not a plain name (:func:`recsys.model.registry.check_version`) raises ValueError."""

    def shared_secret(self, name: str) -> bytes:
        """The secret named ``name`` that every replica shares, made (32 random bytes) on first use."""

    def save_rule(self, name: str, body: str) -> bool:
        """Store a merchandising rule's JSON ``body`` under ``name``, replacing one of that name (False) or not
        (True); announced to the listening replicas."""

    def rules(self) -> list[str]:
        """Every stored rule's JSON body, by name."""

    def remove_rule(self, name: str) -> bool:
        """Remove the rule named ``name``; False when there is none."""

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until another process may have written (True) or ``timeout_s`` passed (False)."""

    def interrupt(self) -> None:
        """Make a :meth:`wait_for_change` in progress return soon (on shutdown)."""

    def close(self) -> None: ...


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL or a plain path; None for any other URL and for a libpq ``key=value``
    connection string (never a file named after its keywords and password)."""
    if url.startswith(SQLITE_PREFIX):
        return Path(url.removeprefix(SQLITE_PREFIX))
    if "://" in url or storage.is_conninfo(url):
        return None
    return Path(url)


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a state URL of a known kind (nothing is opened)."""
    if storage.is_conninfo(url):
        _check_conninfo(url)
        return
    path = sqlite_path(url)
    if path is not None:
        if str(path) in ("", "."):
            raise ValueError(f"state URL {url!r} names no file: use sqlite:///path/to/state.sqlite3")
        return
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES or not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"state URL {redact(url)!r}: expected sqlite:///path or "
                         "postgresql://user:pass@host:port/db")


_SQLITE_HINT: Final[str] = "a SQLite file whose name holds '=' is sqlite:///path"


def _check_conninfo(conninfo: str) -> None:
    """A libpq ``key=value`` connection string: a PostgreSQL state, refused unless libpq could read it. The
    messages name its keywords, never a value: a misspelt ``pasword=`` would not be hidden."""
    values = storage.conninfo_values(conninfo)
    if values is None:
        raise ValueError("the state is not a libpq key=value connection string (quote a value that holds blanks: "
                         f"password='a b'); {_SQLITE_HINT}")
    keywords = [keyword for keyword, _, _ in values]
    shown = f"the state (a connection string with {', '.join(keywords)})"
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        pass  # opening it says that psycopg is needed
    else:
        try:
            conninfo_to_dict(conninfo)  # libpq's own reading: unknown keywords, bad values
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"{shown}: {str(exc).strip()}; {_SQLITE_HINT}") from exc
    if not {"host", "hostaddr", "service"} & set(keywords):
        raise ValueError(f"{shown} names no database server: add host=...")


PASSWORD_ENV: Final[str] = "RECSYS_STATE_PASSWORD"
PASSWORD_FILE_ENV: Final[str] = "RECSYS_STATE_PASSWORD_FILE"


def state_password(password: str | None = None, password_file: str | Path | None = None) -> str | None:
    """The state database's password given apart from its URL, so that it is in no process list: ``password``,
    or the content (stripped) of ``password_file``; when neither is given, the same from the environment
    (``RECSYS_STATE_PASSWORD``, ``RECSYS_STATE_PASSWORD_FILE``). None when none is set: libpq then reads its own
    ``PGPASSWORD`` and ``PGPASSFILE``. Raises ValueError when both are set or the file is unreadable or empty."""
    if not password and not password_file:
        password = os.environ.get(PASSWORD_ENV) or None
        password_file = os.environ.get(PASSWORD_FILE_ENV) or None
    if password and password_file:
        raise ValueError(f"set one of {PASSWORD_ENV} and {PASSWORD_FILE_ENV}, not both")
    if not password_file:
        return password or None
    try:
        text = Path(password_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{PASSWORD_FILE_ENV}: cannot read {password_file}: {reason}") from exc
    if not text:
        raise ValueError(f"{PASSWORD_FILE_ENV}: {password_file} is empty")
    return text


def open_state(url: str, must_exist: bool = False, *, password: str | None = None,
               password_file: str | Path | None = None) -> StateStore:
    """Open the state at ``url`` (creating its schema when needed). Raises ValueError for a URL of no known
    kind (or, with ``must_exist``, a SQLite file that is not there). A database server is not waited for: while
    it cannot be reached, each call raises :class:`StateUnavailableError`. A PostgreSQL URL without a password
    takes the one :func:`state_password` finds (``password``, ``password_file`` or the environment)."""
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
    # the one place where the password joins the URL, for the server and every command alike
    return PostgresState(url, password=None if storage.has_password(url) else state_password(password, password_file))


class SqliteState:
    """The embedded state: one SQLite file (WAL, ``synchronous=FULL``), shared by the processes of one host.
    No notifications: other processes' writes are found by polling."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"{SQLITE_PREFIX}{self.path}"
        self.stock = SqliteStockStore(self.path)
        self.feedback = FeedbackLog(self.path)
        self.experiments = SqliteExperimentStore(self.path)
        self._connection = storage.connect(self.path)
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def model_pointer(self) -> str | None:
        with self._lock:
            row = self._connection.execute("SELECT version FROM model_pointer WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def set_model_pointer(self, version: str) -> None:
        check_version(version)
        with self._lock:
            self._connection.execute(
                "INSERT INTO model_pointer (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
                "version = excluded.version, updated_at = CURRENT_TIMESTAMP", (version,))

    def add_key(self, key: ApiKey) -> None:
        with self._lock:
            try:
                self._connection.execute(
                    "INSERT INTO api_keys (key_hash, name, scopes, created_at) VALUES (?, ?, ?, ?)",
                    (key.key_hash, key.name, ",".join(sorted(key.scopes)), key.created_at))
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"a key named {key.name!r} exists: revoke it first") from exc

    def api_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT name, scopes, key_hash, created_at, revoked_at FROM api_keys ORDER BY rowid").fetchall()
        return [api_key_of(*row) for row in rows]

    def revoke_key(self, name: str) -> bool:
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (utc_now(), name))
        return cursor.rowcount > 0

    def save_rule(self, name: str, body: str) -> bool:
        with self._lock:
            existed = self._connection.execute("SELECT 1 FROM rules WHERE name = ?", (name,)).fetchone()
            self._connection.execute(
                "INSERT INTO rules (name, body, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "body = excluded.body, updated_at = excluded.updated_at", (name, body, utc_now()))
        return existed is None

    def rules(self) -> list[str]:
        with self._lock:
            rows = self._connection.execute("SELECT body FROM rules ORDER BY name").fetchall()
        return [body for (body,) in rows]

    def remove_rule(self, name: str) -> bool:
        with self._lock:
            cursor = self._connection.execute("DELETE FROM rules WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def shared_secret(self, name: str) -> bytes:
        with self._lock:
            self._connection.execute("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                                     (name, secrets.token_bytes(32)))
            return bytes(self._connection.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])

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
        self.experiments.close()


def read_decisions(path: str | Path) -> pd.DataFrame:
    """The verified decisions in a server's state (the trainer's ``--feedback``): a state URL
    (``postgresql://...``, ``sqlite:///path``) or the path of a SQLite file, which must exist. Only feedback
    whose signed answer id verifies is read (:func:`recsys.state.feedback.verified`)."""
    if not (isinstance(path, str) and ("://" in path or storage.is_conninfo(path))) and not Path(path).is_file():
        raise FileNotFoundError(f"no feedback database at {path}")
    state = open_state(str(path), must_exist=True)
    try:
        signer = AnswerSigner(state.shared_secret(SECRET_NAME))
        return decisions_of(verified(state.feedback.feedback(), signer))
    finally:
        state.close()

