"""A small synthetic retailer for the fast test tier: a model trains on it in a few seconds.

It has what the engine's contracts need to be exercised, not what judges quality (that is the real-data tier):

- 3 departments, 9 categories, 29 product types (substitution groups) of 1 to 48 items, about 530 items in all,
  with singleton types beside big ones in the same category (widening), package sizes in several unit families
  (some missing or unparseable), national brands and a private label, list prices, and catalog-only items that
  no event names (cold start);
- 6 stores and 150 customers over the 52 weeks of 2017 (as in The Complete Journey, so the evaluation's split
  after week 40 falls on 2017-10-08 on both). Each customer has a home store, usual items and a liking (or not)
  for the private label, buys their usual items basket after basket, and now and then switches to another item
  of the same type: mostly one of their own alternatives, else the same brand, the private label, a similar
  price or a new launch first, and sometimes any item at all. These are the switches the ranker learns from;
- one item in eight launched during the year, sold only from then on;
- browsing sessions (views and a cart within one type) and a few accepted substitutions, so every event type and
  every pair signal is present.

Everything is drawn from one seeded generator, so the data, and the model trained on it, are the same on every
run. :data:`TINY` is the configuration that trains it in seconds while still fitting the learned ranker and its
LightGBM re-ranker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsys import AlsConfig, Dataset, TrainConfig
from recsys.domain.config import RankerConfig
from recsys.domain.schema import ValidationReport

SOURCE: Final[str] = "synthetic"
START: Final[pd.Timestamp] = pd.Timestamp("2017-01-01")
WEEKS: Final[int] = 52
STORES: Final[tuple[str, ...]] = ("301", "302", "303", "304", "305", "306")
CUSTOMERS: Final[int] = 150
PRIVATE_LABEL: Final[str] = "Private label"

#: the configuration of the fast tier: small embeddings, few iterations, a small re-ranker; the ranker still
#: fits on the synthetic switches (there are a few hundred validation queries)
TINY: Final[TrainConfig] = TrainConfig(
    als=AlsConfig(factors=16, iterations=6),
    max_neighbours=20,  # fewer than the big groups' members, so neighbour lists are cut as on real data
    ranker=RankerConfig(validation_weeks=8.0, min_queries=50, max_queries=2_000, selection_queries=600,
                        gbdt_trees=8, gbdt_leaves=7),
)

#: department -> category -> [(product type, items, size unit, base size, base price)]
ASSORTMENT: Final[dict[str, dict[str, list[tuple[str, int, str, float, float]]]]] = {
    "DAIRY": {
        "CHEESE": [("SHREDDED CHEESE", 24, "OZ", 8, 2.49), ("SLICED CHEESE", 16, "OZ", 12, 3.29),
                   ("CREAM CHEESE", 1, "OZ", 8, 1.99)],
        "MILK": [("FLUID MILK", 18, "GAL", 1, 3.19), ("ORGANIC MILK", 6, "GAL", 0.5, 3.99),
                 ("LACTOSE FREE MILK", 1, "GAL", 0.5, 4.19)],
        "YOGURT": [("YOGURT CUPS", 20, "OZ", 6, 0.89), ("GREEK YOGURT", 12, "OZ", 5.3, 1.29),
                   ("KEFIR", 2, "OZ", 32, 3.49)],
    },
    "GROCERY": {
        "CEREAL": [("KIDS CEREAL", 16, "OZ", 12, 3.49), ("ADULT CEREAL", 14, "OZ", 14, 3.99),
                   ("GRANOLA", 1, "OZ", 16, 4.49)],
        "COFFEE": [("GROUND COFFEE", 14, "OZ", 12, 6.99), ("DECAF COFFEE", 4, "OZ", 12, 7.29),
                   ("COFFEE PODS", 8, "CT", 12, 7.99),
                   ("ESPRESSO BEANS", 1, "OZ", 12, 9.99)],
        "SOUP": [("CONDENSED SOUP", 16, "OZ", 10.5, 1.19), ("READY SOUP", 10, "OZ", 18.6, 2.29),
                 ("BROTH", 6, "OZ", 32, 2.19), ("BONE BROTH", 1, "OZ", 16, 4.99)],
    },
    "DRUG GM": {
        "PAPER": [("BATH TISSUE", 14, "ROLL", 12, 7.49), ("PAPER TOWELS", 10, "ROLL", 6, 6.99),
                  ("FACIAL TISSUE", 3, "CT", 160, 1.89)],
        "LAUNDRY": [("LIQUID DETERGENT", 12, "LOAD", 64, 9.99), ("POWDER DETERGENT", 4, "LOAD", 40, 7.49),
                    ("FABRIC SOFTENER", 1, "LOAD", 60, 4.49)],
        "ORAL CARE": [("TOOTHPASTE", 12, "OZ", 4, 2.99), ("TOOTHBRUSH", 8, "CT", 2, 3.49),
                      ("MOUTHWASH", 1, "ML", 500, 4.29)],
    },
}
#: every catalog has a few sizes no parser can read, and a few items with none at all
ODD_SIZES: Final[tuple[str, ...]] = ("LARGE", "FAMILY SIZE")
#: what a shopper pays as a share of the list price: mostly the list price, sometimes a promotion
PROMOTIONS: Final[tuple[float, ...]] = (1.0, 1.0, 0.9, 0.8)
#: items of a type that nobody ever buys or views: cold items, in the catalog only
COLD_PER_TYPE: Final[int] = 1


#: the diet tags of the catalog's items, by position (None: no tag)
DIETS = ("gluten-free", None, "gluten-free|vegan", "vegan", None, "gluten-free", None)


def _catalog(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    next_id = 100_001
    for department, categories in ASSORTMENT.items():
        for c, (category, types) in enumerate(categories.items()):
            brands = [f"Brand {department[0]}{c}{b}" for b in range(4)]
            for product_type, n_items, unit, base_size, base_price in types:
                n_items = n_items if n_items == 1 else 2 * n_items  # singletons stay alone, and warm
                for i in range(n_items + (COLD_PER_TYPE if n_items > 1 else 0)):
                    private = i % 4 == 1
                    brand = PRIVATE_LABEL if private else brands[int(rng.integers(len(brands)))]
                    factor = float(rng.choice([0.5, 1.0, 1.0, 1.0, 1.5, 2.0]))
                    size = round(base_size * factor, 1)
                    size_text = f"{size:g} {unit}"
                    if i % 9 == 7:
                        size_text = f"{2 if factor < 1 else 4} PK/{base_size:g} {unit}"
                        factor *= 2 if factor < 1 else 4
                    if n_items > 6 and i % 11 == 5:
                        size_text = ODD_SIZES[i % 2] if i % 22 == 5 else None
                    price = base_price * factor ** 0.8 * (0.75 if private else float(rng.uniform(0.9, 1.3)))
                    rows.append({
                        "item_id": str(next_id), "brand": brand,
                        "manufacturer": "PL" if private else brand.removeprefix("Brand "),
                        "private_label": private, "department": department, "category": category,
                        "product_type": product_type, "package_size": size_text,
                        "list_price": round(price, 2), "cold": i == n_items,
                        # catalog attributes by position (no draws: the events stay as they were): a flag, and
                        # diet tags where some items have several values and some none
                        "attribute.organic": "yes" if i % 5 == 2 else "no",
                        "attribute.diet": DIETS[i % len(DIETS)],
                    })
                    next_id += 1
    return pd.DataFrame(rows)


def _events(catalog: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    warm = catalog[~catalog["cold"]].reset_index(drop=True)
    by_type = {t: frame.index.to_numpy() for t, frame in warm.groupby("product_type")}
    types = sorted(by_type)
    # popular types are bought by more customers
    type_weight = np.array([len(by_type[t]) for t in types], dtype=float) ** 1.5
    type_weight /= type_weight.sum()
    # within a type, items are popular in a skewed order
    item_weight = np.zeros(len(warm))
    for members in by_type.values():
        item_weight[members] = 1.0 / np.arange(1, len(members) + 1) ** 0.8
    # one item in eight is launched during the data (between weeks 12 and 30): sold only from then on
    launch_day = np.where(rng.random(len(warm)) < 0.125, rng.integers(12 * 7, 30 * 7, len(warm)), 0)
    for members in by_type.values():
        if len(members) < 3:
            launch_day[members] = 0  # a type is never launched whole
    price = warm["list_price"].to_numpy()
    private = warm["private_label"].to_numpy(bool)
    brand = warm["brand"].to_numpy()
    product_type = warm["product_type"].to_numpy()
    # (customer, item position, session, event type, minutes since START, quantity, price, store)
    rows: list[tuple[str, int, str, str, int, float, float, str | None]] = []

    def switch_target(usual: int, likes_private: bool, day: int) -> int:
        members = by_type[product_type[usual]]
        others = members[(members != usual) & (launch_day[members] <= day)]
        if not len(others):
            return usual
        if rng.random() < 0.2:  # a trial: any item of the type, popular or not
            return int(others[int(rng.integers(len(others)))])
        # shoppers switch to the same brand, or to the private label, or to a similarly priced item; a new
        # launch draws triers
        affinity = item_weight[others] * np.where(brand[others] == brand[usual], 3.0, 1.0) \
            * np.where(private[others] & likes_private, 3.0, 1.0) \
            * np.exp(-np.abs(np.log(price[others] / price[usual]))) \
            * np.where(launch_day[others] > 0, 3.0, 1.0)
        return int(rng.choice(others, p=affinity / affinity.sum()))

    established = launch_day == 0
    for c in range(CUSTOMERS):
        customer = str(c + 1)
        home = STORES[c % len(STORES)]
        likes_private = rng.random() < 0.4
        n_usual = int(rng.integers(8, 20))
        chosen_types = rng.choice(len(types), size=n_usual, replace=False, p=type_weight)
        usual = []
        for t in chosen_types:
            members = by_type[types[t]][established[by_type[types[t]]]]
            weights = item_weight[members] * np.where(private[members] == likes_private, 2.0, 1.0)
            usual.append(int(rng.choice(members, p=weights / weights.sum())))
        usual_arr = np.asarray(usual)
        # each usual item has one or two alternatives the customer falls back on: shoppers switch mostly
        # within their own repertoire, now and then to something new
        alternatives = {item: [switch_target(item, likes_private, 0) for _ in range(int(rng.integers(1, 3)))]
                        for item in usual}
        period = int(rng.integers(5, 11))  # days between baskets
        day, basket = int(rng.integers(0, 6)), 0
        while day < WEEKS * 7:
            basket += 1
            store = home if rng.random() < 0.85 else STORES[int(rng.integers(len(STORES)))]
            when = day * 1440 + int(rng.integers(8 * 60, 21 * 60))
            session = f"{customer}-b{basket}"
            for item in usual_arr[rng.random(len(usual_arr)) < 0.5]:
                bought = int(item)
                if rng.random() < 0.2:
                    own = alternatives[bought]
                    bought = own[int(rng.integers(len(own)))] if rng.random() < 0.7 \
                        else switch_target(bought, likes_private, day)
                quantity = 2.0 if rng.random() < 0.25 else 1.0
                paid = round(price[bought] * PROMOTIONS[int(rng.integers(len(PROMOTIONS)))], 2)
                rows.append((customer, bought, session, "purchase", when, quantity, paid, store))
            if rng.random() < 0.3:  # an impulse purchase of a popular item
                live = item_weight * (launch_day <= day)
                item = int(rng.choice(len(warm), p=live / live.sum()))
                rows.append((customer, item, session, "purchase", when, 1.0, float(price[item]), store))
            if rng.random() < 0.25:  # a browsing session online that evening: views and a cart within one type
                members = by_type[types[int(rng.choice(len(types), p=type_weight))]]
                members = members[launch_day[members] <= day]
                seen = rng.choice(members, size=min(3, len(members)), replace=False)
                online = f"{customer}-w{basket}"
                for k, item in enumerate(seen):
                    rows.append((customer, int(item), online, "view", when + 180 + 2 * k, 1.0, float(price[item]),
                                 None))
                if rng.random() < 0.5:
                    rows.append((customer, int(seen[0]), online, "cart", when + 190, 1.0, float(price[seen[0]]),
                                 None))
            if rng.random() < 0.04:  # a picker's substitution the shopper accepted
                item = switch_target(int(usual_arr[0]), likes_private, day)
                rows.append((customer, item, session, "substitution_accepted", when, 1.0, float(price[item]), store))
            day += period + int(rng.integers(-2, 3))

    frame = pd.DataFrame(rows, columns=["customer_id", "item", "session_id", "event_type", "minute", "quantity",
                                        "price", "store_id"])
    frame.insert(1, "item_id", warm["item_id"].to_numpy()[frame.pop("item").to_numpy()])
    frame.insert(4, "timestamp", START + pd.to_timedelta(frame.pop("minute"), unit="min"))
    frame["store_id"] = frame["store_id"].astype("string")
    return frame.sort_values(["timestamp", "customer_id", "item_id"], kind="stable").reset_index(drop=True)


def synthetic_retailer(seed: int = 0) -> Dataset:
    """The synthetic retailer as a :class:`recsys.Dataset` (the events and catalog a loader would return)."""
    rng = np.random.default_rng(seed)
    catalog = _catalog(rng)
    events = _events(catalog, rng)
    report = ValidationReport(source=SOURCE, rows_read=len(events))
    return Dataset(events=events, catalog=catalog.drop(columns="cold"), reports=[report])


def write_files(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """The retailer as files a data scientist would have: ``events.csv`` (REES46-like column names),
    ``products.csv`` (the ``--catalog`` layout) and ``mapping.toml`` for the columns the defaults do not cover."""
    directory.mkdir(parents=True, exist_ok=True)
    events = dataset.events.rename(columns={"customer_id": "user_id", "item_id": "product_id",
                                            "session_id": "user_session", "timestamp": "event_time"})
    events["event_time"] = events["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    paths = {"events": directory / "events.csv", "catalog": directory / "products.csv",
             "mapping": directory / "mapping.toml"}
    events.to_csv(paths["events"], index=False)
    # the attributes as a retailer's columns: a true/false flag and a tag list with its own separator
    catalog = dataset.catalog.rename(columns={"list_price": "price"})
    catalog = catalog.assign(is_organic=catalog.pop("attribute.organic").eq("yes"),
                             diet_tags=catalog.pop("attribute.diet").str.replace("|", "; ", regex=False))
    catalog.to_csv(paths["catalog"], index=False)
    paths["mapping"].write_text('[events]\nstore_id = "store_id"\nquantity = "quantity"\n'
                                '[catalog.attributes]\norganic = "is_organic"\n'
                                'diet = { column = "diet_tags", separator = ";" }\n')
    return paths
