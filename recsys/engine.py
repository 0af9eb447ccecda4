"""The query engine: "item X is unavailable for customer Y, what should we offer instead?"

Hard rules, enforced before ranking: a substitute is never X itself, never known out of stock at the
queried store, never excluded (in the cart), always in X's substitution group (or in X's parent category
when the group has too few, which the answer says), and always passes the request's filters.
Every candidate gets a row of :data:`recsys.ranking.FEATURES`, computed by a compiled kernel (recsys.features)
from arrays built at load;
:class:`recsys.ranking.Scorer` ranks the rows (a linear shortlist, then the re-ranker's trees).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, NamedTuple, overload

import faiss
import numba
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys import artifact
from recsys.features import candidate_features
from recsys.inventory import ONLINE, Inventory
from recsys.model import ModelData
from recsys.ranking import FEATURES, Scorer, best_positions, linear_scores, rescore
from recsys.sizes import UNIT_PRICE_BASIS, format_quantity
from recsys.sparse import SparseRows

MAX_K: Final[int] = 100
_F = {name: i for i, name in enumerate(FEATURES)}
_OWN_HISTORY: Final[int] = _F["own_history"]
#: the features that presenting an answer reads
_REASON_FEATURES: Final[np.ndarray] = np.array([_F[name] for name in (
    "brand_affinity", "same_brand", "own_accepted", "accepted_instead", "switched_to", "bought_instead",
    "viewed_together", "own_history")])
#: thresholds above which a feature becomes a shopper-facing reason
USUAL_BRAND_SHARE: Final[float] = 0.3
BOUGHT_INSTEAD_MIN: Final[float] = 0.05
SAME_SIZE_TOLERANCE: Final[float] = 0.02
#: ranked candidates considered per requested result, so dropping near-duplicates can still fill k; also the
#: re-ranker's shortlist (see recsys.ranking)
NEAR_DUPLICATE_POOL: Final[int] = 4
MAX_VARIANTS: Final[int] = 5
#: most pack sizes of one brand's product in one answer (more crowd the list; fewer hide real switches)
MAX_PACK_SIZES: Final[int] = 2
#: the time scale of the ``launch_recency`` feature: exp(-days on sale / LAUNCH_DAYS)
LAUNCH_DAYS: Final[float] = 30.0


class UnknownItemError(LookupError):
    """The item id is not in the model's catalog."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


class SubstituteFilters(BaseModel):
    """Optional request filters; every returned substitute satisfies all that are set. Strict types: JSON
    ``0`` is not ``false`` and ``"5"`` is not a price."""

    model_config = ConfigDict(extra="forbid", strict=True)

    brands: list[str] | None = Field(None, description="only these brands")
    exclude_brands: list[str] | None = Field(None, description="never these brands")
    private_label: bool | None = Field(None, description="true: store brands only; false: no store brands")
    max_price: float | None = Field(None, gt=0, description="highest unit price")
    same_size_family: bool = Field(False, description="only sizes in X's unit family (mass, volume, count...)")
    max_size_ratio: float | None = Field(
        None, ge=1.0, description="size within this factor of X's size (1.5: between 2/3 and 1.5 times)"
    )
    size_alternatives: bool = Field(
        False, description="allow more than 2 pack sizes of one brand's product in the answer"
    )


class ItemInfo(NamedTuple):
    """An item as the catalog describes it (immutable: the engine hands out the same instance to every query)."""

    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: str | None
    size: str | None
    price: float | None
    unit_price: float | None  # price per ``unit_price_per``: compares packs of different sizes
    unit_price_per: str | None


class Substitute(NamedTuple):
    """One answer: the item's :class:`ItemInfo` fields, in that order, then how it compares with X.

    A named tuple, not a dataclass: an answer builds ten of these, and a frozen dataclass of 19 fields costs
    2.5 µs more each to construct (a test keeps the item fields equal to ItemInfo's)."""

    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: str | None
    size: str | None
    price: float | None
    unit_price: float | None
    unit_price_per: str | None
    score: float
    reasons: tuple[str, ...]
    size_ratio: float | None
    size_difference: str | None
    price_difference: float | None
    usual_brand: bool
    bought_before: int
    widened: bool


#: builds a Substitute from one tuple of all its fields (ItemInfo's, then the comparison): skips the named
#: tuple's keyword-argument constructor (0.4 µs of the 4 µs that presenting one substitute costs)
_new_substitute = tuple.__new__


# Pure functions of a few numbers, cached because answers repeat the common size and price differences (a
# cache hit costs a fifth of formatting the number)
@lru_cache(maxsize=4096)
def _size_ratio(log_ratio: float) -> float:
    """A substitute's size over X's, to 3 significant digits."""
    return float(f"{math.exp(log_ratio):.3g}")


@lru_cache(maxsize=4096)
def _size_difference(difference: float, family: str) -> str:
    """A substitute's size minus X's (not zero), signed, in the family's display unit."""
    return ("+" if difference > 0 else "-") + format_quantity(abs(difference), family)


