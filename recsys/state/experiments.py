"""Online experiments: two arms (two models, or two intents) served side by side to shares of the shoppers, kept in
the shared state so that every replica serves the same shopper the same arm, and judged on the shoppers' accept /
reject feedback by a sequential test that reading the result cannot fool (:mod:`recsys.state.sequential`).

- An :class:`Experiment` has a name, a control (``current``: the model every replica serves; a model version; or
  ``intent=NAME``), a treatment (a model version or ``intent=NAME``), the share of shoppers in treatment, the
  stores it runs at (none: everywhere) and when it starts and stops.
- **Assignment** (:func:`assign`) hashes the experiment's name with the shopper: the customer id, or the shopping
  session's id when there is no customer. The same shopper lands in the same arm on every replica and after every
  restart, with nothing stored per shopper. A request with neither is answered as control and not counted.
- **Measurement** (:func:`report`): answers served per arm (counters each replica adds to the state), and from the
  feedback log, bound to the arm by the signed answer id, the decisions, acceptances, first-position acceptances and
  the price difference of accepted substitutes. Only feedback whose answer id verifies counts, once per answer.
  Whole orders too: a batch answer is one order (counted like the answers), each of its lines signs the order's id,
  and the **order substitution rate** is the share of orders with a decided line in which every decided line took a
  shown substitute.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from recsys.domain.types import Intent
from recsys.model.registry import InvalidVersionError, check_version
from recsys.state import storage
from recsys.state.answers import AnswerSigner
from recsys.state.feedback import Feedback, verified
from recsys.state.sequential import ALPHA, MIXING_SD, msprt, wilson_interval

CONTROL: Final[str] = "control"
TREATMENT: Final[str] = "treatment"
ARMS: Final[tuple[str, str]] = (CONTROL, TREATMENT)
#: the control that serves what every replica serves anyway
CURRENT: Final[str] = "current"
INTENT_PREFIX: Final[str] = "intent="
Status = Literal["scheduled", "running", "ended"]
Decision = Literal["no decision yet", "treatment better", "treatment worse"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_STORES: Final[int] = 1000
_MAX_ID: Final[int] = 256


class ExperimentError(ValueError):
    """An experiment that cannot be started (or found): ``field`` names what is wrong; ``conflict`` says it is
    valid in itself but clashes with the state (a name taken, an experiment running at the same stores)."""

    def __init__(self, field: str, message: str, conflict: bool = False) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.conflict = conflict


@dataclass(frozen=True, slots=True)
class ArmSpec:
    """What an arm serves: a model version (None: the current model) and an intent (None: the request's)."""

    version: str | None = None
    intent: Intent | None = None

    @classmethod
    def parse(cls, text: str, field: str) -> ArmSpec:
        """``current``, a model version or ``intent=NAME``; raises :class:`ExperimentError` naming ``field``."""
        if text == CURRENT:
            return cls()
        if text.startswith(INTENT_PREFIX):
            name = text.removeprefix(INTENT_PREFIX)
            if name not in Intent.__members__:
                raise ExperimentError(field, f"unknown intent {name!r}: one of {', '.join(Intent.__members__)}")
            return cls(intent=Intent(name))
        try:
            return cls(version=check_version(text))
        except InvalidVersionError as exc:
            raise ExperimentError(field, f"expected {CURRENT!r}, a model version or intent=NAME; {exc}") from exc

    def __str__(self) -> str:
        if self.intent is not None:
            return f"{INTENT_PREFIX}{self.intent.value}"
        return self.version if self.version is not None else CURRENT


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Experiment:
    """One experiment as the state keeps it. Times are ISO 8601 in UTC."""

    name: str
    control: str
    treatment: str
    share: float
    stores: tuple[str, ...]
    starts_at: str
    stops_at: str | None
    stopped_at: str | None
    created_at: str

    @property
    def control_arm(self) -> ArmSpec:
        return ArmSpec.parse(self.control, "control")

    @property
    def treatment_arm(self) -> ArmSpec:
        return ArmSpec.parse(self.treatment, "treatment")

    def ends_at(self) -> datetime | None:
        """When it ends (or ended): stopped, or its planned stop, whichever is first."""
        ends = [t for t in (_time(self.stopped_at), _time(self.stops_at)) if t is not None]
        return min(ends) if ends else None

    def status(self, now: datetime) -> Status:
        ends = self.ends_at()
        if ends is not None and now >= ends:
            return "ended"
        return "scheduled" if now < datetime.fromisoformat(self.starts_at) else "running"

    def covers(self, store_id: str) -> bool:
        return not self.stores or store_id in self.stores

    def overlaps(self, other: Experiment) -> bool:
        """Whether the two could both claim one request: their stores meet and their times do."""
        stores_meet = not self.stores or not other.stores or bool(set(self.stores) & set(other.stores))
        mine_end, other_end = self.ends_at(), other.ends_at()
        mine_start, other_start = datetime.fromisoformat(self.starts_at), datetime.fromisoformat(other.starts_at)
        return stores_meet and (other_end is None or mine_start < other_end) and \
            (mine_end is None or other_start < mine_end)

    def model_versions(self) -> set[str]:
        """The model versions its arms serve (besides the current model)."""
        return {v for v in (self.control_arm.version, self.treatment_arm.version) if v is not None}

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"name": self.name, "status": self.status(now), "control": self.control, "treatment": self.treatment,
                "share": self.share, "stores": list(self.stores), "starts_at": self.starts_at,
                "stops_at": self.stops_at, "stopped_at": self.stopped_at, "created_at": self.created_at}


