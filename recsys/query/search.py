"""Finding items in the catalog by id, or by part of their product type, category or brand, for people who look
at answers (the review page) rather than for the query path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd

from recsys.domain.types import ItemInfo, ItemMatches

#: the most items one page of a search holds
MAX_SEARCH_LIMIT: Final[int] = 100
#: the longest query accepted: longer text matches no product type, category or brand anyway
MAX_QUERY_LENGTH: Final[int] = 200
#: separates the searched fields in an item's text, so a query never matches across two fields
_FIELD_SEPARATOR: Final[str] = "\n"


class CatalogSearch:
    """A case-insensitive substring search over each item's product type, category and brand, plus an exact id.

    Matches come in a fixed order, most popular first (customers with events, then the internal index), so
    paging through them with ``offset`` and ``limit`` is stable. A scan of the whole catalog (92,331 items)
    takes a few milliseconds, which is enough for a person typing; it is not on the substitute query path."""

    def __init__(self, items: pd.DataFrame, index_of: dict[str, int], item: Callable[[int], ItemInfo]) -> None:
        """``items``: the model's item frame (internal index order); ``index_of``: item id -> internal index;
        ``item``: an item's catalog record, a fresh instance per call."""
        popularity = items["n_customers"].to_numpy(np.int64)
        self._order: list[int] = np.lexsort((np.arange(len(items)), -popularity)).tolist()
        fields = zip(items["product_type"].astype(str).tolist(), items["category"].astype(str).tolist(),
                     items["brand"].astype(str).tolist(), strict=True)
        texts = [_FIELD_SEPARATOR.join(row).casefold() for row in fields]
        self._texts: list[str] = [texts[i] for i in self._order]  # in popularity order: matches come out sorted
        self._index_of = index_of
        self._item = item

    def search(self, query: str, offset: int = 0, limit: int = 20) -> ItemMatches:
        """Items whose id is ``query`` (stripped), then items whose product type, category or brand contains it,
        ignoring case; ``limit`` of them from ``offset``. Raises ``ValueError`` for an empty or overlong query,
        a negative offset or a limit outside 1..:data:`MAX_SEARCH_LIMIT`."""
        text = query.strip()
        if not text:
            raise ValueError("the query is empty: give an item id or part of a product type, category or brand")
        if len(text) > MAX_QUERY_LENGTH:
            raise ValueError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise ValueError(f"limit must be an integer between 1 and {MAX_SEARCH_LIMIT}, got {limit!r}")
        needle = text.casefold()
        exact = self._index_of.get(text)
        order = self._order
        matches = [order[position] for position, haystack in enumerate(self._texts) if needle in haystack]
        if exact is not None:
            matches = [exact, *(i for i in matches if i != exact)]
        page = matches[offset:offset + limit]
        return ItemMatches(query=text, total=len(matches), offset=offset, limit=limit,
                           items=tuple(map(self._item, page)))