@lru_cache(maxsize=4096)
def _price_reason(cents: int) -> str:
    """The reason that tells a price difference, in cents."""
    if cents < 0:
        return f"${-cents / 100:.2f} cheaper"
    return f"${cents / 100:.2f} more" if cents > 0 else "same price"


class _Shown(NamedTuple):
    """What presenting an item as a substitute reads, as Python values (numpy scalars cost more to read), in
    one record per item: an answer's ten substitutes then miss the cache once each, not once per field."""

    info: ItemInfo
    family: int  # size family code, -1: unknown
    log_size: float  # NaN: unknown
    size: float
    family_name: str | None
    same_size_reason: str
    size_reason_start: str  # + X's size label
    cents: int | None  # the price in whole cents: differences are exact, and their reasons can be cached
    cold: bool  # no events: new in the catalog
    size_label: str | None


class Variant(NamedTuple):
    """Another pack size of X (same brand and product type) and where it is."""

    item_id: str
    package_size: str | None
    size: str | None
    price: float | None
    in_stock: bool  # at the queried store (unreported counts as in stock)
    restock_eta: datetime | None  # at the queried store, when out of stock and known
    available_at: tuple[str, ...]  # other stores or channels that reported it in stock


_new_variant = tuple.__new__  # as _new_substitute


@dataclass(frozen=True, slots=True)
class SubstituteList(Sequence[Substitute]):
    """The ranked substitutes plus what the storefront needs to present them. Behaves as a sequence."""

    item: ItemInfo
    substitutes: tuple[Substitute, ...]
    personalized: bool
    widened: bool
    model_version: str
    store_id: str
    restock_eta: datetime | None  # of X at the queried store, when out of stock and known
    available_at: tuple[str, ...]  # other stores or channels that reported X in stock
    variants: tuple[Variant, ...]  # X's other pack sizes, most popular first
    metadata_based: bool  # X has no events yet: its substitutes come from its group, brand, size and price

    @overload
    def __getitem__(self, index: int) -> Substitute: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Substitute]: ...
    def __getitem__(self, index: int | slice) -> Substitute | Sequence[Substitute]:
        return self.substitutes[index]

    def __len__(self) -> int:
        return len(self.substitutes)

    def __iter__(self) -> Iterator[Substitute]:
        return iter(self.substitutes)


class UnknownCustomerError(LookupError):
    """The customer id is not in the model."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


@dataclass(frozen=True, slots=True)
class CategoryPreference:
    """What a customer buys in one category (department, category), from their weighted history."""

    department: str
    category: str
    share: float  # of the customer's recency-weighted interactions
    purchases: int
    brands: tuple[tuple[str, float], ...]  # up to 3 (brand, share in this category), largest first
    private_label_share: float
    usual_size: str | None  # weighted median size in the customer's main unit family here
    price_band: tuple[float, float, float] | None  # weighted 25th, 50th, 75th percentile of item prices


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """What the engine believes about a customer: ids and derived preferences only."""

    customer_id: str
    model_version: str
    segment: str | None  # RFM: champion, loyal, at risk, new, occasional, browser
    recency_days: float | None  # days from the last purchase to the end of the training data
    baskets: int | None
    spend: float | None
    home_store: str | None
    items: int  # distinct items interacted with
    categories: tuple[CategoryPreference, ...]  # largest share first


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    positions = np.searchsorted(cumulative, np.asarray(qs) * cumulative[-1])
    return [float(values[order][min(p, len(values) - 1)]) for p in positions]


@dataclass(frozen=True, slots=True)
class OrderSubstitutes:
    """Substitutes for several unavailable lines of one order, in line order."""

    lines: tuple[SubstituteList, ...]
    unknown_items: tuple[str, ...]
    personalized: bool
    model_version: str


_NO_MASK: Final[np.ndarray] = np.empty(0, dtype=bool)
_NO_ITEMS: Final[np.ndarray] = np.empty(0, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _rule_mask(candidates: np.ndarray, x: int, out_of_stock: np.ndarray, excluded: np.ndarray,
               filtered: np.ndarray) -> np.ndarray:
    """Which ``candidates`` are not ``x``, not ``out_of_stock`` (per item; empty: none known), not ``excluded``
    (sorted item indices) and pass ``filtered`` (per candidate; empty: no filters)."""
    keep = np.empty(len(candidates), dtype=np.bool_)
    for i in range(len(candidates)):
        c = candidates[i]
        passes = c != x and (len(out_of_stock) == 0 or not out_of_stock[c]) and (len(filtered) == 0 or filtered[i])
        if passes and len(excluded):
            j = np.searchsorted(excluded, c)
            passes = j == len(excluded) or excluded[j] != c
        keep[i] = passes
    return keep


@numba.njit(cache=True, nogil=True)
def _first_distinct(brand: np.ndarray, group: np.ndarray, size: np.ndarray, bought: np.ndarray, k: int,
                    max_sizes: int) -> np.ndarray:
    """Positions of the first ``k`` entries, skipping an entry whose (brand, group) already shows ``max_sizes``
    sizes other than its own, unless ``bought``. Each entry is compared with the kept ones (at most ``k``)."""
    keep = np.empty(min(k, len(brand)), dtype=np.int64)
    new_size = np.empty(len(keep), dtype=np.bool_)  # kept entry j was its product's first of its size
    kept = 0
    for i in range(len(brand)):
        sizes = 0
        shown = False
        for j in range(kept):
            if brand[keep[j]] == brand[i] and group[keep[j]] == group[i]:
                sizes += new_size[j]
                shown |= size[keep[j]] == size[i]
        if sizes >= max_sizes and not shown and not bought[i]:
            continue
        keep[kept] = i
        new_size[kept] = not shown
        kept += 1
        if kept == len(keep):
            break
    return keep[:kept]


@numba.njit(cache=True, nogil=True)
def _select(features: np.ndarray, candidates: np.ndarray, brand: np.ndarray, group: np.ndarray,
            size_bucket: np.ndarray, k: int, size_alternatives: bool, rerank: bool, weights: np.ndarray,
            history_weights: np.ndarray, history_bias: float, min_score: float, new_item_bias: float,
            fixed_weights: np.ndarray, *forest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`SubstituteEngine.select` in one kernel; the arguments after ``rerank`` are
    :attr:`Scorer.kernel_arguments`."""
    pool = NEAR_DUPLICATE_POOL * k
    linear = linear_scores(features, weights, history_weights, history_bias)
    scored = rescore(features, linear, np.full(len(linear), -np.inf), pool, rerank, min_score, new_item_bias,
                     fixed_weights, *forest)
    ranked = best_positions(scored, pool)
    distinct = _distinct(ranked, candidates, features, brand, group, size_bucket, k, size_alternatives)
    if len(distinct) < k and len(ranked) == pool:  # near-duplicates crowded the pool: rank a wider one
        scored = rescore(features, linear, scored, NEAR_DUPLICATE_POOL * pool, rerank, min_score, new_item_bias,
                         fixed_weights, *forest)
        ranked = best_positions(scored, len(scored))
        distinct = _distinct(ranked, candidates, features, brand, group, size_bucket, k, size_alternatives)
    return distinct, scored


