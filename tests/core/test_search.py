"""The catalog search's index answers exactly as the plain scan of every item's text does: the same total, the
same items in the same order on every page, for many queries, on the synthetic model and on small catalogs built
to hit the corners (values equal once case-folded, a field holding the separator, NULs, queries across fields)."""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from recsys import SubstituteEngine
from recsys.query.search import MAX_SEARCH_LIMIT, CatalogScan, CatalogSearch

PAGES = ((0, 1), (0, 20), (0, MAX_SEARCH_LIMIT), (1, 3), (7, 10), (19, 20), (95, MAX_SEARCH_LIMIT))


def _identity(x: int) -> int:  # the item record is the internal index: comparing pages compares positions
    return x


def _pair(items: pd.DataFrame) -> tuple[CatalogSearch, CatalogScan]:
    index_of = {str(item_id): i for i, item_id in enumerate(items["item_id"])}
    return CatalogSearch(items, index_of, _identity), CatalogScan(items, index_of, _identity)  # type: ignore[arg-type]


def _assert_same(index: CatalogSearch, scan: CatalogScan, query: str) -> None:
    expected = scan.search(query, 0, 1)
    pages = [*PAGES, (max(expected.total - 2, 0), 5), (expected.total, 5), (expected.total + 10, 5)]
    for offset, limit in pages:
        assert index.search(query, offset, limit) == scan.search(query, offset, limit), (query, offset, limit)


def _substrings(text: str, max_length: int) -> Iterator[str]:
    for length in range(1, max_length + 1):
        for start in range(len(text) - length + 1):
            yield text[start:start + length]


def test_the_index_answers_as_the_scan_on_the_synthetic_model(engine: SubstituteEngine) -> None:
    items = engine.model.items
    index = engine.catalog_search
    scan = CatalogScan(items, engine.item_table.index_of, engine.presenter.item)
    rng = np.random.default_rng(0)
    queries = {"a", "e", "1", " ", "zzz no such thing", "MILK", "Cheese", "brand", "private"}
    for column in ("product_type", "category", "brand"):
        values = items[column].astype(str).unique()
        for value in rng.choice(values, size=min(15, len(values)), replace=False):
            queries |= {value, value.upper(), value[1:4], value[-3:].swapcase(), value[: len(value) // 2]}
    ids = items["item_id"].astype(str).to_numpy()
    queries |= set(rng.choice(ids, size=10, replace=False))  # exact ids, which also match as text sometimes
    top = items.sort_values("n_customers", ascending=False).iloc[0]
    queries |= {f"{top['product_type']}\n{top['category']}"[-12:], f"{top['category']}\n{top['brand'][:3]}"}
    for query in sorted(queries):
        if query.strip():
            _assert_same(index, scan, query)


def _corner_catalog() -> pd.DataFrame:
    rows = [
        ("1", "Whole Milk", "Dairy", "Farm", 5), ("2", "whole MILK", "dairy", "FARM", 5),
        ("3", "Straße Snack", "Σnacks ΣΑΣ", "Brand\nTwo", 3), ("4", "Milk\nPowder", "Dairy", "Acme", 9),
        ("5", "milk", "Bakery", "2", 0), ("6", "Bread", "Bakery", "Acme\x00", 9), ("7", "", "", "", 1),
        ("8", "1", "Milk", "milk", 2), ("9", None, "Dairy", float("nan"), 9), ("10", "Cheese", "Dairy", "Farm", 0),
        ("milk", "Milk", "Dairy", "Farm", 1), ("acme", "Soap", "Household", "Clean", 3),  # ids that are text too
    ]
    # items none of the queries below match, so those match a few items of many: the index's sparse path
    rows += [(f"f{i}", f"Filler {i}", "Other", f"Maker {i % 7}", i % 4) for i in range(60)]
    frame = pd.DataFrame(rows, columns=["item_id", "product_type", "category", "brand", "n_customers"])
    return frame


@pytest.mark.parametrize("query", [
    "milk", "MILK", "k", "m", "dairy", "farm", "ss", "STRASSE", "straße", "σ", "ς", "ΣΑΣ", "nan", "none", "1", "2",
    "10", "acme", "\x00", "acme\x00", "milk\ndairy", "k\nd", "milk\npowder", "powder\ndairy\nacme", "y\nfarm",
    "milk\npowder\ndairy", "dairy\nfarm\nx", "brand\ntwo", "acks σας\nbrand", "e\n\nb", "a\nb\nc\nd", "zz",
    "f3", "f59", "soap", "e", "r", "filler", "maker 3", "other",
])
def test_the_index_answers_as_the_scan_on_corner_cases(query: str) -> None:
    _assert_same(*_pair(_corner_catalog()), query)


@pytest.mark.parametrize("seed", range(8))
def test_the_index_answers_as_the_scan_on_random_catalogs(seed: int) -> None:
    """Short values from a small alphabet (a separator in some), so queries match a few items, most of them or
    all, and across fields; the even seeds draw from more letters, so fewer match: every path of the index."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    alphabet = list("abcAB\n ß" + ("defghijklmn" if seed % 2 == 0 else ""))

    def values(distinct: int) -> list[str]:
        pool = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 5)))) for _ in range(distinct)]
        return [pool[i] for i in rng.integers(0, distinct, n)]

    items = pd.DataFrame({
        # some ids are also text the fields contain: the item first, and not again among the matches
        "item_id": [f"i{i}" if i % 7 > 1 else ("a" if i % 7 else "b") * (i // 7 + 1) for i in range(n)],
        "product_type": values(int(rng.integers(2, 80))), "category": values(int(rng.integers(1, 12))),
        "brand": values(int(rng.integers(2, 60))), "n_customers": rng.integers(0, 5, n),
    })
    index, scan = _pair(items)
    queries = {"".join(rng.choice(alphabet, size=int(rng.integers(1, 6)))) for _ in range(150)}
    queries |= {"a", "aa", "aaa", "b", "bb", "bbb", "i1", "i3", "A", "SS"}
    for query in sorted(queries):
        if query.strip():
            _assert_same(index, scan, query)