def unit_of(customer_id: str | None, session_id: str | None) -> str | None:
    """Who is assigned: the customer, else the shopping session; None (not in the experiment) for neither."""
    if customer_id is not None:
        return f"customer:{customer_id}"
    if session_id is not None:
        return f"session:{session_id}"
    return None


def treatment_threshold(share: float) -> int:
    """The hash values below which a unit is in treatment (of 2**64)."""
    return int(share * 2**64)


def assign(name: str, unit: str, threshold: int) -> str:
    """The arm of ``unit`` (:func:`unit_of`) in the experiment ``name``: SHA-256 of the two, its first 8 bytes as a
    number below ``threshold`` (:func:`treatment_threshold`) in treatment. The same on every replica, always."""
    digest = hashlib.sha256(f"{name}\x1f{unit}".encode("utf-8", "surrogatepass")).digest()
    return TREATMENT if int.from_bytes(digest[:8], "big") < threshold else CONTROL


def utc(value: datetime) -> datetime:
    """``value`` in UTC (a time without a zone is read as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_experiment(name: str, treatment: str, share: float, *, control: str = CURRENT,
                   stores: Iterable[str] = (), starts_at: datetime | None = None, stops_at: datetime | None = None,
                   model_exists: Callable[[str], bool], now: datetime) -> Experiment:
    """A valid experiment, or :class:`ExperimentError` naming the first field that is not: the name, an arm (not
    ``current``, ``intent=NAME`` of a known intent or a model version ``model_exists`` finds; the treatment not
    ``current`` and not the control), the share (strictly between 0 and 1), the stores, the times."""
    if not _NAME.fullmatch(name):
        raise ExperimentError("name", f"{name[:80]!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                                      "letter or digit")
    control_arm = ArmSpec.parse(control, "control")
    treatment_arm = ArmSpec.parse(treatment, "treatment")
    if treatment == CURRENT:
        raise ExperimentError("treatment", "a model version or intent=NAME, not the current model itself")
    if treatment_arm == control_arm:
        raise ExperimentError("treatment", f"the same as the control ({control})")
    for field, arm in (("control", control_arm), ("treatment", treatment_arm)):
        if arm.version is not None and not model_exists(arm.version):
            raise ExperimentError(field, f"no model version {arm.version!r} in the models directory "
                                         "(recsys models list)")
    if not isinstance(share, int | float) or not 0 < share < 1:
        raise ExperimentError("share", f"the share of shoppers in treatment must be > 0 and < 1 (got {share!r})")
    store_list = tuple(dict.fromkeys(stores))
    if len(store_list) > _MAX_STORES or any(not 0 < len(s) <= _MAX_ID for s in store_list):
        raise ExperimentError("stores", f"at most {_MAX_STORES} store ids of 1 to {_MAX_ID} characters")
    start = utc(starts_at) if starts_at is not None else now
    stop = utc(stops_at) if stops_at is not None else None
    if stop is not None and (stop <= start or stop <= now):
        raise ExperimentError("stops_at", "must be after the start and in the future")
    return Experiment(name=name, control=str(control_arm), treatment=str(treatment_arm), share=float(share),
                      stores=store_list, starts_at=start.isoformat(timespec="seconds"),
                      stops_at=None if stop is None else stop.isoformat(timespec="seconds"), stopped_at=None,
                      created_at=now.isoformat(timespec="seconds"))


def model_in(models: Path) -> Callable[[str], bool]:
    """Whether a version is a model of the directory ``models`` (its manifest reads; the replicas verify its
    checksums when they load it)."""
    from recsys.model.artifact import ArtifactError, read_manifest

    def exists(version: str) -> bool:
        try:
            read_manifest(models / version, verify=False)
        except (ArtifactError, OSError):
            return False
        return True

    return exists


class ExperimentStore(Protocol):
    """Where experiments are kept: the state database (SQLite or PostgreSQL)."""

    def add_experiment(self, experiment: Experiment) -> None:
        """Store a new experiment (announced to the replicas); raises :class:`ExperimentError` when the name is
        taken, even by an ended one (its feedback keeps the name)."""

    def experiments(self) -> list[Experiment]:
        """Every experiment, the oldest first."""

    def stop_experiment(self, name: str, at: str) -> bool:
        """Stop the experiment ``name`` at ``at`` (announced); False when it was stopped before or does not exist."""

    def add_answers(self, counts: Mapping[tuple[str, str], int],
                    orders: Mapping[tuple[str, str], int] | None = None) -> None:
        """Add answers served (each batch line is one) and whole orders served (batch answers) per (experiment, arm)
        to the shared counters, in one transaction."""

    def answers(self, name: str) -> dict[str, int]:
        """The answers served per arm of ``name``."""

    def orders(self, name: str) -> dict[str, int]:
        """The whole orders (batch answers) served per arm of ``name``."""


def counter_rows(counts: Mapping[tuple[str, str], int], orders: Mapping[tuple[str, str], int] | None
                 ) -> list[tuple[str, str, int, int]]:
    """(experiment, arm, answers, orders) to add to the shared counters, for either database; none of zeros."""
    orders = orders or {}
    keys = dict.fromkeys([*counts, *orders])
    return [(name, arm, counts.get((name, arm), 0), orders.get((name, arm), 0)) for name, arm in keys
            if counts.get((name, arm), 0) or orders.get((name, arm), 0)]


def start_experiment(store: ExperimentStore, experiment: Experiment, now: datetime) -> Experiment:
    """Store ``experiment`` unless its name is taken or an experiment that has not ended overlaps it (one request
    belongs to one experiment at most); raises :class:`ExperimentError` (``conflict``) naming the field."""
    for other in store.experiments():
        if other.name == experiment.name:
            raise ExperimentError("name", f"an experiment named {experiment.name!r} exists (names are not reused)",
                                  conflict=True)
        if other.status(now) != "ended" and other.overlaps(experiment):
            raise ExperimentError("stores", f"experiment {other.name!r} runs at the same stores and times: stop it "
                                            "first, or give disjoint --stores", conflict=True)
    store.add_experiment(experiment)
    return experiment


def find(store: ExperimentStore, name: str) -> Experiment:
    for experiment in store.experiments():
        if experiment.name == name:
            return experiment
    raise ExperimentError("name", f"no experiment named {name!r} (recsys experiments list)")


# -- measurement -------------------------------------------------------------------------------------------------


def accepted_item(feedback: Feedback) -> str | None:
    """The shown substitute the decision took, if any: ``accepted``, or a manual ``chosen`` that was shown."""
    if feedback.accepted is not None:
        return feedback.accepted
    return feedback.chosen if feedback.chosen is not None and feedback.chosen in feedback.shown else None


@dataclass(frozen=True, slots=True)
class ArmReport:
    answers: int  # served, as the replicas counted them
    decided: int  # answers with feedback (one decision each)
    accepted: int  # decisions that took a shown substitute
    first_accepted: int  # decisions that took the first one shown
    price_difference_sum: float  # of the accepted substitutes whose prices were known
    priced: int
    orders: int  # whole orders (batch answers) served, as the replicas counted them
    orders_decided: int  # orders with at least one decided line
    orders_substituted: int  # decided orders in which every decided line took a shown substitute

    def to_json(self) -> dict[str, Any]:
        interval = wilson_interval(self.accepted, self.decided)
        order_interval = wilson_interval(self.orders_substituted, self.orders_decided)
        return {"answers": self.answers, "decided": self.decided, "accepted": self.accepted,
                "acceptance": self.accepted / self.decided if self.decided else None,
                "ci95": list(interval) if interval is not None else None,
                "first_accepted": self.first_accepted,
                "first_acceptance": self.first_accepted / self.decided if self.decided else None,
                "accepted_price_difference": round(self.price_difference_sum / self.priced, 4) if self.priced else None,
                "orders": self.orders, "orders_decided": self.orders_decided,
                "orders_substituted": self.orders_substituted,
                "order_substitution_rate": self.orders_substituted / self.orders_decided if self.orders_decided
                else None,
                "order_substitution_ci95": list(order_interval) if order_interval is not None else None}


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    experiment: Experiment
    status: Status
    arms: dict[str, ArmReport]
    decision: Decision
    p_value: float
    difference: float | None
    difference_ci95: tuple[float, float] | None
    decided_after: int | None

    def to_json(self, now: datetime) -> dict[str, Any]:
        """What ``GET /v1/experiments/{name}`` and ``recsys experiments report --json`` show."""
        return {**self.experiment.to_json(now), "arms": {arm: self.arms[arm].to_json() for arm in ARMS},
                "decision": self.decision, "p_value": self.p_value, "difference": self.difference,
                "difference_ci95": list(self.difference_ci95) if self.difference_ci95 is not None else None,
                "decided_after": self.decided_after, "alpha": ALPHA, "mixing_sd": MIXING_SD}


def report(experiment: Experiment, answers: Mapping[str, int], feedback: Iterable[Feedback],
           signer: AnswerSigner, now: datetime, *, orders: Mapping[str, int]) -> ExperimentReport:
    """The experiment's numbers per arm and the sequential test's decision on them. ``answers`` and ``orders``: the
    shared counters per arm. ``feedback``: the rows recorded for the experiment, oldest first; only those whose
    answer id verifies under ``signer`` and names this experiment and an arm count (so a row written into the
    database by hand counts for nothing), and a line counts toward the order its answer id signs."""
    rows = [f for f in verified(list(feedback), signer) if f.experiment == experiment.name and f.arm in ARMS]
    treatment, took = [], []
    counts = {arm: [0, 0, 0, 0.0, 0] for arm in ARMS}
    # per arm, per order: whether every decided line so far took a shown substitute
    order_substituted: dict[str, dict[str, bool]] = {arm: {} for arm in ARMS}
    for f in rows:
        item = accepted_item(f)
        if f.order_id is not None:
            decided_orders = order_substituted[str(f.arm)]
            decided_orders[f.order_id] = decided_orders.get(f.order_id, True) and item is not None
        arm = counts[str(f.arm)]
        arm[0] += 1
        if item is not None:
            arm[1] += 1
            arm[2] += int(bool(f.shown) and item == f.shown[0])
            if f.price_difference is not None:
                arm[3] += f.price_difference
                arm[4] += 1
        treatment.append(f.arm == TREATMENT)
        took.append(item is not None)
    test = msprt(treatment, took)
    decision: Decision = {1: "treatment better", -1: "treatment worse"}.get(  # type: ignore[assignment]
        test.direction, "no decision yet")
    arms = {arm: ArmReport(answers=int(answers.get(arm, 0)), decided=int(c[0]), accepted=int(c[1]),
                           first_accepted=int(c[2]), price_difference_sum=float(c[3]), priced=int(c[4]),
                           orders=int(orders.get(arm, 0)), orders_decided=len(order_substituted[arm]),
                           orders_substituted=sum(order_substituted[arm].values()))
            for arm, c in counts.items()}
    return ExperimentReport(experiment, experiment.status(now), arms, decision, test.p_value, test.difference,
                            test.difference_ci, test.decided_after)


# -- SQLite -------------------------------------------------------------------------------------------------------


def experiment_of(name: str, control: str, treatment: str, share: float, stores: str, starts_at: object,
                  stops_at: object, stopped_at: object, created_at: object) -> Experiment:
    """An experiment from its stored row (either database)."""
    return Experiment(name=name, control=control, treatment=treatment, share=float(share),
                      stores=tuple(json.loads(stores)), starts_at=str(starts_at),
                      stops_at=None if stops_at is None else str(stops_at),
                      stopped_at=None if stopped_at is None else str(stopped_at), created_at=str(created_at))


def row_of(experiment: Experiment) -> tuple[object, ...]:
    """The stored row of an experiment, in :data:`COLUMNS` order."""
    return (experiment.name, experiment.control, experiment.treatment, experiment.share,
            json.dumps(list(experiment.stores), ensure_ascii=True), experiment.starts_at, experiment.stops_at,
            experiment.stopped_at, experiment.created_at)


COLUMNS: Final[str] = "name, control, treatment, share, stores, starts_at, stops_at, stopped_at, created_at"


class SqliteExperimentStore:
    """The experiments and their answer counters in the state's SQLite file."""

    def __init__(self, path: str | Path | None) -> None:
        self._connection = storage.connect(path)
        self._lock = threading.Lock()

    def add_experiment(self, experiment: Experiment) -> None:
        with self._lock:
            try:
                self._connection.execute(f"INSERT INTO experiments ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                         row_of(experiment))
            except sqlite3.IntegrityError as exc:
                raise ExperimentError("name", f"an experiment named {experiment.name!r} exists", True) from exc

    def experiments(self) -> list[Experiment]:
        with self._lock:
            rows = self._connection.execute(f"SELECT {COLUMNS} FROM experiments ORDER BY rowid").fetchall()
        return [experiment_of(*row) for row in rows]

    def stop_experiment(self, name: str, at: str) -> bool:
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE experiments SET stopped_at = ? WHERE name = ? AND stopped_at IS NULL", (at, name))
        return cursor.rowcount > 0

    def add_answers(self, counts: Mapping[tuple[str, str], int],
                    orders: Mapping[tuple[str, str], int] | None = None) -> None:
        rows = counter_rows(counts, orders)
        if not rows:
            return
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.executemany(
                    "INSERT INTO experiment_answers (name, arm, answers, orders) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name, arm) DO UPDATE SET answers = answers + excluded.answers, "
                    "orders = orders + excluded.orders", rows)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def answers(self, name: str) -> dict[str, int]:
        with self._lock:
            rows = self._connection.execute("SELECT arm, answers FROM experiment_answers WHERE name = ?",
                                            (name,)).fetchall()
        return {str(arm): int(n) for arm, n in rows}

    def orders(self, name: str) -> dict[str, int]:
        with self._lock:
            rows = self._connection.execute("SELECT arm, orders FROM experiment_answers WHERE name = ?",
                                            (name,)).fetchall()
        return {str(arm): int(n) for arm, n in rows}

    def close(self) -> None:
        with self._lock:
            self._connection.close()
