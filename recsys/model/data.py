"""In-memory model: what the trainer produces and the engine queries, and its (pickle-free) files.

Items are stored in *group order*: sorted by (department, category, product_type), so every substitution
group and every parent category is one contiguous range of internal indices. That makes "search within
X's group" a range restriction (a FAISS ``IDSelectorRange`` over a flat index, exact and only scanning the
range) and makes widening to the parent category another range, with no per-query set building.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.model.assortment import Assortment

ITEMS_FILE = "items.parquet"
CUSTOMERS_FILE = "customers.parquet"
STORES_FILE = "stores.parquet"
FACTORS_FILE = "item_factors.npy"
INDEX_FILE = "index.faiss"
NEIGHBOURS_FILE = "neighbours.npz"
PROFILES_FILE = "customer_items.npz"

#: the substitution group and its parent (the level a query widens to)
GROUP_KEYS = ("department", "category", "product_type")
PARENT_KEYS = ("department", "category")
#: columns of ``items.parquet`` (in group order)
ITEM_COLUMNS = (
    "item_id", "brand", "manufacturer", "private_label", "department", "category", "product_type",
    "package_size", "size_qty", "size_family", "price", "popularity", "trend", "n_customers",
    "trial_trend", "days_on_sale",
)
#: item columns added after format version 1's first models, with the value an older model gets
OPTIONAL_ITEM_COLUMNS = {"trial_trend": 0.0, "days_on_sale": float("nan")}
RERANKER_FILE = "reranker.txt"
#: the item x item pair signals, as :class:`ModelData` fields and ``neighbours.npz`` keys: each is named after the
#: feature it feeds (recsys.query.kernels.Feature), in the order the query path reads them (kernels.PAIR_FEATURES)
PAIR_SIGNALS: Final[tuple[str, ...]] = ("bought_instead", "viewed_together", "switched_to", "tried",
                                        "accepted_instead")
#: their names in format version 1 (``switch`` was also counted as ``co_customer_pairs``)
FORMAT_1_NAMES: Final[dict[str, str]] = {"bought_instead": "switch", "viewed_together": "coview",
                                         "switched_to": "switch_to", "tried": "trial", "accepted_instead": "feedback"}


def _save_csr(arrays: dict[str, np.ndarray], prefix: str, matrix: sp.csr_matrix) -> None:
    arrays[f"{prefix}_indptr"] = matrix.indptr.astype(np.int64)
    arrays[f"{prefix}_indices"] = matrix.indices.astype(np.int32)
    arrays[f"{prefix}_data"] = matrix.data.astype(np.float32)
    arrays[f"{prefix}_shape"] = np.asarray(matrix.shape, dtype=np.int64)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of named arrays (its stubs read a keyword argument of a dict as ``allow_pickle``)."""
    np.savez(path, **cast(dict[str, Any], arrays))


def _load_csr(arrays: Any, prefix: str) -> sp.csr_matrix:
    n_rows, n_cols = (int(v) for v in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=(n_rows, n_cols)
    )


