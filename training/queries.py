"""Switch queries (the evaluation protocol, docs/evaluation.md), shared by evaluation and ranker fitting.

For customer h and substitution group T, X is h's most-bought item of T before the split (bought in at least
2 baskets). A test event is a basket after the split holding some Y in T with Y != X and no X: h substituted.
Query (h, X), one per pair; relevant = the Ys of all of h's test events for X; "new" = the Ys h never bought
before the split. (One query per basket instead gives history-then-popular HR@3 0.51, not the reference 0.58 this
protocol was designed around; one per pair reproduces the reference 0.58 and 0.30.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.domain.schema import PURCHASE_TYPES
from recsys.query.engine import SubstituteEngine
from recsys.state.inventory import ONLINE


@dataclass
class Queries:
    """Switch queries in a model's index space."""

    customer: np.ndarray  # customer row in the model (-1: unknown to the model)
    x: np.ndarray  # internal index of X
    relevant: list[np.ndarray]  # internal indices of the Ys
    new: list[np.ndarray]  # the Ys never bought by the customer before the split
    # the store of each query's first switch basket (the online channel when it has none); None: not built
    store: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def new_mask(self) -> np.ndarray:
        """Which queries have at least one Y new to the customer (the "new to customer" subset)."""
        return np.asarray([len(n) > 0 for n in self.new], dtype=bool)

    @property
    def rebuy_mask(self) -> np.ndarray:
        """Which queries have a Y the customer bought before the split ("rebuy"; the others are "trial" queries:
        every Y new to the customer)."""
        return np.asarray([len(n) < len(r) for n, r in zip(self.new, self.relevant, strict=True)], dtype=bool)

    @property
    def n_new(self) -> int:
        return int(self.new_mask.sum())

    def sample(self, n: int | None, seed: int) -> Queries:
        return self.partition(n, seed)[0]

    def partition(self, n: int | None, seed: int) -> tuple[Queries, Queries]:
        """A seeded sample of ``n`` queries (all when None or more than there are) and the rest."""
        if n is None or n >= len(self):
            return self, self.take(np.empty(0, dtype=np.int64))
        chosen = np.zeros(len(self), dtype=bool)
        chosen[np.random.default_rng(seed).choice(len(self), size=n, replace=False)] = True
        return self.take(np.flatnonzero(chosen)), self.take(np.flatnonzero(~chosen))

    def __add__(self, other: Queries) -> Queries:
        stores = None if self.store is None or other.store is None else np.concatenate([self.store, other.store])
        return Queries(np.concatenate([self.customer, other.customer]), np.concatenate([self.x, other.x]),
                       self.relevant + other.relevant, self.new + other.new, stores)

    def take(self, rows: np.ndarray) -> Queries:
        return Queries(self.customer[rows], self.x[rows], [self.relevant[i] for i in rows],
                       [self.new[i] for i in rows], None if self.store is None else self.store[rows])

    def split(self, share: float, seed: int) -> tuple[Queries, Queries]:
        """A seeded random split: (the rest, ``share`` of the queries)."""
        held = np.random.default_rng(seed).random(len(self)) < share
        return self.take(np.flatnonzero(~held)), self.take(np.flatnonzero(held))


def customer_rows(engine: SubstituteEngine, customer_ids: Iterable[object]) -> np.ndarray:
    """Each customer's row in the engine's model, -1 for customers it does not know."""
    return np.asarray([-1 if (row := engine.customer_row(str(c))) is None else row for c in customer_ids],
                      dtype=np.int64)


def positions_in(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Each value's position in ``index`` (-1 when absent); a categorical column is looked up once per category,
    not once per row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        by_category = np.append(index.get_indexer(values.cat.categories), -1)  # code -1 (missing) -> -1
        return by_category[values.cat.codes.to_numpy()]
    return index.get_indexer(values)


def build_queries(events: pd.DataFrame, engine: SubstituteEngine, split: pd.Timestamp,
                  end: pd.Timestamp | None = None, per_basket: bool = False) -> Queries:
    """Switch queries from purchases: history before ``split``, test baskets in [split, end); one per
    (customer, X), relevant = every Y of its test baskets. ``per_basket``: one per switch basket instead, its
    Ys relevant (the ranker learns from each switch as it happened: what the shopper took at that moment).

    Customers and baskets are integer codes in the ids' sorted order, so queries come out in the order of their
    (customer id, group, basket id, X) whatever the ids' type."""
    events = events.loc[events["event_type"].isin(list(PURCHASE_TYPES)),
                        ["customer_id", "session_id", "item_id", "timestamp", "store_id"]]
    item = positions_in(pd.Index(engine.item_ids), events["item_id"])
    known = item >= 0
    events, item = events[known], item[known]
    customer, customer_ids = pd.factorize(events["customer_id"], sort=True)
    store, store_ids = pd.factorize(events["store_id"].astype(object))  # -1: no store (the online channel)
    frame = pd.DataFrame({
        "customer": customer, "basket": pd.factorize(events["session_id"], sort=True)[0],
        "item": item, "group": engine.model.group_of[item], "time": events["timestamp"].to_numpy(),
        "store": store,
    })
    del events
    before = frame[frame["time"] < split]
    after = frame[(frame["time"] >= split) & ((frame["time"] < end) if end is not None else True)]

    baskets = before.groupby(["customer", "group", "item"])["basket"].nunique().rename("n").reset_index()
    baskets = baskets.sort_values(["customer", "group", "n", "item"], ascending=[True, True, False, True])
    favourite = baskets.drop_duplicates(["customer", "group"])
    favourite = favourite.loc[favourite["n"] >= 2, ["customer", "group", "item"]].rename(columns={"item": "x"})

    test = after[["customer", "group", "basket", "item", "store"]].drop_duplicates(["customer", "group", "basket",
                                                                                    "item"])
    test = test.merge(favourite, on=["customer", "group"])
    holds_x = (test["item"] == test["x"]).groupby([test["customer"], test["group"], test["basket"]]).transform("any")
    test = test[~holds_x]
    n_items = np.int64(engine.model.n_items)
    bought_before = np.unique(before["customer"].to_numpy(np.int64) * n_items + before["item"].to_numpy(np.int64))
    pair = test["customer"].to_numpy(np.int64) * n_items + test["item"].to_numpy(np.int64)
    test = test.assign(new=~np.isin(pair, bought_before))
    # one query per key, its items sorted and unique: split the sorted rows where the key changes
    keys = ["customer", "group", *(["basket"] if per_basket else []), "x"]
    test = test.drop_duplicates([*keys, "item"]).sort_values([*keys, "item"])
    starts = np.flatnonzero(~test[keys].duplicated().to_numpy())
    relevant = np.split(test["item"].to_numpy(np.int64), starts[1:]) if len(test) else []
    is_new = np.split(test["new"].to_numpy(), starts[1:]) if len(test) else []
    first = test.iloc[starts]
    names = np.append(np.asarray(store_ids.astype(str), dtype=object), ONLINE)  # code -1 -> the online channel
    return Queries(customer=customer_rows(engine, np.asarray(customer_ids.astype(str))[first["customer"].to_numpy()]),
                   x=first["x"].to_numpy(np.int64), relevant=relevant,
                   new=[items[flags] for items, flags in zip(relevant, is_new, strict=True)],
                   store=names[first["store"].to_numpy()])
