"""Substitution feedback: what was shown for an unavailable item, and what the shopper (or picker) accepted,
rejected or chose by hand. Recorded durably by the server, read by the trainer as the strongest signal.

Stored in the server's state database next to the inventory, one JSON document per row: SQLite (WAL,
``synchronous=FULL``: a recorded row survives a killed process) or PostgreSQL shared by every replica (see
:mod:`recsys.state.store`). Feedback is bound to the answer it decides (``answer_id``, signed by the server:
:mod:`recsys.state.answers`), one decision per answer. The trainer turns the rows whose answer id verifies
into *decisions*, one row per (item, substitute, customer): +1 for an acceptance or a manual choice, -1 for a
rejection; any other row (made up, or recorded before answers were signed) is not learned from.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Protocol

import pandas as pd

from recsys.state import storage
from recsys.state.answers import AnswerIdError, AnswerSigner, SignedAnswer

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
    answer_id: str | None = None
    recorded_at: str = field(default_factory=storage.utc_now)
    experiment: str | None = None  # the online experiment and arm the answer was given in (signed with it)
    arm: str | None = None
    price_difference: float | None = None  # the accepted substitute's price minus the item's, when recorded
    order_id: str | None = None  # the whole order a batch line of an experiment belongs to (signed with it)

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


    def same_decision(self, other: Feedback) -> bool:
        """Whether ``other`` decides the same way (a client's retry), whenever it was recorded."""
        return (self.accepted, set(self.rejected), self.chosen, self.source) == \
            (other.accepted, set(other.rejected), other.chosen, other.source)

    def matches(self, answer: SignedAnswer) -> bool:
        """Whether this feedback is about ``answer`` and decides only among what it showed (``chosen``, a
        manual pick, may be any item)."""
        shown = set(answer.shown)
        return (self.item_id, self.customer_id, self.store_id, self.shown, self.model_version, self.experiment,
                self.arm, self.order_id) == (answer.item_id, answer.customer_id, answer.store_id, answer.shown,
                                             answer.model_version, answer.experiment, answer.arm,
                                             answer.order_id) and \
            (self.accepted is None or self.accepted in shown) and shown.issuperset(self.rejected)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`FeedbackStore.record` did: the row's id, whether it is new, and the feedback stored for
    that answer (the earlier one when the answer had been decided before)."""

    id: int
    created: bool
    feedback: Feedback


class FeedbackStore(Protocol):
    """Where feedback is recorded: :class:`FeedbackLog` (SQLite) or the PostgreSQL state store."""

    def record(self, feedback: Feedback) -> Recorded:
        """Store one feedback durably, return its id only once committed; an answer already decided keeps its
        first decision (nothing is written). Raises :class:`recsys.state.storage.StateUnavailableError` when
        the database cannot be reached."""

    def feedback(self) -> list[Feedback]:
        """Every recorded feedback, oldest first."""

    def experiment_feedback(self, experiment: str) -> list[Feedback]:
        """The feedback recorded on answers of the online experiment ``experiment``, oldest first."""


def answer_key(answer_id: str | None) -> str | None:
    """The stored key of an answer id (unique per state: one decision per answer); None for none."""
    return None if answer_id is None else hashlib.sha256(answer_id.encode("ascii", "replace")).hexdigest()


#: fields written only when set: a row outside experiments stays as older builds wrote it, and read it
_EXPERIMENT_FIELDS: Final[frozenset[str]] = frozenset({"experiment", "arm", "price_difference", "order_id"})


def to_json(feedback: Feedback) -> str:
    """JSON with ASCII escapes: keeps any id (even a lone surrogate or a NUL) intact in any database."""
    record = {k: v for k, v in asdict(feedback).items() if v is not None or k not in _EXPERIMENT_FIELDS}
    return json.dumps(record, ensure_ascii=True, sort_keys=True)


def from_json(body: str) -> Feedback:
    record = json.loads(body)
    return Feedback(**{**record, "shown": tuple(record["shown"]), "rejected": tuple(record["rejected"])})


def verified(records: list[Feedback], signer: AnswerSigner) -> list[Feedback]:
    """The feedback whose answer id verifies under ``signer`` and which decides among what that answer showed."""
    kept = []
    for feedback in records:
        if feedback.answer_id is None:
            continue
        try:
            answer = signer.read(feedback.answer_id)
        except AnswerIdError:
            continue
        if feedback.matches(answer):
            kept.append(feedback)
    return kept


def decisions_of(records: list[Feedback]) -> pd.DataFrame:
    """Every decision of ``records`` as a row of :data:`DECISION_COLUMNS`."""
    rows = [row for f in records for row in f.decisions()]
    return pd.DataFrame(rows, columns=list(DECISION_COLUMNS))


class FeedbackLog:
    """Append-only feedback store: a SQLite file, or memory when ``path`` is None."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._connection = storage.connect(path)
        self._lock = threading.Lock()

    def record(self, feedback: Feedback) -> Recorded:
        key = answer_key(feedback.answer_id)
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO feedback (body, answer, experiment) VALUES (?, ?, ?) ON CONFLICT (answer) DO NOTHING",
                (to_json(feedback), key, feedback.experiment))
            if cursor.rowcount == 1:
                return Recorded(int(cursor.lastrowid or 0), True, feedback)
            row = self._connection.execute("SELECT id, body FROM feedback WHERE answer = ?", (key,)).fetchone()
        return Recorded(int(row[0]), False, from_json(row[1]))

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def feedback(self) -> list[Feedback]:
        with self._lock:
            rows = self._connection.execute("SELECT body FROM feedback ORDER BY id").fetchall()
        return [from_json(body) for (body,) in rows]

    def experiment_feedback(self, experiment: str) -> list[Feedback]:
        with self._lock:
            rows = self._connection.execute("SELECT body FROM feedback WHERE experiment = ? ORDER BY id",
                                            (experiment,)).fetchall()
        return [from_json(body) for (body,) in rows]

    def close(self) -> None:
        with self._lock:
            self._connection.close()
