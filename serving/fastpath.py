"""The hot route's valid requests, answered without FastAPI's per-request machinery.

``POST /v1/substitutes`` carries most of the traffic. FastAPI's routing, dependency resolution and body
handling cost about 0.12 ms a request, more than the engine's whole answer (0.11 ms at p50). This ASGI
middleware answers a request itself only when it would succeed: a JSON body that the route's own model
accepts (validated as FastAPI does: parsed, then ``model_validate``), a loaded model and a known item; the
answer is the route's own (:func:`serving.routers.substitutes.answer_json`). Everything else goes to
the FastAPI route with the body replayed, so errors (404, 422, 503) and the OpenAPI contract stay FastAPI's.
A test sends the same requests with and without it and gets the same bytes. ``RECSYS_FAST_PATH=false``
turns it off.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys import SubstituteEngine, UnknownItemError
from serving.routers import substitutes
from serving.schemas import SubstituteRequest

PATH = "/v1/substitutes"
# the route, for the metrics label (the observability middleware reads scope["route"].path)
_ROUTE = next(route for route in substitutes.router.routes if getattr(route, "path", None) == PATH)


class SubstituteFastPath:
    """ASGI middleware: answers the valid ``POST /v1/substitutes`` requests, passes everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, last = await _read_body(receive)
        engine = scope["app"].state.service.engine
        answer = self.answer(engine, body) if engine is not None and last is None else None
        if answer is None:
            await self.app(scope, _replay(body, last, receive), send)
            return
        payload, timing = answer
        scope["route"] = _ROUTE
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()),
                                (b"content-type", b"application/json"), (b"server-timing", timing.encode())]})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def answer(engine: SubstituteEngine, body: bytes) -> tuple[bytes, str] | None:
        """The route's answer to ``body`` (JSON, Server-Timing entry); None where the route would answer with an
        error."""
        try:
            return substitutes.answer_json(engine, SubstituteRequest.model_validate(json.loads(body)))
        except (ValueError, UnknownItemError):  # undecodable or invalid JSON, unknown item
            return None


def _is_json(scope: Scope) -> bool:
    """Whether the body is declared plain ``application/json``; any other content type (with parameters,
    ``+json``, none) goes to FastAPI, which decides whether it reads the body as JSON."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value == b"application/json")
    return False


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The body, and the message that cut it short (the client went away), if one did."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands over again what was read (the body, then the message that cut it short),
    then defers to the real one."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": last is not None}]
    if last is not None:
        pending.append(last)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
