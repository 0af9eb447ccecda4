"""Substitute queries: POST with the full request, GET for the simple case."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from recsys import (
    OrderSubstitutes,
    SubstituteEngine,
    SubstituteList,
    UnknownAttributeError,
    UnknownItemError,
    UnknownStoreError,
)
from recsys.domain.types import MAX_K, Intent
from recsys.state.answers import AnswerSigner, new_order_id
from recsys.state.inventory import ONLINE
from serving.deps import Answering, AnsweringDep, SettingsDep
from serving.experiments import Experiments, Placement
from serving.limits import batch_cost_error
from serving.responses import json_bytes, json_response
from serving.schemas import ErrorOut, OrderSubstituteRequest, SubstituteRequest

router = APIRouter(prefix="/v1", tags=["substitutes"])
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "filters.keep or filters.prefer names an attribute the catalog lacks"},
    404: {"model": ErrorOut, "description": "unknown item or store"},
    503: {"model": ErrorOut, "description": "no model loaded"}}


def answer_json(engine: SubstituteEngine, signer: AnswerSigner, request: SubstituteRequest,
                experiments: Experiments | None = None) -> tuple[bytes, str]:
    """The JSON of the signed answer to ``request`` and a ``Server-Timing`` entry with the engine's time, so
    clients (and ``recsys bench``) can tell it from the HTTP layer's (raises :class:`UnknownItemError`). In an
    online experiment, the arm's engine and intent answer, and the answer says which."""
    placement = place(experiments, engine, request)
    intent = request.intent
    if placement is not None:
        engine, intent = placement.engine, placement.intent
    start = time.perf_counter()
    answer = engine.substitutes(request.item_id, customer_id=request.customer_id, store_id=request.store_id,
                                k=request.k, exclude=request.exclude, filters=request.filters, intent=intent)
    timing = f"engine;dur={(time.perf_counter() - start) * 1e3:.3f}"
    body = json_bytes(signed(signer, answer, request.customer_id, placement))
    if placement is not None and placement.arm is not None and experiments is not None:
        experiments.count(str(placement.experiment), placement.arm)
    return body, timing


def place(experiments: Experiments | None, engine: SubstituteEngine,
          request: SubstituteRequest | OrderSubstituteRequest) -> Placement | None:
    """The experiment arm that answers ``request``; None outside any (all a request pays without experiments is
    the check of ``active``)."""
    if experiments is None or not experiments.active:
        return None
    return experiments.place(engine, request.customer_id, request.session_id, request.store_id, request.intent,
                             ONLINE, time.time())


def signed(signer: AnswerSigner, answer: SubstituteList, customer_id: str | None,
           placement: Placement | None = None, order_id: str | None = None) -> SubstituteList:
    """``answer`` with its ``answer_id``: what feedback on it must bring back; in an experiment's arm, labelled with
    both, which the answer id signs too, with ``order_id`` for a line of a whole order."""
    experiment = arm = None
    if placement is not None and placement.arm is not None:
        experiment, arm = placement.experiment, placement.arm
    answer_id = signer.sign(answer.model_version, answer.item.item_id, customer_id, answer.store_id,
                            [s.item_id for s in answer.substitutes], time.time(), experiment, arm, order_id)
    if experiment is None:
        return dataclasses.replace(answer, answer_id=answer_id)
    return dataclasses.replace(answer, answer_id=answer_id, experiment=experiment, arm=arm)


def _query(answering: Answering, request: SubstituteRequest) -> Response:
    try:
        body, timing = answer_json(answering.engine, answering.signer, request, answering.experiments)
    except (UnknownItemError, UnknownStoreError) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except UnknownAttributeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return Response(body, media_type="application/json", headers={"server-timing": timing})


@router.post("/substitutes", response_model=SubstituteList, responses=_ERRORS)
async def post_substitutes(request: SubstituteRequest, answering: AnsweringDep) -> Response:
    """Ranked substitutes for an unavailable item, for a customer at a store, with reasons."""
    return _query(answering, request)


@router.post("/substitutes/batch", response_model=OrderSubstitutes, responses={
    413: {"model": ErrorOut, "description": "body over RECSYS_MAX_BODY_BYTES, or lines x k over RECSYS_MAX_BATCH_COST"},
    404: {"model": ErrorOut, "description": "unknown store"}, 400: _ERRORS[400], 503: _ERRORS[503]})
def post_order_substitutes(request: OrderSubstituteRequest, answering: AnsweringDep, settings: SettingsDep
                           ) -> Response:
    """Substitutes for many unavailable lines of one order (one customer, one store) in one call: never an
    item of the order, never the same substitute for two lines. Unknown lines are listed, not fatal. Each line
    is an answer of its own, with its own ``answer_id``; in an online experiment, the ids of one call also sign one
    order id, so the experiment can measure whole orders."""
    # a plain def: up to 200 lines of work run in the thread pool, not on the event loop
    too_costly = batch_cost_error(len(request.items), request.k, settings.max_batch_cost)
    if too_costly is not None:
        raise too_costly
    engine, signer = answering.engine, answering.signer
    placement = place(answering.experiments, engine, request)  # the whole order in one arm: one shopper
    intent = request.intent
    if placement is not None:
        engine, intent = placement.engine, placement.intent
    try:
        answer = engine.order_substitutes(request.items, customer_id=request.customer_id, store_id=request.store_id,
                                          k=request.k, order=request.order, filters=request.filters,
                                          intent=intent)
    except UnknownStoreError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except UnknownAttributeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    counted = placement if placement is not None and placement.arm is not None and answer.lines else None
    # one order: every line signs the same order id, so feedback on any line counts toward it (experiments only)
    order_id = new_order_id() if counted is not None else None
    lines = tuple(signed(signer, line, request.customer_id, placement, order_id) for line in answer.lines)
    if counted is not None:
        answering.experiments.count(str(counted.experiment), str(counted.arm), len(lines), orders=1)
    return json_response(dataclasses.replace(answer, lines=lines))


@router.get("/items/{item_id}/substitutes", response_model=SubstituteList, responses=_ERRORS)
async def get_substitutes(
    answering: AnsweringDep,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    customer_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    store_id: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    exclude: Annotated[list[str] | None, Query(max_length=1000)] = None,
    intent: Annotated[Intent, Query()] = Intent.balanced,
) -> Response:
    """The same query as POST /v1/substitutes, without filters."""
    request = SubstituteRequest(item_id=item_id, customer_id=customer_id, session_id=session_id, store_id=store_id,
                                k=k, exclude=exclude or [], intent=intent)
    return _query(answering, request)
