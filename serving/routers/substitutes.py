"""Substitute queries: POST with the full request, GET for the simple case."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from recsys import OrderSubstitutes, SubstituteEngine, SubstituteList, UnknownItemError
from recsys.domain.types import MAX_K, Intent
from serving.deps import EngineDep
from serving.responses import json_bytes, json_response
from serving.schemas import ErrorOut, OrderSubstituteRequest, SubstituteRequest

router = APIRouter(prefix="/v1", tags=["substitutes"])
_ERRORS: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "unknown item"},
                                               503: {"model": ErrorOut, "description": "no model loaded"}}


def answer_json(engine: SubstituteEngine, request: SubstituteRequest) -> tuple[bytes, str]:
    """The JSON of the answer to ``request`` and a ``Server-Timing`` entry with the engine's time, so clients
    (and ``recsys bench``) can tell it from the HTTP layer's (raises :class:`UnknownItemError`)."""
    start = time.perf_counter()
    answer = engine.substitutes(request.item_id, customer_id=request.customer_id, store_id=request.store_id,
                                k=request.k, exclude=request.exclude, filters=request.filters, intent=request.intent)
    timing = f"engine;dur={(time.perf_counter() - start) * 1e3:.3f}"
    return json_bytes(answer), timing


def _query(engine: SubstituteEngine, request: SubstituteRequest) -> Response:
    try:
        body, timing = answer_json(engine, request)
    except UnknownItemError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(body, media_type="application/json", headers={"server-timing": timing})


@router.post("/substitutes", response_model=SubstituteList, responses=_ERRORS)
async def post_substitutes(request: SubstituteRequest, engine: EngineDep) -> Response:
    """Ranked substitutes for an unavailable item, for a customer at a store, with reasons."""
    return _query(engine, request)


@router.post("/substitutes/batch", response_model=OrderSubstitutes, responses={503: _ERRORS[503]})
def post_order_substitutes(request: OrderSubstituteRequest, engine: EngineDep) -> Response:
    """Substitutes for many unavailable lines of one order (one customer, one store) in one call: never an
    item of the order, never the same substitute for two lines. Unknown lines are listed, not fatal."""
    # a plain def: up to 200 lines of work run in the thread pool, not on the event loop
    answer = engine.order_substitutes(request.items, customer_id=request.customer_id, store_id=request.store_id,
                                      k=request.k, order=request.order, filters=request.filters, intent=request.intent)
    return json_response(answer)


@router.get("/items/{item_id}/substitutes", response_model=SubstituteList, responses=_ERRORS)
async def get_substitutes(
    engine: EngineDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    customer_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    store_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    exclude: Annotated[list[str] | None, Query(max_length=1000)] = None,
    intent: Annotated[Intent, Query()] = Intent.balanced,
) -> Response:
    """The same query as POST /v1/substitutes, without filters (cache-friendly)."""
    request = SubstituteRequest(item_id=item_id, customer_id=customer_id, store_id=store_id, k=k,
                                exclude=exclude or [], intent=intent)
    return _query(engine, request)
