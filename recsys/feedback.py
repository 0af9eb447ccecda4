"""Substitution feedback: what was shown for an unavailable item, and what the shopper (or picker) accepted,
rejected or chose by hand. Recorded durably by the server, read by the trainer as the strongest signal.

Stored in SQLite (WAL, ``synchronous=FULL``: a recorded row survives a killed process), one JSON document per
row, next to the inventory in the server's state file. The trainer turns the log into *decisions*, one row
per (item, substitute, customer): +1 for an acceptance or a manual choice, -1 for a rejection.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pandas as pd

from recsys import storage

DECISION_COLUMNS: Final[tuple[str, ...]] = ("item_id", "substitute_id", "customer_id", "accepted", "source")


@dataclass(frozen=True)
class Feedback:
    """One answer's outcome: the substitutes ``shown``, the one ``accepted``, those ``rejected``, and a manual
    pick ``chosen`` (by a picker or the shopper, shown or not). An item both accepted (or chosen) and rejected
    counts as accepted."""

    item_id: str
    shown: tuple[str, ...] = ()
    accepted: str | None = None
    rejected: tuple[str, ...] = ()
    chosen: str | None = None
    customer_id: str | None = None
    store_id: str | None = None
    source: str = "shopper"
    model_version: str | None = None
    recorded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.accepted is None and not self.rejected and self.chosen is None:
            raise ValueError("feedback needs an accepted, rejected or chosen item")

    def decisions(self) -> list[tuple[str, str, str | None, bool, str]]:
        """(item, substitute, customer, accepted, source) rows; the substitute is never the item itself."""
        taken = list(dict.fromkeys(x for x in (self.accepted, self.chosen) if x is not None))
        rows = [(self.item_id, s, self.customer_id, True, self.source) for s in taken]
        rows += [(self.item_id, s, self.customer_id, False, self.source)
                 for s in dict.fromkeys(self.rejected) if s not in taken]
        return [row for row in rows if row[1] != self.item_id]


class FeedbackLog:
    """Append-only feedback store: a SQLite file, or memory when ``path`` is None."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._connection = storage.connect(path)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
        self._lock = threading.Lock()

    def record(self, feedback: Feedback) -> int:
        """Store one feedback durably; returns its id. JSON with ASCII escapes keeps any id (even a lone
        surrogate) intact."""
        body = json.dumps(asdict(feedback), ensure_ascii=True, sort_keys=True)
        with self._lock:
            cursor = self._connection.execute("INSERT INTO feedback (body) VALUES (?)", (body,))
        return int(cursor.lastrowid or 0)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def feedback(self) -> list[Feedback]:
        with self._lock:
            rows = self._connection.execute("SELECT body FROM feedback ORDER BY id").fetchall()
        records = [json.loads(body) for (body,) in rows]
        return [Feedback(**{**r, "shown": tuple(r["shown"]), "rejected": tuple(r["rejected"])}) for r in records]

    def decisions(self) -> pd.DataFrame:
        """Every decision as a row of :data:`DECISION_COLUMNS`."""
        rows = [row for f in self.feedback() for row in f.decisions()]
        return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def read_decisions(path: str | Path) -> pd.DataFrame:
    """The decisions in a server's state file (the trainer's ``--feedback``); the file must exist."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no feedback database at {path}")
    log = FeedbackLog(path)
    try:
        return log.decisions()
    finally:
        log.close()
