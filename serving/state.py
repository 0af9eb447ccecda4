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
from recsys.query.reasons import Messages
from recsys.query.rules import Rule
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.feedback import FeedbackLog, FeedbackStore
from recsys.state.storage import StateUnavailableError
from recsys.state.store import StateStore, open_state
from serving.access import Access
from serving.experiments import Experiments
from serving.metrics import Metrics
from serving.settings import Settings
from serving.sync import StateSync

log = logging.getLogger("recsys.serving")


class ServiceState:
    """Holds the serving engine. A reload builds the new engine off the event loop, then swaps one reference,
    so in-flight requests finish on the model they started with and none sees a half-loaded model."""

    def __init__(self, model_path: Path, inventory: Inventory | None = None, feedback: FeedbackStore | None = None,
                 store: StateStore | None = None, access: Access | None = None,
                 policy: AvailabilityPolicy | None = None, messages: Messages | None = None,
                 price_protection: bool = False) -> None:
        self.model_path = model_path
        # how every engine loaded here answers: what it offers without evidence, and how it writes reasons
        self.policy = policy or AvailabilityPolicy()
        self.messages, self.price_protection = messages or Messages(), price_protection
        self.rules: list[Rule] = []  # the merchandising rules every engine here applies, by name
        self._rule_bodies: dict[str, str] = {}  # name -> JSON of the rules applied
        self._stored_rules: list[str] = []  # the state's rule bodies as last read
        self.inventory = inventory or Inventory()
        self.feedback: FeedbackStore = feedback if feedback is not None else FeedbackLog()
        self.store = store
        self.access = access if access is not None else Access("keys", None)
        # answers are signed with the state's shared key; with memory only, with a key of this process's own
        self.signer: AnswerSigner | None = None if store is not None else AnswerSigner(secrets.token_bytes(32))
        self.sync: StateSync | None = None
        self.engine: SubstituteEngine | None = None
        self.experiments = Experiments()  # the online experiments, followed from the state by the sync thread
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
                      Access(settings.auth, token), settings.availability_policy(),
                      Messages(settings.locale, settings.currency), settings.price_protection)
        if store is not None:
            try:
                service.refresh_access()
                service.refresh_rules()
            except StateUnavailableError:
                pass  # the state's follower reads the keys once the database answers; not ready until then
        return service

    def prepare(self, engine: SubstituteEngine) -> None:
        """Make a loaded engine answer as this service does: its stock rules, reasons and merchandising rules."""
        engine.use_inventory(self.inventory)
        engine.use_policy(self.policy)
        engine.use_reasons(self.messages, self.price_protection)
        engine.use_rules(self.rules)

    def refresh_rules(self) -> None:
        """Read the merchandising rules from the state and apply them to every engine when they changed: how a rule
        added or removed on any replica reaches this one (raises :class:`StateUnavailableError`)."""
        if self.store is not None:
            self._use_rules(self.store.rules())

    def save_rule(self, rule: Rule) -> bool:
        """Store ``rule`` (replacing one of its name: False) and apply it here at once; the others follow."""
        body = rule.model_dump_json(exclude_none=True)
        if self.store is None:
            created = rule.name not in self._rule_bodies
            self._use_rules(list({**self._rule_bodies, rule.name: body}.values()))
            return created
        created = self.store.save_rule(rule.name, body)
        self.refresh_rules()
        return created

    def remove_rule(self, name: str) -> bool:
        if self.store is None:
            if name not in self._rule_bodies:
                return False
            self._use_rules([body for key, body in self._rule_bodies.items() if key != name])
            return True
        removed = self.store.remove_rule(name)
        self.refresh_rules()
        return removed

    def _use_rules(self, bodies: list[str]) -> None:
        """Apply the rules of these stored bodies (by name), when they are not the ones applied already."""
        if bodies == self._stored_rules:
            return
        parsed: dict[str, tuple[Rule, str]] = {}
        for body in bodies:
            try:
                rule = Rule.model_validate_json(body)
            except ValueError as exc:  # written by another version: the others still apply
                log.error("a stored merchandising rule is not applied: %s", exc)
                continue
            parsed[rule.name] = (rule, body)
        self._stored_rules = bodies
        self._rule_bodies = {name: body for name, (_, body) in sorted(parsed.items())}
        self.rules = [rule for _, (rule, _) in sorted(parsed.items())]
        for engine in (self.engine, *self.experiments.engines().values()):
            if engine is not None:
                engine.use_rules(self.rules)

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

    async def load_arm(self, model_path: Path) -> SubstituteEngine:
        """Load and verify the model an experiment's arm serves, beside the current one (as a reload loads, off the
        event loop, one load at a time), and hand it to the experiments; raises :class:`ArtifactError`."""
        async with self._reload_lock:
            engine = await asyncio.to_thread(SubstituteEngine.load, model_path, self.inventory, self.policy)
            self.prepare(engine)
            self.experiments.add_engine(engine)
            gc.unfreeze()  # as in reload: its objects out of the cyclic GC's full scans
            gc.collect()
            gc.freeze()
            return engine

    async def reload(self, model_path: Path | None = None) -> tuple[SubstituteEngine, str | None]:
        """Load and verify a model, then make it current; on error the old engine keeps serving."""
        async with self._reload_lock:
            path = model_path or self.model_path
            engine = await asyncio.to_thread(SubstituteEngine.load, path, self.inventory, self.policy)
            self.prepare(engine)
            previous = self.engine.version if self.engine is not None else None
            self.engine = engine
            # the model is ~10^5 long-lived Python objects: keep them out of the cyclic GC's full scans,
            # which otherwise stall requests for tens of milliseconds; unfreeze first so that cycles left by
            # the replaced model are still collected
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return engine, previous