def load_mapped(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by ``np.savez`` (members stored uncompressed), memory-mapped
    copy-on-write: worker processes that load the same model share its pages in the OS page cache, so each
    extra worker adds little memory. A compressed member (not written by this package) is read normally."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            # the member's data follows its local header: 30 bytes, then the name and the extra field
            raw.seek(info.header_offset + 26)
            name_length, extra_length = np.frombuffer(raw.read(4), dtype="<u2")
            raw.seek(info.header_offset + 30 + int(name_length) + int(extra_length))
            version = np.lib.format.read_magic(raw)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:  # a header format this reader does not map: read the array normally
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            shape, fortran_order, dtype = read_header(raw)
            if dtype.hasobject:
                raise ValueError(f"{path}: {name} holds Python objects, refused")
            if 0 in shape:
                arrays[name] = np.empty(shape, dtype=dtype)
                continue
            arrays[name] = np.memmap(raw.name, dtype=dtype, mode="c", offset=raw.tell(), shape=shape,
                                     order="F" if fortran_order else "C")
    return arrays


def _load_optional_csr(arrays: Any, prefix: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """A matrix added after format version 1's first models: empty when an older model lacks it."""
    if f"{prefix}_shape" not in arrays:
        return sp.csr_matrix(cast(Any, shape), dtype=np.float32)  # an empty matrix (the stubs know no shape form)
    return _load_csr(arrays, prefix)


@dataclass
class ModelData:
    """Everything a query needs, indexed by internal item index (group order) and customer index."""

    items: pd.DataFrame
    factors: np.ndarray  # (n_items, d) float32, L2-normalised, zero rows for items without events
    # the item x item pair signals, each named after the feature it feeds (recsys.query.kernels.Feature)
    bought_instead: sp.csr_matrix  # same group: P(customer buys Y | buys X) over customers
    viewed_together: sp.csr_matrix  # same group: "viewed in one session" strength
    switched_to: sp.csr_matrix  # share of switch baskets (usual item X missing) holding Y
    tried: sp.csr_matrix  # share of customers loyal to X who also bought Y
    customers: np.ndarray  # customer ids (str), row order of the profile matrices
    stores: np.ndarray  # store ids (str), row order of ``store_items``
    store_items: sp.csr_matrix  # store x item, recency-weighted purchases (what sells at each store)
    home_store: np.ndarray  # per customer: row in ``stores`` of the store they shop at most, -1 if none
    customer_stats: pd.DataFrame  # per customer (row order): recency_days, baskets, spend, segment (RFM)
    customer_weight: sp.csr_matrix  # customer x item, recency-weighted interaction weight
    customer_count: sp.csr_matrix  # same structure: purchase count
    customer_recent: sp.csr_matrix  # same structure: weight with the short (trend) half-life
    accepted_instead: sp.csr_matrix  # item x item, substitution feedback X -> Y: (accepted - rejected) / (all + 1)
    customer_accepted: sp.csr_matrix  # customer x item, substitutes the customer accepted or chose
    index: faiss.Index = field(repr=False)
    reranker: str = field(default="", repr=False)  # LightGBM text model of the re-ranker, "" when none
    # what each store carries (recsys.model.assortment); None when built without: every item likely carried
    assortment: Assortment = field(default=None, repr=False)  # type: ignore[assignment]
    # derived at construction, never stored
    group_of: np.ndarray = field(init=False, repr=False)
    group_ptr: np.ndarray = field(init=False, repr=False)
    parent_of: np.ndarray = field(init=False, repr=False)
    parent_ptr: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.group_of, self.group_ptr = contiguous_ranges(self.items[list(GROUP_KEYS)])
        self.parent_of, self.parent_ptr = contiguous_ranges(self.items[list(PARENT_KEYS)])
        if self.assortment is None:
            self.assortment = Assortment.everything(len(self.items))

    @property
    def n_items(self) -> int:
        return len(self.items)

    def save(self, directory: Path) -> None:
        self.items.to_parquet(directory / ITEMS_FILE, index=False)
        customers = pd.DataFrame({"customer_id": self.customers.astype(str),
                                  "home_store": self.home_store.astype(np.int32)})
        pd.concat([customers, self.customer_stats.reset_index(drop=True)], axis=1).to_parquet(
            directory / CUSTOMERS_FILE, index=False)
        pd.DataFrame({"store_id": self.stores.astype(str)}).to_parquet(directory / STORES_FILE, index=False)
        np.save(directory / FACTORS_FILE, self.factors.astype(np.float32), allow_pickle=False)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        neighbours: dict[str, np.ndarray] = {}
        for name in PAIR_SIGNALS:
            _save_csr(neighbours, name, getattr(self, name))
        _save_csr(neighbours, "store_items", self.store_items)
        _save_npz(directory / NEIGHBOURS_FILE, neighbours)
        profiles: dict[str, np.ndarray] = {}
        _save_csr(profiles, "weight", self.customer_weight)
        profiles["count_data"] = self.customer_count.data.astype(np.float32)
        profiles["recent_data"] = self.customer_recent.data.astype(np.float32)
        _save_csr(profiles, "accepted", self.customer_accepted)
        _save_npz(directory / PROFILES_FILE, profiles)
        if self.reranker:
            (directory / RERANKER_FILE).write_text(self.reranker)
        self.assortment.save(directory)

    @classmethod
    def load(cls, directory: Path) -> ModelData:
        items = pd.read_parquet(directory / ITEMS_FILE)
        items = items.assign(**{c: v for c, v in OPTIONAL_ITEM_COLUMNS.items() if c not in items.columns})
        customer_table = pd.read_parquet(directory / CUSTOMERS_FILE)
        customers = customer_table["customer_id"].to_numpy(dtype=object)
        home_store = customer_table["home_store"].to_numpy(np.int64)
        stats = customer_table.drop(columns=["customer_id", "home_store"])  # no columns in older models
        stores = pd.read_parquet(directory / STORES_FILE)["store_id"].to_numpy(dtype=object)
        # the large arrays are memory-mapped copy-on-write (never written, so shared by every process that
        # loads the model); the FAISS flat index maps its vectors too
        factors = np.load(directory / FACTORS_FILE, allow_pickle=False, mmap_mode="c")
        arrays = load_mapped(directory / NEIGHBOURS_FILE)
        # format version 1 named the pair signals otherwise (FORMAT_1_NAMES): read either
        pairs = {name: _load_optional_csr(arrays, name if f"{name}_shape" in arrays else FORMAT_1_NAMES[name],
                                          (len(items), len(items)))
                 for name in PAIR_SIGNALS}
        store_items = _load_csr(arrays, "store_items")
        arrays = load_mapped(directory / PROFILES_FILE)
        weight = _load_csr(arrays, "weight")
        count = sp.csr_matrix((arrays["count_data"], weight.indices, weight.indptr), shape=weight.shape)
        recent = sp.csr_matrix((arrays["recent_data"], weight.indices, weight.indptr), shape=weight.shape)
        accepted = _load_optional_csr(arrays, "accepted", weight.shape)
        index = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        reranker = (directory / RERANKER_FILE).read_text() if (directory / RERANKER_FILE).is_file() else ""
        if index.ntotal != len(items) or factors.shape[0] != len(items):
            raise ValueError(f"index has {index.ntotal} vectors, factors {factors.shape[0]}, items {len(items)}")
        return cls(items=items, factors=factors, **pairs,
                   customers=customers, stores=stores, store_items=store_items, home_store=home_store,
                   customer_stats=stats,
                   customer_weight=weight, customer_count=count, customer_recent=recent,
                   customer_accepted=accepted, index=index, reranker=reranker,
                   assortment=Assortment.load(directory, len(items)))


def contiguous_ranges(keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Code of each row's key and start offsets of each key's run; rows must already be sorted by key."""
    changed = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        values = keys.to_numpy()
        changed[1:] = (values[1:] != values[:-1]).any(axis=1)
    codes = np.cumsum(changed) - 1
    starts = np.flatnonzero(changed)
    ptr = np.append(starts, len(keys)).astype(np.int64)
    return codes.astype(np.int32), ptr
