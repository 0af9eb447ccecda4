"""Substitute queries: POST with the full request, GET for the simple case."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from recsys import SubstituteEngine, SubstituteList, UnknownItemError
from recsys.engine import MAX_K
from serving.deps import EngineDep
from serving.schemas import (
    ErrorOut,
    OrderSubstituteRequest,
    OrderSubstitutesResponse,
    SubstituteRequest,
    SubstitutesResponse,
)

router = APIRouter(prefix="/v1", tags=["substitutes"])
_ERRORS: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "unknown item"},
                                               503: {"model": ErrorOut, "description": "no model loaded"}}


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")  # 2.7x pydantic-core's to_json here


def _body(answer: SubstituteList) -> dict[str, object]:
    """The JSON of :class:`SubstitutesResponse`, written directly from the engine's dataclasses: the hot path
    skips re-validating what the engine built (the schema conformance is fuzz-tested)."""
    return {
        "item": answer.item._asdict(),
        "substitutes": [s._asdict() for s in answer.substitutes],
        "personalized": answer.personalized, "widened": answer.widened, "store_id": answer.store_id,
        "restock_eta": answer.restock_eta.isoformat() if answer.restock_eta else None,
        "available_at": list(answer.available_at),
        "variants": [{"item_id": v.item_id, "package_size": v.package_size, "size": v.size, "price": v.price,
                      "in_stock": v.in_stock, "restock_eta": v.restock_eta.isoformat() if v.restock_eta else None,
                      "available_at": list(v.available_at)} for v in answer.variants],
        "metadata_based": answer.metadata_based, "model_version": answer.model_version,
    }


def answer_json(engine: SubstituteEngine, request: SubstituteRequest) -> tuple[bytes, str]:
    """The JSON of the answer to ``request`` and a ``Server-Timing`` entry with the engine's time, so clients
    (and ``recsys bench``) can tell it from the HTTP layer's (raises :class:`UnknownItemError`); also
    serving.fastpath's."""
    start = time.perf_counter()
    answer = engine.substitutes(request.item_id, customer_id=request.customer_id, store_id=request.store_id,
                                k=request.k, exclude=request.exclude, filters=request.filters)
    timing = f"engine;dur={(time.perf_counter() - start) * 1e3:.3f}"
    return orjson.dumps(_body(answer)), timing


def _query(engine: SubstituteEngine, request: SubstituteRequest) -> Response:
    try:
        body, timing = answer_json(engine, request)
    except UnknownItemError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return Response(body, media_type="application/json", headers={"server-timing": timing})


@router.post("/substitutes", response_model=SubstitutesResponse, responses=_ERRORS)
async def post_substitutes(request: SubstituteRequest, engine: EngineDep) -> Response:
    """Ranked substitutes for an unavailable item, for a customer at a store, with reasons."""
    return _query(engine, request)


@router.post("/substitutes/batch", response_model=OrderSubstitutesResponse, responses={503: _ERRORS[503]})
def post_order_substitutes(request: OrderSubstituteRequest, engine: EngineDep) -> Response:
    """Substitutes for many unavailable lines of one order (one customer, one store) in one call: never an
    item of the order, never the same substitute for two lines. Unknown lines are listed, not fatal."""
    # a plain def: up to 200 lines of work run in the thread pool, not on the event loop
    answer = engine.order_substitutes(request.items, customer_id=request.customer_id, store_id=request.store_id,
                                      k=request.k, order=request.order, filters=request.filters)
    return _json({"lines": [_body(line) for line in answer.lines], "unknown_items": list(answer.unknown_items),
                  "personalized": answer.personalized, "model_version": answer.model_version})


@router.get("/items/{item_id}/substitutes", response_model=SubstitutesResponse, responses=_ERRORS)
async def get_substitutes(
    engine: EngineDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    customer_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    store_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    exclude: Annotated[list[str] | None, Query(max_length=1000)] = None,
) -> Response:
    """The same query as POST /v1/substitutes, without filters (cache-friendly)."""
    request = SubstituteRequest(item_id=item_id, customer_id=customer_id, store_id=store_id, k=k,
                                exclude=exclude or [])
    return _query(engine, request)
