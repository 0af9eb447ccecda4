"""Substitute queries: POST with the full request, GET for the simple case."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

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
from serving.deps import Answering, AnsweringDep, SettingsDep, answering_from
from serving.experiments import Experiments, Placement
from serving.limits import batch_cost_error
from serving.responses import TOO_DEEP, json_bytes, json_response
from serving.schemas import ErrorOut, OrderSubstituteRequest, SubstituteRequest

router = APIRouter(prefix="/v1", tags=["substitutes"])
M = TypeVar("M", bound=BaseModel)
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
    """``answer``, given its ``answer_id`` in place (the engine made it for this request alone): what feedback on
    it must bring back; in an experiment's arm, labelled with both, which the answer id signs too, with
    ``order_id`` for a line of a whole order."""
    if placement is not None and placement.arm is not None:
        answer.experiment, answer.arm = placement.experiment, placement.arm
    answer.answer_id = signer.sign(answer.model_version, answer.item.item_id, customer_id, answer.store_id,
                                   [s.item_id for s in answer.substitutes], time.time(), answer.experiment,
                                   answer.arm, order_id)
    return answer


def _answer(answering: Answering, request: SubstituteRequest) -> tuple[bytes, str]:
    """:func:`answer_json`, its errors as HTTP errors (404: unknown item or store; 400: unknown attribute)."""
    try:
        return answer_json(answering.engine, answering.signer, request, answering.experiments)
    except (UnknownItemError, UnknownStoreError) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except UnknownAttributeError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def _query(answering: Answering, request: SubstituteRequest) -> Response:
    body, timing = _answer(answering, request)
    return Response(body, media_type="application/json", headers={"server-timing": timing})


@router.post("/substitutes", response_model=SubstituteList, responses=_ERRORS)
async def post_substitutes(request: SubstituteRequest, answering: AnsweringDep) -> Response:
    """Ranked substitutes for an unavailable item, for a customer at a store, with reasons."""
    # served by QueryFastPath (below), which answers exactly as this would; FastAPI documents the route from here
    return _query(answering, request)


def parse_json_body(content_type: bytes | None, body: bytes, model: type[M]) -> M:
    """``body`` as ``model`` by FastAPI's rules: JSON only under a JSON media type (``application/json`` or
    ``application/*+json``), an empty body "Field required", every problem a 422 located under ``body``; a body
    nested deeper than the JSON parser goes is a 400 that says so. One pass of pydantic-core's own JSON parser
    (no ``json.loads`` first, then validation of the Python objects, as FastAPI does)."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    media = (content_type or b"").partition(b";")[0].strip().lower()
    try:
        if media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json")):
            return model.model_validate_json(body)
        return model.model_validate(body, from_attributes=True)  # as FastAPI does: bytes, which no model accepts
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unparsed = next((error for error in errors if error["type"] == "json_invalid"), None)
        if unparsed is not None:
            if "recursion limit" in unparsed["msg"]:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, TOO_DEEP) from None
            context = unparsed.get("ctx", {})
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", *_position(body, context)),
                                           "msg": "JSON decode error", "input": {}, "ctx": context}]) from None
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None


def _position(body: bytes, context: Mapping[str, object]) -> tuple[int, ...]:
    """Where in ``body`` (a character offset) the JSON parser stopped, from its "line L column C" (FastAPI
    locates a JSON error at ``("body", offset)``); none when the parser's message does not say."""
    found = re.search(r"line (\d+) column (\d+)", str(context.get("error", "")))
    if found is None:
        return ()
    start = 0
    for _ in range(int(found[1]) - 1):
        start = body.find(b"\n", start) + 1
        if start == 0:
            return ()
    return (len(body[:start].decode("utf-8", "replace")) + int(found[2]) - 1,)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer_query(scope: Scope, receive: Receive) -> tuple[bytes, str]:
    """``POST /v1/substitutes``: read, validate, answer (:func:`_answer`); errors raised."""
    content_type = next((value for name, value in scope["headers"] if name == b"content-type"), None)
    request = parse_json_body(content_type, await _read_body(receive), SubstituteRequest)
    return _answer(answering_from(scope["app"].state.service), request)


class QueryFastPath:
    """``POST /v1/substitutes``, the service's busiest request, served by the innermost middleware: every
    middleware of the app (metrics and the access log, CORS, the concurrency limit, access control) has seen it,
    but FastAPI's routing, exception middleware, request object, dependency resolution, ``json.loads`` then
    validation and response object are skipped (in one process the layers between the app's entry and the route's
    code went from about a quarter of a request's time to an eighth, see docs/performance.md).

    Every ``POST`` to the path takes it, valid or not: the same request model validates the body
    (:func:`parse_json_body`), the same answer is written (:func:`answer_json`), and an error is answered by the
    app's own exception handler for it (``handlers``: the app's ``exception_handlers``, read when an error
    happens), as FastAPI's exception middleware would; an error with no handler goes on up to the server-error
    middleware (500). Other methods go on to the router (405). FastAPI documents the route from
    :func:`post_substitutes`, whose route the metrics and the access log name the request by."""

    def __init__(self, app: ASGIApp, handlers: Mapping[Any, Any]) -> None:
        self.app = app
        self.handlers = handlers
        self.route = next(route for route in router.routes
                          if isinstance(route, APIRoute) and route.endpoint is post_substitutes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.route.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the metrics and the access log name the endpoint by
        try:
            body, timing = await _answer_query(scope, receive)
        except Exception as exc:  # nothing was sent yet: the app's handler answers, as in FastAPI's routes
            handler = self._handler(exc)
            if handler is None:
                raise
            request = Request(scope, receive, send)
            response = (await handler(request, exc) if inspect.iscoroutinefunction(handler)
                        else await run_in_threadpool(handler, request, exc))
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"server-timing", timing.encode())]})
        await send({"type": "http.response.body", "body": body})

    def _handler(self, exc: Exception) -> Any:
        """The app's handler for ``exc``, looked up as Starlette's exception middleware does (an HTTP error's
        status code first, then the exception's classes); None for what only the server-error middleware handles."""
        if isinstance(exc, StarletteHTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self.handlers:
                return self.handlers[cls]
        return None


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
    for line in answer.lines:  # signed in place: the answer holds its signed lines
        signed(signer, line, request.customer_id, placement, order_id)
    if counted is not None:
        answering.experiments.count(str(counted.experiment), str(counted.arm), len(answer.lines), orders=1)
    return json_response(answer)


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
