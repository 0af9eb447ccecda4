"""Finding items in the catalog by id, or by part of their product type, category or brand, for people who look
at answers (the review page) rather than for the query path."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Final, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.domain.types import ItemInfo, ItemMatches

#: the most items one page of a search holds
MAX_SEARCH_LIMIT: Final[int] = 100
#: the longest query accepted: longer text matches no product type, category or brand anyway
MAX_QUERY_LENGTH: Final[int] = 200
#: separates the searched fields in an item's text, so a query without it never matches across two fields
_FIELD_SEPARATOR: Final[str] = "\n"
#: how many items of a catalog-wide mask are read at a time to find one page's
_CHUNK: Final[int] = 1 << 16
#: the searched fields
_FIELDS: Final[tuple[str, ...]] = ("product_type", "category", "brand")

IntArray: TypeAlias = npt.NDArray[np.intp]
StrArray: TypeAlias = npt.NDArray[np.str_]
BoolArray: TypeAlias = npt.NDArray[np.bool_]


class CatalogSearch:
    """A case-insensitive substring search over each item's product type, category and brand, plus an exact id.

    Matches come in a fixed order, most popular first (customers with events, then the internal index), so
    paging through them with ``offset`` and ``limit`` is stable. A query never reads the whole catalog: it is
    matched against each field's distinct values (thousands of strings where the catalog has millions), and the
    items of the values it matches come from per-value lists kept in that popularity order. It answers exactly
    as :class:`CatalogScan` does."""

    def __init__(self, items: pd.DataFrame, index_of: dict[str, int], item: Callable[[int], ItemInfo]) -> None:
        """``items``: the model's item frame (internal index order); ``index_of``: item id -> internal index;
        ``item``: an item's catalog record, a fresh instance per call."""
        self._order = _popularity_order(items)
        self._rank_of = np.empty(len(items), dtype=np.intp)  # internal index -> position in popularity order
        self._rank_of[self._order] = np.arange(len(items))
        self._fields = tuple(_FieldIndex(items[name], self._order) for name in _FIELDS)
        self._every = np.arange(len(items), dtype=np.intp)  # what a query matching every item matches
        self._every.flags.writeable = False
        self._columns = tuple(items[name] for name in _FIELDS)
        self._index_of = index_of
        self._item = item

    def search(self, query: str, offset: int = 0, limit: int = 20) -> ItemMatches:
        """Items whose id is ``query`` (stripped), then items whose product type, category or brand contains it,
        ignoring case; ``limit`` of them from ``offset``. Raises ``ValueError`` for an empty or overlong query,
        a negative offset or a limit outside 1..:data:`MAX_SEARCH_LIMIT`."""
        text = _checked(query, offset, limit)
        needle = text.casefold()
        found = self._matches(needle) if _FIELD_SEPARATOR not in needle else self._ranks_across_fields(needle)
        exact = self._index_of.get(text)
        if exact is None:
            total, ranks = _page(found, None, offset, offset + limit)
            page = self._order[ranks].tolist()
        else:  # the item itself first, and not again among the matches
            start = max(offset - 1, 0)
            total, ranks = _page(found, int(self._rank_of[exact]), start, offset + limit - 1)
            total += 1
            page = self._order[ranks].tolist()
            if offset == 0:
                page = [exact, *page]
        return ItemMatches(query=text, total=total, offset=offset, limit=limit, items=tuple(map(self._item, page)))

    def _matches(self, needle: str) -> IntArray | BoolArray:
        """The items with a field containing ``needle`` (no separator): their popularity ranks, ascending, or
        for many items a fresh mask over the ranks (cheaper than listing most of the catalog)."""
        n = len(self._order)
        matched = [(field, values, field.size(values)) for field in self._fields
                   if len(values := field.values(needle))]
        matched.sort(key=lambda match: -match[2])
        sizes = [size for _, _, size in matched]
        if not matched:
            return np.empty(0, dtype=np.intp)
        if sizes[0] == n:  # every item (a letter or a word all values share): nothing to merge
            return self._every
        if sum(sizes) * 8 < n:  # a few: gathering and sorting them costs less than a mask over the catalog
            merged = np.concatenate([field.ranks(values) for field, values, _ in matched])
            merged.sort()
            if len(matched) == 1:  # one field gives each item one value
                return merged
            # an item may match in two fields (np.unique hashes first: several times slower than this)
            first = np.empty(len(merged), dtype=bool)
            first[:1] = True
            np.not_equal(merged[1:], merged[:-1], out=first[1:])
            unique: IntArray = merged[first]
            return unique
        mask = matched[0][0].mask(matched[0][1])
        for field, values, size in matched[1:]:
            if size * 4 < n:  # setting a few items' places costs less than reading every item's value
                mask[field.ranks(values)] = True
            else:
                mask |= field.mask(values)
        return mask

    def _ranks_across_fields(self, needle: str) -> IntArray:
        """As :meth:`_matches` for a needle holding the separator, which can match across fields: each piece
        between separators lies in one field, so the items matching every piece are checked one by one."""
        candidates: IntArray | None = None
        for piece in filter(None, needle.split(_FIELD_SEPARATOR)):
            found = self._matches(piece)
            ranks = np.flatnonzero(found) if found.dtype == np.bool_ else cast(IntArray, found)
            candidates = ranks if candidates is None else np.intersect1d(candidates, ranks, assume_unique=True)
        if candidates is None or not len(candidates):
            return np.empty(0, dtype=np.intp)
        rows = self._order[candidates]
        texts = zip(*(_texts(column.iloc[rows]).tolist() for column in self._columns), strict=True)
        keep = [needle in _FIELD_SEPARATOR.join(fields).casefold() for fields in texts]
        kept: IntArray = candidates[np.asarray(keep, dtype=bool)]
        return kept


