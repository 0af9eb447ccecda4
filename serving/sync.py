"""Following the shared state: one background thread per process keeps the in-memory inventory, the API keys and
the online experiments current with the writes of every replica, moves this process to the model the state's
pointer names, loads the models experiments' arms serve, and adds the answers this process served per arm to the
shared counters.

The thread wakes on a notification (PostgreSQL ``LISTEN``) or after ``poll_s``, and each time catches up by
sequence number, so a notification lost while a connection was down costs at most one interval. A new model
is loaded, verified and warmed in a worker thread, then swapped in (:meth:`serving.state.ServiceState.reload`):
requests never wait for it. While the database is unreachable, answers keep coming from memory, and the thread retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Final, Protocol

from recsys import ArtifactError, Inventory, SubstituteEngine
from recsys.model.registry import InvalidVersionError, check_version
from recsys.state.storage import StateUnavailableError
from recsys.state.store import StateStore
from serving.experiments import Experiments
from serving.metrics import Metrics

log = logging.getLogger("recsys.serving")
#: how long a replica waits before it tries again to load a version it could not load
RETRY_FAILED_LOAD_S: Final[float] = 15.0
#: ``recsys_model_load_failed``'s version label while the pointer is not a plain version name
INVALID_POINTER: Final[str] = "(invalid)"
#: the most characters of an error that /readyz shows
MAX_SHOWN_ERROR: Final[int] = 300
#: a path's directories: anything up to a "/" in a word ("/srv/models/v2/x.npy" -> "x.npy")
_DIRECTORIES = re.compile(r"[^\s'\"(),:=\[\]]*/")


def without_directories(text: str) -> str:
    """``text`` with every path cut to its last part: what ``/readyz`` may show of an error (the full text goes
    to the log), so that it does not reveal how the host's file system is laid out."""
    return _DIRECTORIES.sub("", text)


def shown_error(error: BaseException | str) -> str:
    """An error as ``/readyz`` shows it: its kind (a model error's message says it; others get the exception's
    type) and message, without directories, bounded."""
    text = without_directories(str(error))
    if not isinstance(error, (str, ArtifactError)):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= MAX_SHOWN_ERROR else f"{text[:MAX_SHOWN_ERROR]}..."


class Followed(Protocol):
    """What the thread keeps current in its process (:class:`serving.state.ServiceState`): the inventory, and
    the engine, which it swaps through ``reload``."""

    @property
    def engine(self) -> SubstituteEngine | None: ...

    @property
    def inventory(self) -> Inventory: ...

    @property
    def experiments(self) -> Experiments: ...

    async def reload(self, model_path: Path | None = None) -> tuple[SubstituteEngine, str | None]: ...

    async def load_arm(self, model_path: Path) -> SubstituteEngine: ...

    def refresh_access(self) -> None: ...

    def refresh_rules(self) -> None: ...


