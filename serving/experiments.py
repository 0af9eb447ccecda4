"""This process's side of the online experiments (:mod:`recsys.state.experiments`): which experiment and arm a
request belongs to, the engine and intent that answer it, the second model a model-version arm needs, and the
answers served per arm until the state's follower adds them to the shared counters.

The experiments come from the state, read by the follower thread (:mod:`serving.sync`) and replaced whole (one
reference swapped, as the keyring is), so a request never sees half an update. With no experiment defined, a
request pays one attribute check. A model an arm names is loaded, verified and warmed in a worker thread, as a
promotion's is, and used only once loaded: until then that arm's requests are answered as the process answers
every request outside an experiment and are not counted, so every counted answer really came from its arm.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from recsys import SubstituteEngine
from recsys.domain.types import Intent
from recsys.state.experiments import (
    CONTROL,
    TREATMENT,
    ArmSpec,
    Experiment,
    assign,
    treatment_threshold,
    unit_of,
)

log = logging.getLogger("recsys.serving")


@dataclass(frozen=True, slots=True)
class Placement:
    """Who answers one request: the engine, the intent, and the experiment and arm the answer is labelled with
    (both None: not counted)."""

    engine: SubstituteEngine
    intent: Intent
    experiment: str | None
    arm: str | None


class Served(NamedTuple):
    """What this process served per (experiment, arm) since the follower last took it: answers (each batch line is
    one) and whole orders (batch answers)."""

    answers: dict[tuple[str, str], int]
    orders: dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class _Running:
    """An experiment as the request path reads it: its times as Unix seconds, its stores as a set."""

    name: str
    starts: float
    ends: float
    stores: frozenset[str] | None
    threshold: int
    control: ArmSpec
    treatment: ArmSpec

    @classmethod
    def of(cls, experiment: Experiment) -> _Running:
        ends = experiment.ends_at()
        return cls(experiment.name, datetime.fromisoformat(experiment.starts_at).timestamp(),
                   math.inf if ends is None else ends.timestamp(),
                   frozenset(experiment.stores) if experiment.stores else None,
                   treatment_threshold(experiment.share), experiment.control_arm, experiment.treatment_arm)


class Experiments:
    """The experiments this process serves, the engines of their model arms, and its uncounted answers."""

    def __init__(self) -> None:
        self.active: tuple[_Running, ...] = ()  # not ended when last read; empty: the request path skips it all
        self._engines: dict[str, SubstituteEngine] = {}  # arm models by version
        self._counts: Counter[tuple[str, str]] = Counter()
        self._orders: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def replace(self, experiments: list[Experiment], now: datetime | None = None) -> None:
        """Serve ``experiments`` (the state's whole list) from now on; models no experiment needs are let go."""
        now = now or datetime.now(UTC)
        active = []
        for experiment in experiments:
            try:
                if experiment.status(now) != "ended":
                    active.append(_Running.of(experiment))
            except ValueError as exc:  # a row no build of the service wrote: serve without it, say why
                log.error("experiment %r is not served: %s", experiment.name, exc)
        self.active = tuple(active)
        wanted = self.wanted_versions()
        self._engines = {v: e for v, e in self._engines.items() if v in wanted}

    def wanted_versions(self) -> set[str]:
        """The model versions the experiments that have not ended serve."""
        return {arm.version for running in self.active for arm in (running.control, running.treatment)
                if arm.version is not None}

    def missing_versions(self, current: str | None) -> set[str]:
        """The versions to load: wanted, not loaded, and not the model this process serves anyway."""
        return {v for v in self.wanted_versions() if v not in self._engines and v != current}

    def add_engine(self, engine: SubstituteEngine) -> None:
        if engine.version in self.wanted_versions():
            self._engines = {**self._engines, engine.version: engine}

    def engines(self) -> dict[str, SubstituteEngine]:
        return dict(self._engines)

    def _engine(self, arm: ArmSpec, current: SubstituteEngine) -> SubstituteEngine | None:
        if arm.version is None or arm.version == current.version:
            return current
        return self._engines.get(arm.version)

    def place(self, current: SubstituteEngine, customer_id: str | None, session_id: str | None,
              store_id: str | None, intent: Intent, store_default: str, now: float) -> Placement | None:
        """Where a request goes; None when no experiment claims it (answered as any other request)."""
        store = store_id if store_id is not None else store_default
        for running in self.active:
            if not running.starts <= now < running.ends or (running.stores is not None and store not in running.stores):
                continue
            unit = unit_of(customer_id, session_id)
            arm_name = CONTROL if unit is None else assign(running.name, unit, running.threshold)
            arm = running.treatment if arm_name == TREATMENT else running.control
            engine = self._engine(arm, current)
            if engine is None:  # its model is still loading (or failed): not this arm's answer, not counted
                return None
            answer_intent = arm.intent if arm.intent is not None else intent
            if unit is None:  # neither customer nor session: answered as control, not counted
                return Placement(engine, answer_intent, None, None)
            return Placement(engine, answer_intent, running.name, arm_name)
        return None

    def count(self, experiment: str, arm: str, answers: int = 1, orders: int = 0) -> None:
        """Count answers served in an arm (each batch line is one), and whole orders (a batch answer is one)."""
        with self._lock:
            self._counts[experiment, arm] += answers
            if orders:
                self._orders[experiment, arm] += orders

    def take_counts(self) -> Served:
        """The answers and orders counted since the last take (the follower adds them to the state)."""
        with self._lock:
            served = Served(dict(self._counts), dict(self._orders))
            self._counts, self._orders = Counter(), Counter()
        return served

    def give_back_counts(self, served: Served) -> None:
        """Counts the state could not take: added again to the next take."""
        with self._lock:
            self._counts.update(served.answers)
            self._orders.update(served.orders)
