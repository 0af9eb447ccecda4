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

from recsys.engine import SubstituteEngine
from recsys.schema import PURCHASE_TYPES


@dataclass
class Queries:
    """Switch queries in a model's index space."""

    customer: np.ndarray  # customer row in the model (-1: unknown to the model)
    x: np.ndarray  # internal index of X
    relevant: list[np.ndarray]  # internal indices of the Ys
    new: list[np.ndarray]  # the Ys never bought by the customer before the split

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
        return Queries(np.concatenate([self.customer, other.customer]), np.concatenate([self.x, other.x]),
                       self.relevant + other.relevant, self.new + other.new)

    def take(self, rows: np.ndarray) -> Queries:
        return Queries(self.customer[rows], self.x[rows], [self.relevant[i] for i in rows],
                       [self.new[i] for i in rows])

    def split(self, share: float, seed: int) -> tuple[Queries, Queries]:
        """A seeded random split: (the rest, ``share`` of the queries)."""
        held = np.random.default_rng(seed).random(len(self)) < share
        return self.take(np.flatnonzero(~held)), self.take(np.flatnonzero(held))


def customer_rows(engine: SubstituteEngine, customer_ids: Iterable[object]) -> np.ndarray:
    """Each customer's row in the engine's model, -1 for customers it does not know."""
    return np.asarray([-1 if (row := engine.customer_row(str(c))) is None else row for c in customer_ids],
                      dtype=np.int64)


def build_queries(events: pd.DataFrame, engine: SubstituteEngine, split: pd.Timestamp,
                  end: pd.Timestamp | None = None, per_basket: bool = False) -> Queries:
    """Switch queries from purchases: history before ``split``, test baskets in [split, end); one per
    (customer, X), relevant = every Y of its test baskets. ``per_basket``: one per switch basket instead, its
    Ys relevant (the ranker learns from each switch as it happened: what the shopper took at that moment)."""
    events = events[events["event_type"].isin(list(PURCHASE_TYPES))]
    item = pd.Index(engine.item_ids).get_indexer(events["item_id"])
    known = item >= 0
    events, item = events[known], item[known]
    frame = pd.DataFrame({
        "customer": events["customer_id"].to_numpy(), "basket": events["session_id"].to_numpy(),
        "item": item, "group": engine.model.group_of[item], "time": events["timestamp"].to_numpy(),
    })
    before = frame[frame["time"] < split]
    after = frame[(frame["time"] >= split) & ((frame["time"] < end) if end is not None else True)]

    baskets = before.groupby(["customer", "group", "item"])["basket"].nunique().rename("n").reset_index()
    baskets = baskets.sort_values(["customer", "group", "n", "item"], ascending=[True, True, False, True])
    favourite = baskets.drop_duplicates(["customer", "group"])
    favourite = favourite.loc[favourite["n"] >= 2, ["customer", "group", "item"]].rename(columns={"item": "x"})

    test = after[["customer", "group", "basket", "item"]].drop_duplicates()
    test = test.merge(favourite, on=["customer", "group"])
    holds_x = (test["item"] == test["x"]).groupby([test["customer"], test["group"], test["basket"]]).transform("any")
    test = test[~holds_x]
    bought_before = set(zip(before["customer"], before["item"], strict=True))
    test = test.assign(new=[(c, i) not in bought_before for c, i in zip(test["customer"], test["item"], strict=True)])
    grouped = test.groupby(["customer", "group", *(["basket"] if per_basket else []), "x"], sort=True)
    relevant = grouped["item"].agg(lambda s: np.unique(s.to_numpy()))
    new = grouped.apply(lambda g: np.unique(g.loc[g["new"], "item"].to_numpy()), include_groups=False)
    keys = relevant.index.to_frame(index=False)
    return Queries(customer=customer_rows(engine, keys["customer"]), x=keys["x"].to_numpy(np.int64),
                   relevant=list(relevant.to_numpy()),
                   new=list(new.reindex(relevant.index).to_numpy()))