class CatalogScan:
    """The same search as :class:`CatalogSearch` by a scan of every item's text on each query (milliseconds
    per query on 92,331 items, 50 to 150 at a million): the reference the index is tested and benchmarked against."""

    def __init__(self, items: pd.DataFrame, index_of: dict[str, int], item: Callable[[int], ItemInfo]) -> None:
        self._order: list[int] = _popularity_order(items).tolist()
        fields = zip(*(_texts(items[name]).tolist() for name in _FIELDS), strict=True)
        texts = [_FIELD_SEPARATOR.join(row).casefold() for row in fields]
        self._texts: list[str] = [texts[i] for i in self._order]  # in popularity order: matches come out sorted
        self._index_of = index_of
        self._item = item

    def search(self, query: str, offset: int = 0, limit: int = 20) -> ItemMatches:
        text = _checked(query, offset, limit)
        needle = text.casefold()
        exact = self._index_of.get(text)
        order = self._order
        matches = [order[position] for position, haystack in enumerate(self._texts) if needle in haystack]
        if exact is not None:
            matches = [exact, *(i for i in matches if i != exact)]
        page = matches[offset:offset + limit]
        return ItemMatches(query=text, total=len(matches), offset=offset, limit=limit,
                           items=tuple(map(self._item, page)))


