"""The query engine: "item X is unavailable for customer Y, what should we offer instead?"

A query takes four steps, each in its own module:

1. **candidates** (:mod:`recsys.query.candidates`): X's substitution group (widened to the parent category when
   too few pass), minus what the hard rules and the request's filters remove, with one row of
   :class:`recsys.query.kernels.Feature` per candidate;
2. **ranking** (:mod:`recsys.query.ranking`): a linear shortlist, then the re-ranker's trees, and the best ``k``
   without near-duplicate packs (:func:`recsys.query.kernels.select`);
3. **presentation** (:mod:`recsys.query.presentation`): reasons and how each substitute compares with X;
4. **availability** (:mod:`recsys.query.availability`): how each substitute's availability at the store is known,
   where X is in stock, when it returns, and its other pack sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Final

import numpy as np

from recsys.domain.types import (
    MAX_K,
    AvailabilityPolicy,
    CustomerProfile,
    Intent,
    ItemInfo,
    ItemMatches,
    OrderSubstitutes,
    SubstituteFilters,
    SubstituteList,
    UnknownCustomerError,
    UnknownStoreError,
)
from recsys.model import artifact
from recsys.model.data import ModelData
from recsys.model.manifest import Manifest, RankerSection
from recsys.query.availability import StoreAvailability
from recsys.query.candidates import CandidateFinder
from recsys.query.items import ItemTable
from recsys.query.kernels import select, widen
from recsys.query.orders import order_substitutes
from recsys.query.presentation import Presenter
from recsys.query.profiles import customer_profile
from recsys.query.ranking import DEFAULT_FAMILIAR_SHIFT, Scorer
from recsys.query.reasons import Messages
from recsys.query.rules import MAX_AMOUNT, Rule, RuleBook, RuleEffects
from recsys.query.search import CatalogSearch
from recsys.state.inventory import ONLINE, Inventory

_NO_BIAS: Final[np.ndarray] = np.empty(0, dtype=np.float64)
#: the kinds of file a model report is made of: markdown and its plots
_REPORT_SUFFIXES: Final[frozenset[str]] = frozenset({".md", ".png"})


class SubstituteEngine:
    """Loads a model directory and answers substitute queries. Thread-safe for concurrent reads."""

    def __init__(self, model: ModelData, manifest: Manifest, inventory: Inventory | None = None,
                 directory: Path | None = None, policy: AvailabilityPolicy | None = None) -> None:
        self.model = model
        self.manifest = manifest
        self.version = manifest.version
        self.directory = directory  # the model directory it was loaded from; None when built in memory
        self.inventory = inventory if inventory is not None else Inventory()
        config = manifest.config
        self.set_ranker(manifest.ranker, model.reranker)
        # load-time precomputation: nothing here is recomputed per query
        self.item_table = ItemTable(model)
        self.item_ids = self.item_table.ids
        self._customer_row = {str(c): i for i, c in enumerate(model.customers)}
        self.availability = StoreAvailability(model.assortment, self.item_table.index_of, model.stores,
                                              self.inventory, policy or AvailabilityPolicy())
        self.finder = CandidateFinder(model, self.item_table, self.availability, config.max_candidates,
                                      config.min_group_size)
        self.presenter = Presenter(model, self.item_table, self.availability, self.finder.customer_items)
        self.use_rules(())
        self._warm_up()

    def set_ranker(self, ranker: RankerSection, reranker: str = "") -> None:
        """Rank with a manifest ``ranker`` section and its re-ranker text (the trainer tries candidates so); a
        section without a score cut-off takes the training config's."""
        if ranker.min_score is None:
            ranker = ranker.model_copy(update={"min_score": self.manifest.config.min_score})
        self.scorer = Scorer(ranker, reranker)
        familiar = DEFAULT_FAMILIAR_SHIFT if ranker.familiar_shift is None else ranker.familiar_shift
        # discover ranks like balanced: its candidates are all new to the customer, which the hard rules see to
        self.scorers: dict[Intent, Scorer] = {Intent.balanced: self.scorer, Intent.discover: self.scorer,
                                              Intent.familiar: self.scorer.shifted(familiar)}

    def use_inventory(self, inventory: Inventory) -> None:
        """Read stock from ``inventory`` from now on (a pre-forked worker gives the engine it inherited its own)."""
        self.inventory = self.availability.inventory = inventory
        self.availability.clear()

    @property
    def policy(self) -> AvailabilityPolicy:
        return self.availability.policy

    def use_policy(self, policy: AvailabilityPolicy) -> None:
        """Offer unknown items or answer for unknown stores (or not) from now on."""
        self.availability.set_policy(policy)

    def use_reasons(self, messages: Messages, price_protection: bool = False) -> None:
        """Write reasons in ``messages``' locale and currency from now on (English and dollars by default);
        ``price_protection``: a substitute that costs more than X carries X's price as ``shopper_price``."""
        self.presenter.use_messages(messages, price_protection)

    @classmethod
    def load(cls, path: str | Path, inventory: Inventory | None = None, policy: AvailabilityPolicy | None = None
             ) -> SubstituteEngine:
        """Load and verify (checksums, format version) a model directory or the ``current`` symlink."""
        model_dir = Path(path).resolve()
        manifest = artifact.read_manifest(model_dir, verify=True)
        try:
            model = ModelData.load(model_dir)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise artifact.ArtifactError(f"{model_dir}: cannot load model files ({exc})") from exc
        return cls(model, manifest, inventory, model_dir, policy)

    def _warm_up(self) -> None:
        """Compile the query path's numba kernels now (or load them from numba's cache, beside the code), so that
        the first request does not wait seconds for it."""
        if self.model.n_items:
            customer = 0 if len(self.model.customers) else None
            candidates, features, _ = self.candidates(0, customer)
            self.select(0, candidates, features, 1)
            found, similarity = self.retrieve(0, k=1)
            widen(found, similarity, found, similarity, *self.item_table.group_bounds[0])  # a widened query's merge
            if customer is not None:
                self.finder.customer_items.lookup(customer, candidates)  # the answer's purchase counts

    # -- the query -------------------------------------------------------------------------------
    def substitutes(self, item_id: str, customer_id: str | None = None, store_id: str | None = None,
                    k: int = 10, *, exclude: Iterable[str] = (), filters: SubstituteFilters | None = None,
                    intent: Intent | str = Intent.balanced) -> SubstituteList:
        """Up to ``k`` ranked substitutes for ``item_id``; fewer (or none) rather than off-group padding. ``intent``
        says what the list is for (:class:`recsys.domain.types.Intent`; raises
        :class:`recsys.domain.types.UnknownIntentError` for another name). Raises
        :class:`recsys.domain.types.UnknownStoreError` for a store nothing is known of, unless the policy allows
        unknown stores (see :mod:`recsys.query.availability`), and
        :class:`recsys.domain.types.UnknownAttributeError` for a ``keep`` or ``prefer`` attribute the catalog
        lacks."""
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
        intent = Intent.parse(intent)
        x = self.item_table.index(item_id)
        store = store_id or ONLINE
        store_known = self.availability.knows(store)
        if not store_known and not self.availability.policy.allow_unknown_stores:
            raise UnknownStoreError(store)
        attributes = filters.attributes() if filters is not None else []
        if attributes:
            self.item_table.attributes.check(attributes)
        cust_row = self._customer_row.get(customer_id) if customer_id is not None else None
        candidates, features, widened = self.candidates(x, cust_row, store, exclude, filters, intent)
        effects = self.rules.effects(self._rule_fields(x, item_id, store), candidates) if len(self.rules) else None
        bias = _NO_BIAS
        if effects is not None:
            if effects.blocked is not None:
                kept = ~effects.blocked
                candidates, features, widened = candidates[kept], features[kept], widened[kept]
                if effects.bias is not None:
                    effects.bias = effects.bias[kept]
            if effects.bias is not None:
                bias = effects.bias.astype(np.float64)
        if filters is not None and filters.prefer:
            preferred = self.item_table.attributes.preferred(x, candidates, filters.prefer)
            if preferred is not None:
                bias = np.clip(preferred if not len(bias) else bias + preferred, -MAX_AMOUNT, MAX_AMOUNT)
        # with no customer every candidate is new to them: each intent is balanced, scores included
        top, scores = self.select(x, candidates, features, k, filters is not None and filters.size_alternatives,
                                  intent if cust_row is not None else Intent.balanced, bias)
        rules_applied: tuple[str, ...] = ()
        if effects is not None:
            top, scores, rules_applied = _pinned(effects, candidates, top, scores, k)
        results = self.presenter.present(x, candidates[top], scores[top], features[top], widened[top], cust_row,
                                         self.availability.codes(store), attributes)
        restock_eta, available_at = self.presenter.stock_elsewhere(item_id, store)
        return SubstituteList(
            item=self.presenter.item(x), substitutes=results, personalized=cust_row is not None, intent=intent,
            widened=any(r.widened for r in results), model_version=self.version, store_id=store,
            store_known=store_known,
            restock_eta=restock_eta, available_at=available_at, variants=self.presenter.variants(x, store),
            metadata_based=self.item_table.cold[x], rules_applied=rules_applied,
        )

    def use_rules(self, rules: Sequence[Rule]) -> None:
        """Apply these merchandising rules to every answer from now on (see :mod:`recsys.query.rules`)."""
        table, items = self.item_table, self.model.items
        self.rules = RuleBook(rules, self.item_ids, table.brand_names[table.brand_codes],
                              table.private_label, items["category"].astype(str).to_numpy(), table.attributes)

    def _rule_fields(self, x: int, item_id: str, store: str) -> dict[str, str]:
        """What a rule's scope matches: X's id, category and product type, and the store."""
        info = self.presenter.infos[x]
        return {"item_id": item_id, "category": info.category, "product_type": info.product_type, "store_id": store}

    def select(self, x: int, candidates: np.ndarray, features: np.ndarray, k: int, size_alternatives: bool = False,
               intent: Intent = Intent.balanced, bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the answer for item index ``x`` among ``candidates``: the best ``k`` that pass the score
        cut-off (best first), without near-duplicates; and the scores (-inf: under the cut-off or outside the
        re-ranker's shortlist, see ``recsys.query.ranking``). One compiled kernel, :func:`recsys.query.kernels.select`.

        Near-duplicates: once :data:`recsys.query.kernels.MAX_PACK_SIZES` pack sizes of one brand's product (same
        brand and group) are in, further sizes are skipped, unless ``size_alternatives`` or the customer bought
        that pack before; when that leaves fewer than ``k`` of the :data:`recsys.query.kernels.NEAR_DUPLICATE_POOL`
        x ``k`` best, a pool 4x wider is ranked. Same-size items of one brand stay: in this data they are the
        brand's varieties (flavours), which customers do switch between. Measured on the switch hold-out
        (10,000 queries): HR@3 0.515 -> 0.516, new-to-customer HR@3 0.228 -> 0.225, HR@10 0.736 -> 0.726; one
        size per product cost 0.04 HR@3 and 0.12 HR@10.

        An X known only from the catalog is ordered by the linear score alone: the re-ranker learned from
        switches away from items with behaviour, and such an X has no switching, co-purchase or trial signals.

        ``intent``: familiar adds the model's familiar shift (``ranker.familiar_shift``, negative) to the final
        score of candidates the customer never bought, after the cut-off and the shortlist; balanced and
        discover rank alike (discover's candidates come without the customer's items, see :meth:`candidates`).

        ``bias``: per candidate, a change of its final score (merchandising rules' boosts and buries, the
        request's preferred attributes)."""
        rerank = not self.item_table.cold[x] and self.scorer.trees is not None
        table = self.item_table
        return select(features, candidates, table.brand_codes, table.group_of, table.size_bucket, k,
                      size_alternatives, rerank, self.scorers[intent].arrays, _NO_BIAS if bias is None else bias)

    def order_substitutes(self, item_ids: Sequence[str], customer_id: str | None = None,
                          store_id: str | None = None, k: int = 3, *, order: Iterable[str] = (),
                          filters: SubstituteFilters | None = None, intent: Intent | str = Intent.balanced
                          ) -> OrderSubstitutes:
        """Substitutes for each unavailable line of one order (see :func:`recsys.query.orders.order_substitutes`)."""
        return order_substitutes(self, item_ids, customer_id, store_id, k, order=order, filters=filters,
                                 intent=Intent.parse(intent))

    def customer_profile(self, customer_id: str, max_categories: int = 10) -> CustomerProfile:
        """The customer's segment and, per category they buy most, brands, usual size and price band."""
        row = self._customer_row.get(customer_id)
        if row is None:
            raise UnknownCustomerError(customer_id)
        return customer_profile(self.model, self.item_table, self.presenter.infos, self.finder.customer_items,
                                model_version=self.version, customer_id=customer_id, row=row,
                                max_categories=max_categories)

    @cached_property
    def catalog_search(self) -> CatalogSearch:
        # built on the first search, not at load (0.7 s at a million items): only people reviewing answers
        # search, and every load and reload would pay for it otherwise. Two racing first searches build it twice.
        return CatalogSearch(self.model.items, self.item_table.index_of, self.presenter.item)

    def search_items(self, query: str, offset: int = 0, limit: int = 20) -> ItemMatches:
        """Catalog items by id or by part of their product type, category or brand, most popular first (see
        :class:`recsys.query.search.CatalogSearch`; raises ``ValueError`` for bad input)."""
        return self.catalog_search.search(query, offset, limit)

    def report_files(self) -> dict[str, Path]:
        """The model report's files (``report.md`` and its plots) by name: only files the manifest lists and
        checksums, so a name from outside can never reach another path. Empty when built in memory."""
        if self.directory is None:
            return {}
        return {name: self.directory / name for name in self.manifest.files
                if name.startswith("report") and Path(name).suffix in _REPORT_SUFFIXES and Path(name).name == name}

    # -- lookups and the query's steps, for training, evaluation and benchmarks -------------------
    def __contains__(self, item_id: object) -> bool:
        return item_id in self.item_table.index_of

    def item_info(self, item_id: str) -> ItemInfo:
        return self.presenter.item(self.item_table.index(item_id))

    def customer_row(self, customer_id: str) -> int | None:
        return self._customer_row.get(customer_id)

    def index_of(self, item_id: str) -> int:
        """Internal index of an item (raises :class:`recsys.domain.types.UnknownItemError`)."""
        return self.item_table.index(item_id)

    def group_range(self, x: int) -> tuple[int, int]:
        """[lo, hi) internal indices of item ``x``'s substitution group."""
        return self.item_table.group_bounds[x]

    def candidates(self, x: int, cust_row: int | None, store: str = ONLINE, exclude: Iterable[str] = (),
                   filters: SubstituteFilters | None = None, intent: Intent = Intent.balanced
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every allowed candidate for item index ``x`` with its feature rows and whether it is widened; for
        discover, none that the customer bought."""
        return self.finder.find(x, cust_row, store, exclude, filters, new_only=intent is Intent.discover)

    def allowed(self, candidates: np.ndarray, x: int, store: str = ONLINE, exclude: Iterable[str] = (),
                filters: SubstituteFilters | None = None) -> np.ndarray:
        """Which ``candidates`` pass the hard rules (not X, in stock at ``store``, not excluded) and ``filters``."""
        return self.finder.allowed(candidates, x, store, exclude, filters)

    def retrieve(self, x: int, store: str = ONLINE, exclude: Iterable[str] = (),
                 filters: SubstituteFilters | None = None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval only: members of X's group that pass the hard rules and filters, most similar to X first
        (the best ``k`` when given), with their cosine. No widening, features or ranking: the step a
        nearest-neighbour baseline does, for benchmarks and diagnostics."""
        return self.finder.nearest_in_group(x, store, exclude, filters, k)


def _pinned(effects: RuleEffects, candidates: np.ndarray, top: np.ndarray, scores: np.ndarray, k: int
            ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The answer's positions with each pinned item that is a candidate (it passed the hard rules and the
    filters) put first, in rule order, and the names of the rules that acted. A pinned item under the score
    cut-off shows the first item's score (0 when it is alone), so the list stays in score order."""
    applied = list(effects.touched)
    first: list[int] = []
    for name, item in effects.pins:
        found = np.flatnonzero(candidates == item)
        if len(found) and int(found[0]) not in first:
            first.append(int(found[0]))
            applied.append(name)
    if not first:
        return top, scores, tuple(applied)
    order = np.asarray([*first, *(p for p in top.tolist() if p not in first)][:k], dtype=np.int64)
    scores = scores.copy()
    best = max(float(scores[top[0]]) if len(top) else -np.inf, *(float(scores[p]) for p in first))
    for p in first:
        scores[p] = max(scores[p], best) if best > -np.inf else 0.0
    return order, scores, tuple(applied)