@numba.njit(cache=True, nogil=True)
def _distinct(ranked: np.ndarray, candidates: np.ndarray, features: np.ndarray, brand: np.ndarray,
              group: np.ndarray, size_bucket: np.ndarray, k: int, size_alternatives: bool) -> np.ndarray:
    """The first ``k`` of ``ranked`` without near-duplicates (see :meth:`SubstituteEngine.select`)."""
    if size_alternatives:
        return ranked[:k]
    items = candidates[ranked]
    bought = np.empty(len(ranked), dtype=np.bool_)
    for i in range(len(ranked)):
        bought[i] = features[ranked[i], _OWN_HISTORY] > 0
    return ranked[_first_distinct(brand[items], group[items], size_bucket[items], bought, k, MAX_PACK_SIZES)]


class SubstituteEngine:
    """Loads a model directory and answers substitute queries. Thread-safe for concurrent reads."""

    def __init__(self, model: ModelData, manifest: dict[str, Any], inventory: Inventory | None = None) -> None:
        self.model = model
        self.manifest = manifest
        self.version: str = str(manifest["version"])
        self.inventory = inventory if inventory is not None else Inventory()
        config = manifest.get("config", {})
        self.max_candidates = int(config.get("max_candidates", 2000))
        self.min_group_size = int(config.get("min_group_size", 4))
        self._default_min_score = float(config.get("min_score", 0.25))  # models whose ranker section has none
        self.set_ranker(manifest.get("ranker", {}), model.reranker)
        self._precompute()
        self._stock_masks: dict[str, tuple[int, np.ndarray]] = {}
        self._warm_up()

    def set_ranker(self, ranker: dict[str, Any], reranker: str = "") -> None:
        """Rank with a manifest ``ranker`` section and its re-ranker text (the trainer tries candidates so)."""
        self.scorer = Scorer({"min_score": self._default_min_score, **ranker}, reranker)

    @classmethod
    def load(cls, path: str | Path, inventory: Inventory | None = None) -> SubstituteEngine:
        """Load and verify (checksums, format version) a model directory or the ``current`` symlink."""
        model_dir = Path(path).resolve()
        manifest = artifact.read_manifest(model_dir, verify=True)
        try:
            model = ModelData.load(model_dir)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise artifact.ArtifactError(f"{model_dir}: cannot load model files ({exc})") from exc
        return cls(model, manifest, inventory)

    # -- load-time precomputation: nothing here is recomputed per query ---------------------------
    def _precompute(self) -> None:
        items = self.model.items
        self.item_ids: np.ndarray = items["item_id"].to_numpy(dtype=object)
        self._index_of = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self._customer_row = {str(c): i for i, c in enumerate(self.model.customers)}
        self._store_row = {str(s): i for i, s in enumerate(self.model.stores)}
        self._store_items = SparseRows.of(self.model.store_items)
        self.brand_codes, brand_index = pd.factorize(items["brand"])
        self.brand_names = np.asarray(brand_index, dtype=object)
        self._brand_code = {str(name): code for code, name in enumerate(brand_index)}
        self.family_codes, _ = pd.factorize(items["size_family"])  # -1 where unknown
        self.log_size = np.log(items["size_qty"].to_numpy(np.float64)).astype(np.float32)
        # sizes within SAME_SIZE_TOLERANCE share a bucket (-1: unknown): near-duplicate packs in _distinct
        self._size_bucket = np.where(np.isnan(self.log_size), -1, np.round(self.log_size / SAME_SIZE_TOLERANCE))
        self.price = items["price"].to_numpy(np.float64)
        self.log_price = np.log(self.price).astype(np.float32)
        self.private_label = items["private_label"].to_numpy(bool)
        is_cold = items["n_customers"].to_numpy() == 0  # no events: known from the catalog only
        # the candidate's own features, in recsys.features.ITEM_FEATURES order
        self._item_features = np.column_stack([
            self._log_relative_to_group_top(items["n_customers"].to_numpy(np.float64)),
            self._log_relative_to_group_top(items["trend"].to_numpy(np.float64)),
            self._log_relative_to_group_top(items["trial_trend"].to_numpy(np.float64)),
            np.nan_to_num(np.exp(-items["days_on_sale"].to_numpy(np.float64) / LAUNCH_DAYS)),
        ]).astype(np.float32)
        model = self.model
        # recsys.features.PAIR_FEATURES order
        self._pairs = SparseRows.of(model.switch, model.coview, model.switch_to, model.trial, model.feedback)
        # columns: recency-weighted interactions, purchase count, short half-life (trend) weight
        self._customer_items = SparseRows.of(model.customer_weight, model.customer_count, model.customer_recent)
        self._accepted = SparseRows.of(model.customer_accepted)
        self._families: list[str | None] = items["size_family"].tolist()
        self._size_display = [
            format_quantity(math.exp(q), f) if f is not None and not math.isnan(q) else None
            for q, f in zip(self.log_size.tolist(), self._families, strict=True)
        ]
        self._infos = self._build_infos()
        self._shown = [
            _Shown(info, family, log_size, math.exp(log_size), family_name, f"same size: {label}",
                   f"size {label} vs ", None if info.price is None else round(info.price * 100), cold, label)
            for info, family, log_size, family_name, cold, label in zip(
                self._infos, self.family_codes.tolist(), self.log_size.tolist(), self._families, is_cold.tolist(),
                [info.package_size or info.size for info in self._infos], strict=True)
        ]
        # per item, [lo, hi) of its group and of its parent category; per customer, the home store's row (-1: none)
        group_ptr, parent_ptr = self.model.group_ptr.tolist(), self.model.parent_ptr.tolist()
        self._group_bounds = [(group_ptr[g], group_ptr[g + 1]) for g in self.model.group_of.tolist()]
        self._parent_bounds = [(parent_ptr[p], parent_ptr[p + 1]) for p in self.model.parent_of.tolist()]
        self._home_store: list[int] = self.model.home_store.tolist()
        # per item, its variants' catalog fields (Variant's first four): only their stock is read per query
        self._variant_fields = [tuple((info.item_id, info.package_size, info.size, info.price)
                                      for info in map(self._infos.__getitem__, variants))
                                for variants in self._find_variants()]

    def _warm_up(self) -> None:
        """Compile the query path's numba kernels now (or load them from numba's cache, beside the code), so that
        the first request does not wait seconds for it."""
        if self.model.n_items:
            customer = 0 if len(self.model.customers) else None
            candidates, features, _ = self.candidates(0, customer)
            self.select(0, candidates, features, 1)
            self.retrieve(0, k=1)
            if customer is not None:
                self._customer_items.lookup(customer, candidates)  # the answer's purchase counts

    def _find_variants(self) -> list[tuple[int, ...]]:
        """Per item, up to :data:`MAX_VARIANTS` other pack sizes: same brand and group, another size (an unknown
        size has none), most popular first (a group is stored so)."""
        n = self.model.n_items
        variants: list[tuple[int, ...]] = [()] * n
        order = np.lexsort((np.arange(n), self.brand_codes, self.model.group_of))  # by group, brand, index
        key = self.model.group_of[order].astype(np.int64) * (len(self.brand_names) + 1) + self.brand_codes[order]
        starts = np.flatnonzero(np.diff(key, prepend=-1))
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True):
            if end - start < 2:
                continue
            block = order[start:end]
            for x in block.tolist():
                other_size = np.abs(self.log_size[block] - self.log_size[x]) > SAME_SIZE_TOLERANCE  # False if NaN
                variants[x] = tuple(block[other_size][:MAX_VARIANTS].tolist())
        return variants

    def _log_relative_to_group_top(self, values: np.ndarray) -> np.ndarray:
        """log1p(value) / log1p(the largest value in the item's group), 0 where the group has none."""
        if not len(values):
            return values.astype(np.float32)
        top = np.log1p(np.maximum.reduceat(values, self.model.group_ptr[:-1]))[self.model.group_of]
        return np.divide(np.log1p(values), top, out=np.zeros_like(values), where=top > 0).astype(np.float32)

    # -- public API ------------------------------------------------------------------------------
    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index_of

    def item_info(self, item_id: str) -> ItemInfo:
        return self._infos[self.index_of(item_id)]

    def substitutes(self, item_id: str, customer_id: str | None = None, store_id: str | None = None,
                    k: int = 10, exclude: Iterable[str] = (), filters: SubstituteFilters | None = None
                    ) -> SubstituteList:
        """Up to ``k`` ranked substitutes for ``item_id``; fewer (or none) rather than off-group padding."""
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
        x = self.index_of(item_id)
        store = store_id or ONLINE
        cust_row = self._customer_row.get(customer_id) if customer_id is not None else None
        candidates, features, widened = self.candidates(x, cust_row, store, exclude, filters)
        top, scores = self.select(x, candidates, features, k, filters is not None and filters.size_alternatives)
        target = self._infos[x]
        results = self._present(x, candidates[top], scores[top], features[top], widened[top], cust_row)
        _, restock_eta, available_at = self._availability(item_id, store)
        return SubstituteList(
            item=target, substitutes=results, personalized=cust_row is not None,
            widened=any(r.widened for r in results), model_version=self.version, store_id=store,
            restock_eta=restock_eta, available_at=available_at, variants=self._variants(x, store),
            metadata_based=self._shown[x].cold,
        )

    def _availability(self, item_id: str, store: str) -> tuple[bool, datetime | None, tuple[str, ...]]:
        """(in stock at ``store``, restock date there if out and known, other places that report it in stock)."""
        state = self.inventory.state(store, item_id)
        out = state is not None and not state.in_stock
        elsewhere = self.inventory.in_stock_at(item_id)
        if store in elsewhere:
            elsewhere = tuple(s for s in elsewhere if s != store)
        return not out, state.restock_eta if out and state is not None else None, elsewhere

    def _variants(self, x: int, store: str) -> tuple[Variant, ...]:
        """Up to :data:`MAX_VARIANTS` other pack sizes of X (found at load, :meth:`_find_variants`), with their
        stock at ``store``."""
        return tuple([_new_variant(Variant, fields + self._availability(fields[0], store))
                      for fields in self._variant_fields[x]])

    def order_substitutes(self, item_ids: Sequence[str], customer_id: str | None = None,
                          store_id: str | None = None, k: int = 3, order: Iterable[str] = (),
                          filters: SubstituteFilters | None = None) -> OrderSubstitutes:
        """Substitutes for each unavailable line of one order (one customer, one store), in line order.

        Never proposes an item of the order (``order``, plus the unavailable lines themselves) and never the
        same substitute for two lines: each line's answer is excluded from the later lines. Unknown ids are
        reported rather than failing the whole order; a repeated line is answered once.
        """
        lines = list(dict.fromkeys(item_ids))
        unknown = tuple(i for i in lines if i not in self._index_of)
        taken = set(order) | set(lines)
        answers = []
        for item_id in lines:
            if item_id in self._index_of:
                answer = self.substitutes(item_id, customer_id, store_id, k=k, exclude=taken, filters=filters)
                taken.update(s.item_id for s in answer)
                answers.append(answer)
        return OrderSubstitutes(
            lines=tuple(answers), unknown_items=unknown, model_version=self.version,
            personalized=customer_id is not None and customer_id in self._customer_row,
        )

    def customer_profile(self, customer_id: str, max_categories: int = 10) -> CustomerProfile:
        """The customer's segment and, per category they buy most, brands, usual size and price band."""
        row = self._customer_row.get(customer_id)
        if row is None:
            raise UnknownCustomerError(customer_id)
        items, values = self._customer_items.row(row)
        w, n = values[:, 0].astype(np.float64), values[:, 1]
        parents = self.model.parent_of[items]
        totals = np.bincount(parents, weights=w, minlength=len(self.model.parent_ptr) - 1)
        categories = []
        for parent in np.argsort(-totals, kind="stable")[:max_categories]:
            if totals[parent] <= 0:
                break
            mine = parents == parent
            its, iw = items[mine], w[mine]
            brand_weight = pd.Series(iw).groupby(self.brand_names[self.brand_codes[its]]).sum().nlargest(3)
            info = self._infos[int(its[0])]
            usual_size = None
            families = self.family_codes[its]
            if (families >= 0).any():
                main = np.bincount(families[families >= 0], weights=iw[families >= 0]).argmax()
                sized = families == main
                middle = _weighted_quantiles(self.log_size[its][sized].astype(np.float64), iw[sized], [0.5])[0]
                usual_size = format_quantity(math.exp(middle), str(self._families[int(its[sized][0])]))
            priced = ~np.isnan(self.price[its])
            band = (tuple(round(v, 2) for v in _weighted_quantiles(self.price[its][priced], iw[priced],
                                                                  [0.25, 0.5, 0.75]))
                    if priced.any() else None)
            categories.append(CategoryPreference(
                department=info.department, category=info.category,
                share=round(float(totals[parent] / totals.sum()), 4), purchases=int(n[mine].sum()),
                brands=tuple((str(b), round(float(v / iw.sum()), 4)) for b, v in brand_weight.items()),
                private_label_share=round(float(iw[self.private_label[its]].sum() / iw.sum()), 4),
                usual_size=usual_size, price_band=band,  # type: ignore[arg-type]
            ))
        stats = self.model.customer_stats
        stat = stats.iloc[row] if len(stats.columns) else None
        home = int(self.model.home_store[row])
        return CustomerProfile(
            customer_id=customer_id, model_version=self.version,
            segment=None if stat is None else str(stat["segment"]),
            recency_days=None if stat is None or pd.isna(stat["recency_days"]) else float(stat["recency_days"]),
            baskets=None if stat is None else int(stat["baskets"]),
            spend=None if stat is None else float(stat["spend"]),
            home_store=str(self.model.stores[home]) if home >= 0 else None, items=len(items),
            categories=tuple(categories),
        )

    def customer_row(self, customer_id: str) -> int | None:
        return self._customer_row.get(customer_id)

    def index_of(self, item_id: str) -> int:
        """Internal index of an item (raises :class:`UnknownItemError`)."""
        index = self._index_of.get(item_id)
        if index is None:
            raise UnknownItemError(item_id)
        return index

    def group_range(self, x: int) -> tuple[int, int]:
        """[lo, hi) internal indices of item ``x``'s substitution group."""
        return self._group_bounds[x]

    def candidates(self, x: int, cust_row: int | None, store: str = ONLINE, exclude: Iterable[str] = (),
                   filters: SubstituteFilters | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every allowed candidate for item index ``x`` with its feature rows and whether it is widened."""
        lo, hi = self._group_bounds[x]
        candidates, similarity = self._allowed_in_range(x, lo, hi, store, exclude, filters)
        widened = np.zeros(len(candidates), dtype=bool)
        if len(candidates) < self.min_group_size:
            plo, phi = self._parent_bounds[x]
            if phi - plo > hi - lo:
                wide, wide_sim = self._allowed_in_range(x, plo, phi, store, exclude, filters)
                outside = (wide < lo) | (wide >= hi)
                candidates = np.concatenate([candidates, wide[outside]])
                similarity = np.concatenate([similarity, wide_sim[outside]])
                widened = np.concatenate([widened, np.ones(int(outside.sum()), dtype=bool)])
        store_row = self._store_row.get(store)
        if store_row is None and cust_row is not None and self._home_store[cust_row] >= 0:
            store_row = self._home_store[cust_row]
        features = self._features(x, candidates, similarity, widened, cust_row, store_row, lo, hi)
        return candidates, features, widened

    def retrieve(self, x: int, store: str = ONLINE, exclude: Iterable[str] = (),
                 filters: SubstituteFilters | None = None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval only: members of X's group that pass the hard rules and filters, most similar to X first
        (the best ``k`` when given), with their cosine. No widening, features or ranking: the step a
        nearest-neighbour baseline does, for benchmarks and diagnostics."""
        candidates, similarity = self._allowed_in_range(x, *self.group_range(x), store, exclude, filters)
        best = best_positions(similarity.astype(np.float64), len(similarity) if k is None else k)  # one compile
        return candidates[best], similarity[best]

    def select(self, x: int, candidates: np.ndarray, features: np.ndarray, k: int, size_alternatives: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the answer for item index ``x`` among ``candidates``: the best ``k`` that pass the score
        cut-off (best first), without near-duplicates; and the scores (-inf: under the cut-off or outside the
        re-ranker's shortlist, see ``recsys.ranking``). One compiled kernel, :func:`_select`.

        Near-duplicates: once :data:`MAX_PACK_SIZES` pack sizes of one brand's product (same brand and group)
        are in, further sizes are skipped, unless ``size_alternatives`` or the customer bought that pack
        before; when that leaves fewer than ``k`` of the :data:`NEAR_DUPLICATE_POOL` x ``k`` best, a pool 4x
        wider is ranked. Same-size items of one brand stay: in this data they are the brand's varieties
        (flavours), which customers do switch between. Measured on the switch hold-out (10,000 queries): HR@3
        0.515 -> 0.516, new-to-customer HR@3 0.228 -> 0.225, HR@10 0.736 -> 0.726; one size per product cost
        0.04 HR@3 and 0.12 HR@10.

        An X known only from the catalog is ordered by the linear score alone: the re-ranker learned from
        switches away from items with behaviour, and such an X has no switching, co-purchase or trial signals."""
        rerank = not self._shown[x].cold and self.scorer.trees is not None
        return _select(features, candidates, self.brand_codes, self.model.group_of, self._size_bucket, k,
                       size_alternatives, rerank, *self.scorer.kernel_arguments)

    # -- query steps -----------------------------------------------------------------------------
    def _allowed_in_range(self, x: int, lo: int, hi: int, store: str, exclude: Iterable[str],
                          filters: SubstituteFilters | None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates in [lo, hi) that pass :meth:`allowed`, with their cosine to x: all of them when the range or
        what passes has at most ``max_candidates`` (the rules come first, so a filter that leaves few items of a
        large parent category costs no search), else the nearest ``max_candidates`` of the range (FAISS) that
        pass."""
        members = np.arange(lo, hi)
        keep = self.allowed(members, x, store, exclude, filters)
        factors = self.model.factors
        if hi - lo <= self.max_candidates:  # BLAS over the range: the similarity feature the ranker was fitted on
            return members[keep], (factors[lo:hi] @ factors[x])[keep]
        candidates = members[keep]
        if len(candidates) <= self.max_candidates:
            return candidates, factors[candidates] @ factors[x]
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi, True))
        sims, ids = self.model.index.search(factors[x:x + 1], self.max_candidates, params=params)
        found = ids[0] >= 0
        nearest, similarity = ids[0][found].astype(np.int64), sims[0][found]
        passing = keep[nearest - lo]
        return nearest[passing], similarity[passing]

    def _stock_mask(self, store: str) -> np.ndarray | None:
        version = self.inventory.version(store)
        if version == 0:
            return None
        cached = self._stock_masks.get(store)
        if cached is not None and cached[0] == version:
            return cached[1]
        version, missing = self.inventory.out_of_stock(store)
        mask = np.zeros(self.model.n_items, dtype=bool)
        positions = pd.Index(self.item_ids).get_indexer(missing) if missing else np.empty(0, dtype=np.int64)
        mask[positions[positions >= 0]] = True
        self._stock_masks[store] = (version, mask)
        return mask

    def allowed(self, candidates: np.ndarray, x: int, store: str = ONLINE, exclude: Iterable[str] = (),
                filters: SubstituteFilters | None = None) -> np.ndarray:
        """Which ``candidates`` pass the hard rules (not X, in stock at ``store``, not excluded) and ``filters``."""
        stock = self._stock_mask(store)
        excluded = [self._index_of[e] for e in exclude if e in self._index_of]
        return _rule_mask(candidates, x, _NO_MASK if stock is None else stock,
                          np.unique(np.asarray(excluded, dtype=np.int64)) if excluded else _NO_ITEMS,
                          _NO_MASK if filters is None else self._filter_mask(candidates, x, filters))

    def _filter_mask(self, candidates: np.ndarray, x: int, filters: SubstituteFilters) -> np.ndarray:
        mask = np.ones(len(candidates), dtype=bool)
        if filters.brands is not None:
            mask &= np.isin(self.brand_codes[candidates], self._brand_codes_of(filters.brands))
        if filters.exclude_brands:
            mask &= ~np.isin(self.brand_codes[candidates], self._brand_codes_of(filters.exclude_brands))
        if filters.private_label is not None:
            mask &= self.private_label[candidates] == filters.private_label
        if filters.max_price is not None:
            mask &= self.price[candidates] <= filters.max_price  # unknown price (NaN) fails
        if filters.same_size_family or filters.max_size_ratio is not None:
            mask &= (self.family_codes[candidates] == self.family_codes[x]) & (self.family_codes[x] >= 0)
        if filters.max_size_ratio is not None:
            mask &= np.abs(self.log_size[candidates] - self.log_size[x]) <= math.log(filters.max_size_ratio) + 1e-6
        return mask

    def _brand_codes_of(self, brands: list[str]) -> list[int]:
        return [code for code in map(self._brand_code.get, brands) if code is not None]

    def _features(self, x: int, cand: np.ndarray, similarity: np.ndarray, widened: np.ndarray,
                  cust_row: int | None, store_row: int | None, lo: int, hi: int) -> np.ndarray:
        pairs, store, customer, accepted = self._pairs, self._store_items, self._customer_items, self._accepted
        return candidate_features(
            x, cand, similarity, widened, pairs.indptr, pairs.indices, pairs.values, self._item_features,
            -1 if store_row is None else store_row, store.indptr, store.indices, store.values,
            self.family_codes, self.log_size, self.log_price, self.brand_codes, self.private_label,
            -1 if cust_row is None else cust_row, (lo, hi), self._parent_bounds[x],
            customer.indptr, customer.indices, customer.values, accepted.indptr, accepted.indices, accepted.values,
        )

    # -- presentation ----------------------------------------------------------------------------
    def _build_infos(self) -> list[ItemInfo]:
        items = self.model.items
        sizes = [None if t is None or pd.isna(t) else " ".join(str(t).split())
                 for t in items["package_size"].astype(object).tolist()]
        prices = [None if math.isnan(p) else round(p, 2) for p in self.price.tolist()]
        families = self._families
        basis = np.asarray([UNIT_PRICE_BASIS.get(f, np.nan) if f is not None else np.nan for f in families])
        per_unit = self.price / np.exp(self.log_size.astype(np.float64)) * basis
        unit_prices = [None if not math.isfinite(u) or u <= 0 else float(f"{u:.3g}") for u in per_unit.tolist()]
        unit_per = [format_quantity(b, f) if u is not None else None
                    for u, b, f in zip(unit_prices, basis.tolist(), families, strict=True)]
        columns = zip(items["item_id"].astype(str).tolist(), items["brand"].astype(str).tolist(),
                      items["private_label"].astype(bool).tolist(), items["department"].astype(str).tolist(),
                      items["category"].astype(str).tolist(), items["product_type"].astype(str).tolist(),
                      sizes, self._size_display, prices, unit_prices, unit_per, strict=True)
        return [ItemInfo(*row) for row in columns]

    def _present(self, x: int, items: np.ndarray, scores: np.ndarray, features: np.ndarray, widened: np.ndarray,
                 cust_row: int | None) -> tuple[Substitute, ...]:
        """The answer's substitutes, with their reasons and how they compare with X, from each item's
        :class:`_Shown` record and the reason features."""
        target = self._infos[x]
        personal = cust_row is not None
        reason_features = features.take(_REASON_FEATURES, axis=1).tolist()
        # purchase counts, looked up only when some substitute was bought before (own_history > 0)
        bought = (self._customer_items.lookup(cust_row, items)[:, 1].astype(np.int64).tolist()
                  if cust_row is not None and any(row[-1] > 0 for row in reason_features) else [0] * len(items))
        shown = self._shown
        _, x_family, x_log_size, x_size, _, _, _, x_cents, _, x_label = shown[x]
        x_private_label = target.private_label
        same_type = f"same type: {target.product_type.lower()}"
        results = []
        # the features that become reasons come unpacked, in _REASON_FEATURES order (converting all 27 costs more)
        for c, score, (brand_share, same_brand, own_accepted, accepted, switched, bought_instead, viewed, _), \
                is_widened, n in zip(items.tolist(), scores.tolist(), reason_features, widened.tolist(), bought,
                                     strict=True):
            info, family, log_size, size, family_name, same_size, size_start, cents, cold, _ = shown[c]
            reasons = [] if is_widened else [same_type]
            size_ratio = size_difference = None
            if family == x_family and family >= 0:
                log_ratio = log_size - x_log_size
                size_ratio = _size_ratio(log_ratio)
                if abs(log_ratio) <= SAME_SIZE_TOLERANCE:
                    size_difference = "same"
                    reasons.append(same_size)
                else:
                    size_difference = _size_difference(size - x_size, family_name)
                    reasons.append(size_start + x_label)
            usual_brand = personal and brand_share >= USUAL_BRAND_SHARE
            if usual_brand:
                reasons.append("your usual brand")
            elif same_brand:
                reasons.append("same brand")
            if info.private_label and not x_private_label:
                reasons.append("store brand")
            if own_accepted > 0:
                reasons.append("you accepted it as a substitute before")
            if n:
                reasons.append(f"you bought it before ({n}x)")
            if accepted >= BOUGHT_INSTEAD_MIN:
                reasons.append("shoppers accepted it instead")
            if switched >= BOUGHT_INSTEAD_MIN or bought_instead >= BOUGHT_INSTEAD_MIN:
                reasons.append("often bought instead")
            if viewed >= BOUGHT_INSTEAD_MIN:
                reasons.append("often viewed together")
            price_difference = None
            if cents is not None and x_cents is not None:
                price_difference = (cents - x_cents) / 100  # the same float as round(price - x_price, 2)
                reasons.append(_price_reason(cents - x_cents))
            if cold:
                reasons.append("new in the catalog")
            if is_widened:
                reasons.append(f"from the wider category {info.category}: too few {target.product_type} available")
            results.append(_new_substitute(Substitute, info + (round(score, 4), tuple(reasons), size_ratio,
                                                               size_difference, price_difference, usual_brand, n,
                                                               is_widened)))
        return tuple(results)
