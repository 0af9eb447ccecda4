"""Catalog attributes (``[catalog.attributes]`` of a mapping file): their values read from a product table, and
how often shoppers' switches kept each of them (the training report's attribute table).

Values are canonical text: stripped and lower-cased; true/false, 1/0, y/n and t/f read as yes/no; an attribute
with a ``separator`` holds several values, kept sorted and joined by
:data:`recsys.domain.schema.ATTRIBUTE_VALUE_SEPARATOR`; an attribute with ``match`` is yes where its column's
text matches the regular expression, else no.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recsys.domain.schema import ATTRIBUTE_PREFIX, ATTRIBUTE_VALUE_SEPARATOR, DataValidationError, attribute_columns
from training.mapping import AttributeColumn

#: the most distinct values one attribute may have (an attribute with more is an id or free text)
MAX_ATTRIBUTE_VALUES = 4096
_YES_NO = {"true": "yes", "1": "yes", "1.0": "yes", "y": "yes", "t": "yes",
           "false": "no", "0": "no", "0.0": "no", "n": "no", "f": "no"}


def derive_attributes(raw: pd.DataFrame, attributes: Mapping[str, AttributeColumn], label: str
                      ) -> dict[str, pd.Series]:
    """Each attribute's canonical values per row of ``raw`` (NA where the row has none), as the catalog column
    ``attribute.<name>``. ``label`` names the source in errors."""
    derived: dict[str, pd.Series] = {}
    for name, spec in attributes.items():
        if spec.column not in raw.columns:
            raise DataValidationError(f"{label}: attribute {name!r} reads column {spec.column!r}, which is missing")
        text = raw[spec.column].astype("string").str.strip()
        if spec.match is not None:
            values = text.str.contains(spec.match, case=False, regex=True).map({True: "yes", False: "no"})
        elif spec.separator is not None:
            values = text.str.lower().map(lambda cell: _several(cell, spec.separator), na_action="ignore")
        else:
            lowered = text.str.lower().str.replace(ATTRIBUTE_VALUE_SEPARATOR, "/", regex=False)
            values = lowered.replace(_YES_NO)
        values = values.astype("string")
        values = values.where(values.str.len() > 0)
        distinct = values.dropna().str.split(ATTRIBUTE_VALUE_SEPARATOR, regex=False).explode().nunique()
        if distinct > MAX_ATTRIBUTE_VALUES:
            raise DataValidationError(f"{label}: attribute {name!r} (column {spec.column!r}) has {distinct:,} "
                                      f"distinct values, more than {MAX_ATTRIBUTE_VALUES:,}: is it an id or free text?")
        derived[ATTRIBUTE_PREFIX + name] = values
    return derived


def _several(cell: str, separator: str) -> str | None:
    parts = {part.strip().replace(ATTRIBUTE_VALUE_SEPARATOR, "/") for part in cell.split(separator)}
    parts.discard("")
    return ATTRIBUTE_VALUE_SEPARATOR.join(sorted(parts)) if parts else None


def value_sets(values: pd.Series) -> list[frozenset[str]]:
    """Each item's set of values of one attribute column (empty where it has none)."""
    return [frozenset(v.split(ATTRIBUTE_VALUE_SEPARATOR)) if isinstance(v, str) else frozenset()
            for v in values.astype(object).where(values.notna(), None).tolist()]


def kept(x_values: frozenset[str], y_values: frozenset[str]) -> bool:
    """Whether a substitute with ``y_values`` keeps an item's ``x_values``: it has each of them."""
    return x_values <= y_values


def attribute_keeping(items: pd.DataFrame, switches: pd.DataFrame, max_categories: int = 3) -> pd.DataFrame:
    """How often shoppers' switches kept each attribute, against chance.

    ``items``: the model's items (group order, with ``attribute.*`` columns); ``switches``: item index pairs
    (``x``, ``y``) of real switches (a shopper's usual X missing from a basket that held Y of X's group). Per
    attribute, over the switches whose X has a value: ``kept`` is the share where Y has each of X's values,
    ``by_chance`` the share expected if Y were any other item of X's group (each equally likely), and ``lift``
    their ratio; ``categories`` names the categories where the switches kept it most above chance (at least 20
    switches; none where no category keeps it above chance). One row per attribute."""
    columns = attribute_columns(items)
    rows = []
    group = _groups(items)
    for column in columns:
        sets = value_sets(items[column])
        has_value = np.fromiter((bool(s) for s in sets), dtype=bool, count=len(sets))
        pairs = switches[has_value[switches["x"].to_numpy()]]
        if pairs.empty:
            rows.append({"attribute": column.removeprefix(ATTRIBUTE_PREFIX), "switches": 0, "kept": np.nan,
                         "by_chance": np.nan, "lift": np.nan, "categories": ""})
            continue
        xs, ys = pairs["x"].to_numpy(), pairs["y"].to_numpy()
        kept_flags = np.fromiter((kept(sets[x], sets[y]) for x, y in zip(xs.tolist(), ys.tolist(), strict=True)),
                                 dtype=bool, count=len(xs))
        chance = _chance(sets, group, xs)
        frame = pd.DataFrame({"category": items["category"].to_numpy()[xs], "kept": kept_flags, "chance": chance})
        per_category = frame.groupby("category").agg(n=("kept", "size"), kept=("kept", "mean"),
                                                     chance=("chance", "mean"))
        per_category = per_category[per_category["n"] >= 20]
        above = (per_category["kept"] - per_category["chance"]).sort_values(ascending=False)
        above = above[above > 0].head(max_categories)
        rows.append({
            "attribute": column.removeprefix(ATTRIBUTE_PREFIX), "switches": len(xs),
            "kept": float(kept_flags.mean()), "by_chance": float(chance.mean()),
            "lift": float(kept_flags.mean() / chance.mean()) if chance.mean() > 0 else np.nan,
            "categories": ", ".join(f"{name} ({per_category.loc[name, 'kept']:.0%} vs "
                                    f"{per_category.loc[name, 'chance']:.0%})" for name in above.index),
        })
    return pd.DataFrame(rows, columns=["attribute", "switches", "kept", "by_chance", "lift", "categories"])


def _groups(items: pd.DataFrame) -> np.ndarray:
    return pd.MultiIndex.from_frame(items[["department", "category", "product_type"]].astype(str)).factorize()[0]


def _chance(sets: list[frozenset[str]], group: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Per switch, the share of the other items of X's group that keep X's values (it depends only on the group
    and X's values: computed once per such pair)."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist()):
        members.setdefault(g, []).append(i)
    cache: dict[tuple[int, frozenset[str]], float] = {}
    chance = np.empty(len(xs), dtype=np.float64)
    for n, x in enumerate(xs.tolist()):
        key = (int(group[x]), sets[x])
        share = cache.get(key)
        if share is None:
            others = members[key[0]]
            keeping = sum(kept(sets[x], sets[i]) for i in others) - 1  # X keeps its own values: not another item
            share = keeping / (len(others) - 1) if len(others) > 1 else 0.0
            cache[key] = share
        chance[n] = share
    return chance