class _FieldIndex:
    """One searched field: its distinct values, case-folded, and each value's items as popularity ranks."""

    def __init__(self, column: pd.Series, order: IntArray) -> None:
        raw_codes, raw_values = pd.factorize(_texts(column))
        # values equal once case-folded are one value: the search ignores case
        codes, values = pd.factorize(pd.Series([str(value).casefold() for value in raw_values], dtype=object))
        by_rank = codes[raw_codes][order]
        self._values: list[str] = [str(value) for value in values]
        # each value's items, ascending rank within a value: the ranks of value j are ranks[bounds[j]:bounds[j+1]]
        self._ranks: IntArray = np.argsort(by_rank, kind="stable")
        # each item's value, in rank order and the narrowest integer type: what a catalog-wide mask is read from
        self._by_rank = by_rank.astype(np.min_scalar_type(len(values)))
        self._bounds: IntArray = np.concatenate([[0], np.cumsum(np.bincount(by_rank, minlength=len(values)))])
        # the values in one text, so a needle is looked for by one C-level scan instead of a call per value
        self._text = _FIELD_SEPARATOR.join(self._values)
        self._starts: list[int] = np.concatenate(
            [[0], np.cumsum([len(value) + 1 for value in self._values])]).tolist()
        # NumPy's fixed-width strings drop trailing NULs: a field with one is searched in Python instead
        self._array: StrArray | None = None if any(value.endswith("\x00") for value in self._values) \
            else np.array(self._values, dtype=np.str_)

    def values(self, needle: str) -> IntArray:
        """The values containing ``needle`` (which holds no separator, so never spans two values)."""
        if self._text.count(needle) * 16 > len(self._values):  # many: one pass over all values
            if self._array is None:
                return np.asarray([j for j, value in enumerate(self._values) if needle in value], dtype=np.intp)
            return np.flatnonzero(np.strings.find(self._array, needle) >= 0)
        found: list[int] = []
        starts, text = self._starts, self._text
        at = text.find(needle)
        while at >= 0:
            value = bisect_right(starts, at) - 1
            found.append(value)
            at = text.find(needle, starts[value + 1])
        return np.asarray(found, dtype=np.intp)

    def size(self, values: IntArray) -> int:
        """How many items have one of ``values``."""
        return int((self._bounds[values + 1] - self._bounds[values]).sum())

    def ranks(self, values: IntArray) -> IntArray:
        """The ranks of the items that have one of ``values``, value by value (not sorted across values)."""
        return self._ranks[_concatenated_ranges(self._bounds[values], self._bounds[values + 1])]

    def mask(self, values: IntArray) -> BoolArray:
        """Whether each item, in rank order, has one of ``values``."""
        chosen = np.zeros(len(self._values), dtype=bool)
        chosen[values] = True
        mask: BoolArray = np.take(chosen, self._by_rank)  # take: indexing with a narrow type converts it first
        return mask


def _page(found: IntArray | BoolArray, skip: int | None, start: int, stop: int) -> tuple[int, IntArray]:
    """How many items ``found`` holds (ranks, ascending, or a fresh mask over the ranks), less the one of rank
    ``skip``, and the ranks at positions ``start`` to ``stop`` of those, in order."""
    if found.dtype != np.bool_:
        ranks = cast(IntArray, found)  # the dtype says which of the two it is; the type checker cannot see it
        at = int(np.searchsorted(ranks, skip)) if skip is not None else len(ranks)
        if at == len(ranks) or ranks[at] != skip:
            return len(ranks), ranks[start:stop]
        positions = np.arange(start, min(stop, len(ranks) - 1))
        positions[positions >= at] += 1  # past the skipped one
        return len(ranks) - 1, ranks[positions]
    mask = cast(BoolArray, found)
    if skip is not None:
        mask[skip] = False
    total = int(np.count_nonzero(mask))
    # only the page's items are listed: a chunk at a time, counting the chunks before it
    page: list[IntArray] = []
    seen = 0
    for lo in range(0, len(mask) if start < min(stop, total) else 0, _CHUNK):
        chunk = mask[lo:lo + _CHUNK]
        count = int(np.count_nonzero(chunk))
        if seen + count > start:
            page.append(np.flatnonzero(chunk)[max(start - seen, 0):stop - seen] + lo)
        seen += count
        if seen >= stop:
            break
    return total, np.concatenate(page) if page else np.empty(0, dtype=np.intp)


def _texts(column: pd.Series) -> pd.Series:
    """A field's values as text; a missing value is empty text (``astype(str)`` keeps it missing in pandas 3)."""
    return column.astype(object).where(column.notna(), "").astype(str)


def _popularity_order(items: pd.DataFrame) -> IntArray:
    """Internal indexes, most customers first, then by index."""
    popularity = items["n_customers"].to_numpy(np.int64)
    return np.lexsort((np.arange(len(items)), -popularity))


def _concatenated_ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """``np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])`` without a Python loop."""
    lengths = ends - starts
    before = np.cumsum(lengths) - lengths
    positions: IntArray = np.arange(int(lengths.sum())) + np.repeat(starts - before, lengths)
    return positions


def _checked(query: str, offset: int, limit: int) -> str:
    """The stripped query, after raising ``ValueError`` for bad input."""
    text = query.strip()
    if not text:
        raise ValueError("the query is empty: give an item id or part of a product type, category or brand")
    if len(text) > MAX_QUERY_LENGTH:
        raise ValueError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise ValueError(f"limit must be an integer between 1 and {MAX_SEARCH_LIMIT}, got {limit!r}")
    return text
