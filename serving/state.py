"""The service's live state: the current engine (swapped atomically on reload), the inventory, the
substitution feedback log and, when the state is a database, the thread that follows it (:mod:`serving.sync`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from pathlib import Path

from recsys import ArtifactError, AvailabilityPolicy, Inventory, SubstituteEngine
from recsys.model.registry import InvalidVersionError, check_version
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.feedback import FeedbackLog, FeedbackStore
from recsys.state.storage import StateUnavailableError
from recsys.state.store import StateStore, open_state
from serving.access import Access
from serving.metrics import Metrics
from serving.settings import Settings
from serving.sync import StateSync

log = logging.getLogger("recsys.serving")


class ServiceState:
    """Holds the serving engine. A reload builds the new engine off the event loop, then swaps one reference,
    so in-flight requests finish on the model they started with and none sees a half-loaded model."""

    def __init__(self, model_path: Path, inventory: Inventory | None = None, feedback: FeedbackStore | None = None,
                 store: StateStore | None = None, access: Access | None = None,
                 policy: AvailabilityPolicy | None = None) -> None:
        self.model_path = model_path
        self.policy = policy or AvailabilityPolicy()  # what every engine loaded here offers without evidence
        self.inventory = inventory or Inventory()
        self.feedback: FeedbackStore = feedback if feedback is not None else FeedbackLog()
        self.store = store
        self.access = access if access is not None else Access("keys", None)
        # answers are signed with the state's shared key; with memory only, with a key of this process's own
        self.signer: AnswerSigner | None = None if store is not None else AnswerSigner(secrets.token_bytes(32))
        self.sync: StateSync | None = None
        self.engine: SubstituteEngine | None = None
        self._reload_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, inventory: Inventory | None = None) -> ServiceState:
        """The state the settings name (memory only when there is none); a database that is down is not an
        error here: the inventory stays unsynced, so ``/readyz`` is 503, until the sync thread reaches it."""
        location = settings.state_location()
        store = (open_state(location, password=settings.state_password_value(),
                            password_file=settings.state_password_file) if location is not None else None)
        if inventory is None:
            inventory = Inventory(store.stock if store is not None else None)
        token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        service = cls(settings.model_path, inventory, store.feedback if store is not None else None, store,
                      Access(settings.auth, token), settings.availability_policy())
        if store is not None:
            try:
                service.refresh_access()
            except StateUnavailableError:
                pass  # the state's follower reads the keys once the database answers; not ready until then
        return service

    def refresh_access(self) -> None:
        """Read the API keys (and, the first time, the answer-signing key) from the state: how a key made or
        revoked on any replica reaches this one (raises :class:`StateUnavailableError`)."""
        if self.store is None:
            return
        if self.signer is None:
            self.signer = AnswerSigner(self.store.shared_secret(SECRET_NAME))
        self.access.keyring.replace(self.store.api_keys())

    @property
    def ready(self) -> bool:
        """A model is loaded, and the inventory and the keys have been read from the state at least once."""
        return self.engine is not None and self.inventory.synced and self.signer is not None

    def pointed_model(self, models_dir: Path) -> Path | None:
        """The model directory the state's pointer names, if there is one, it is reachable now and the pointer
        is a plain version name (anything else could name any directory: it is logged, and the state's follower
        reports it in ``/readyz``)."""
        if self.store is None:
            return None
        try:
            version = self.store.model_pointer()
        except StateUnavailableError:
            return None
        if version is None:
            return None
        try:
            return models_dir / check_version(version)
        except InvalidVersionError as exc:
            log.error("the model pointer is refused, loading %s instead: %s", self.model_path, exc)
            return None

    async def load_first(self, models_dir: Path) -> SubstituteEngine:
        """The first model: the one the state's pointer names when there is one (replicas sharing a state
        serve the same version), else ``model_path``. Raises :class:`ArtifactError` when neither loads."""
        pointed = await asyncio.to_thread(self.pointed_model, models_dir)
        if pointed is not None:
            try:
                return (await self.reload(pointed))[0]
            except ArtifactError as exc:
                log.error("the model pointer names %s, which cannot be loaded (%s): loading %s", pointed.name, exc,
                          self.model_path)
        return (await self.reload())[0]

    def start_sync(self, settings: Settings, metrics: Metrics) -> None:
        if self.store is not None and self.sync is None:
            self.sync = StateSync(self, self.store, settings.models_directory(), settings.state_poll_s, metrics,
                                  asyncio.get_running_loop())
            self.sync.start()

    def close(self) -> None:
        if self.sync is not None:
            self.sync.stop()
            self.sync = None
        if self.store is not None:
            self.store.close()

    async def reload(self, model_path: Path | None = None) -> tuple[SubstituteEngine, str | None]:
        """Load and verify a model, then make it current; on error the old engine keeps serving."""
        async with self._reload_lock:
            path = model_path or self.model_path
            engine = await asyncio.to_thread(SubstituteEngine.load, path, self.inventory, self.policy)
            previous = self.engine.version if self.engine is not None else None
            self.engine = engine
            # the model is ~10^5 long-lived Python objects: keep them out of the cyclic GC's full scans,
            # which otherwise stall requests for tens of milliseconds; unfreeze first so that cycles left by
            # the replaced model are still collected
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return engine, previous