class StateSync:
    def __init__(self, service: Followed, store: StateStore, models_dir: Path, poll_s: float,
                 metrics: Metrics, loop: asyncio.AbstractEventLoop) -> None:
        self.service, self.store, self.models_dir, self.poll_s = service, store, models_dir, poll_s
        self.metrics, self.loop = metrics, loop
        self.reachable: bool | None = None  # None until the first attempt
        self.error: str | None = None
        self.wanted_version: str | None = None
        self.model_error: str | None = None
        self._followed: str | None = None  # the pointer's value this replica last acted on
        self._failed: tuple[str, float] | None = None  # (version, when) of the last failed load
        self._loading: Future[object] | None = None
        self.experiment_error: str | None = None  # an experiment's model this process could not load
        self._arm_loads: dict[str, Future[SubstituteEngine]] = {}
        self._arm_failed: dict[str, float] = {}  # version -> when its load failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recsys-state-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.store.interrupt()
        self._thread.join(timeout_s)
        try:  # the answers counted since the last cycle: a restart loses none of them
            self._add_answers()
        except Exception as exc:  # shutting down: say what is lost, never fail the shutdown for it
            log.warning("answers served in experiments since the last sync not counted: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.inventory.catch_up()
                self.service.refresh_access()
                self.service.refresh_rules()
                self._follow_pointer()
                self._follow_experiments()
                self._set_reachable(True, None)
                self.store.wait_for_change(self.poll_s)
            except StateUnavailableError as exc:
                self._set_reachable(False, str(exc))
                self._stop.wait(min(self.poll_s, 0.5))
            except Exception:  # a bug must not end the thread: log it and keep following
                log.exception("state sync failed")
                self._stop.wait(self.poll_s)

    def _set_reachable(self, reachable: bool, error: str | None) -> None:
        if reachable != self.reachable:
            if reachable:
                log.info("state %s reachable", self.store.url)
            else:
                log.warning("state unreachable, serving from memory: %s", error)
        self.reachable, self.error = reachable, error
        self.metrics.set_state(reachable, self.service.inventory.seq)

    def _follow_pointer(self) -> None:
        """Load the version the pointer names when the pointer moves (or a failed load is due again). A version
        loaded by hand (``POST /v1/admin/reload``) stays until the pointer moves."""
        wanted = self.store.model_pointer()
        if wanted is not None:
            try:
                check_version(wanted)
            except InvalidVersionError as exc:
                self._refuse_pointer(wanted, exc)
                return
        self.wanted_version = wanted
        if wanted is None or (self._loading is not None and not self._loading.done()):
            return  # a pointer that moves during a load is acted on once that load has ended
        engine = self.service.engine
        serving = engine is not None and engine.version == wanted
        if wanted != self._followed:
            self._followed, self._failed = wanted, None
            if serving:
                self._clear_model_error()
                return
        elif serving or self._failed is None or time.monotonic() - self._failed[1] < RETRY_FAILED_LOAD_S:
            if serving:
                self._clear_model_error()
            return
        log.info("model pointer names %s: loading it", wanted)
        self._loading = asyncio.run_coroutine_threadsafe(self.service.reload(self.models_dir / wanted), self.loop)
        self._loading.add_done_callback(lambda future: self._loaded(wanted, future))

    def _follow_experiments(self) -> None:
        """Serve the experiments the state holds, count this process's answers into the state, and load the
        models their arms need (in a worker thread; a failed load is tried again after a while)."""
        experiments = self.service.experiments
        experiments.replace(self.store.experiments.experiments())
        self._add_answers()
        engine = self.service.engine
        missing = experiments.missing_versions(engine.version if engine is not None else None)
        if not missing:
            self.experiment_error = None
        for version in sorted(missing):
            loading = self._arm_loads.get(version)
            failed = self._arm_failed.get(version)
            if loading is not None and not loading.done() or \
                    failed is not None and time.monotonic() - failed < RETRY_FAILED_LOAD_S:
                continue
            log.info("an experiment serves model %s: loading it beside the current one", version)
            future = asyncio.run_coroutine_threadsafe(self.service.load_arm(self.models_dir / version), self.loop)
            self._arm_loads[version] = future
            future.add_done_callback(lambda done, version=version: self._arm_loaded(version, done))

    def _add_answers(self) -> None:
        experiments = self.service.experiments
        served = experiments.take_counts()
        if served.answers or served.orders:
            try:
                self.store.experiments.add_answers(served.answers, served.orders)
            except BaseException:
                experiments.give_back_counts(served)  # counted at the next cycle instead
                raise

    def _arm_loaded(self, version: str, future: Future[SubstituteEngine]) -> None:
        error: BaseException | str | None = future.exception()
        if error is None and future.result().version != version:  # else it would be loaded again and again
            error = f"its directory holds model version {future.result().version}"
        if error is None:
            self._arm_failed.pop(version, None)
            log.info("serving model %s in an experiment", version)
            return
        self._arm_failed[version] = time.monotonic()
        self.experiment_error = f"cannot load model {version} for an experiment: {shown_error(error)}"
        log.error("cannot load model %s for an experiment from %s: %s", version, self.models_dir / version, error)

    def _refuse_pointer(self, pointer: str, error: InvalidVersionError) -> None:
        """A pointer that is not a plain version name could name any directory: load nothing, keep serving, and
        say so (the value only in the log, once per value)."""
        engine = self.service.engine
        current = engine.version if engine is not None else None
        self.wanted_version = None
        self.model_error = f"the model pointer is not a plain version name, nothing loaded, still serving {current}"
        if pointer != self._followed:
            self._followed, self._failed = pointer, None
            self.metrics.set_model_error(INVALID_POINTER)
            log.error("the model pointer is refused, still serving %s: %s", current, error)

    def _clear_model_error(self) -> None:
        if self.model_error is not None:
            self.model_error = None
            self.metrics.set_model_error(None)

    def _loaded(self, wanted: str, future: Future[object]) -> None:
        error: BaseException | str | None = future.exception()
        engine = self.service.engine
        if error is None and engine is not None and engine.version != wanted:
            error = f"its directory holds model version {engine.version}"
        if error is None:
            if engine is not None:
                self.metrics.set_model(engine.version)
            self._failed = None
            self.model_error = None
            self.metrics.set_model_error(None)
            log.info("serving model %s", wanted)
            return
        self._failed = (wanted, time.monotonic())
        current = engine.version if engine is not None else None
        self.model_error = f"cannot load model {wanted}, still serving {current}: {shown_error(error)}"
        self.metrics.set_model_error(wanted)
        log.error("cannot load model %s from %s, still serving %s: %s", wanted, self.models_dir / wanted, current,
                  error)
