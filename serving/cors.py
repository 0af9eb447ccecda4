"""Cross-origin requests from browser pages on other origins (``RECSYS_CORS_ORIGINS``): those origins exactly,
none when unset."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

#: what a page may send: every method the API has, and the headers it reads
METHODS: Final[tuple[str, ...]] = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
HEADERS: Final[tuple[str, ...]] = ("Authorization", "Content-Type", "X-Request-ID")
#: response headers a page's script may read besides the safelisted ones
EXPOSED: Final[tuple[str, ...]] = ("X-Request-ID", "Server-Timing", "Retry-After")
#: how long a browser may reuse a preflight's answer (Chrome caps it at 2 hours)
MAX_AGE_S: Final[int] = 3600
#: an origin as a browser sends it: scheme://host[:port], lower case, nothing after
_ORIGIN: Final[re.Pattern[str]] = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")


class ExactOriginsCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, except that a request from an origin not allowed gets no CORS header at all:
    Starlette's tells any origin the exposed headers, and its refused preflights list the methods and headers the
    API takes. A preflight from such an origin is still 400."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # a request without an Origin header is not cross-origin (storefront servers, load balancers' checks):
        # straight through, without Starlette's Headers object and wrapped send, which cost every request
        if scope["type"] == "http" and not any(name == b"origin" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(origin=request_headers["origin"]):
            return PlainTextResponse("Disallowed CORS origin", status_code=400, headers={"Vary": "Origin"})
        return super().preflight_response(request_headers)

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if message["type"] != "http.response.start" or origin is None or self.is_allowed_origin(origin=origin):
            await super().send(message, send, request_headers)
            return
        # the answer depends on the Origin header: a cache must not hand this one to an allowed origin
        message.setdefault("headers", [])
        headers = MutableHeaders(scope=message)
        headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        await send(message)


def parse_origins(text: str) -> tuple[str, ...]:
    """The origins in a comma-separated list, lower-cased (browsers send them so) without a trailing slash;
    raises ``ValueError`` for anything else (a path, a wildcard)."""
    origins: list[str] = []
    for part in text.split(","):
        origin = part.strip().lower().removesuffix("/")
        if not origin:
            continue
        if _ORIGIN.fullmatch(origin) is None:
            raise ValueError(f"{part.strip()!r} is not an origin: give scheme://host[:port], e.g. "
                             "https://shop.example.com (no path, no wildcard)")
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Let pages on ``origins`` call the API; nothing when there are none. No credentials: API keys travel in
    the Authorization header, which a page sets itself, not in cookies."""
    if origins:
        app.add_middleware(ExactOriginsCORSMiddleware, allow_origins=tuple(origins), allow_methods=METHODS,
                           allow_headers=HEADERS, expose_headers=EXPOSED, allow_credentials=False,
                           max_age=MAX_AGE_S)
