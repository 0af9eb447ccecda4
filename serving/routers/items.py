"""Finding items in the catalog, by id or by part of their product type, category or brand (the review page's
search box)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from recsys import ItemMatches
from recsys.query.search import MAX_QUERY_LENGTH, MAX_SEARCH_LIMIT
from serving.deps import EngineDep
from serving.responses import json_response
from serving.schemas import ErrorOut

router = APIRouter(prefix="/v1", tags=["items"])


@router.get("/items", response_model=ItemMatches,
            responses={400: {"model": ErrorOut, "description": "a query of white space only"},
                       503: {"model": ErrorOut, "description": "no model loaded"}})
def search_items(
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=r"\S",
                            description="an item id, or part of a product type, category or brand (any case)")],
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_LIMIT)] = 20,
) -> Response:
    """One page of catalog items: the item whose id is ``q`` first, then those whose product type, category or
    brand contains ``q``, most popular first."""
    # a plain def: the search (under a millisecond to a few, and building the index on the first) runs in the
    # thread pool, not on the event loop
    try:
        matches = engine.search_items(q, offset=offset, limit=limit)
    except ValueError as exc:  # white space the pattern does not know as such (Python strips it)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return json_response(matches)
