"""Prometheus metrics and the ASGI middleware that records them (and enforces the body-size limit).

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds microseconds, not a task per request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from binascii import b2a_hex
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _json_string  # a JSON string, quoted (C-accelerated)
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.responses import send_error

access_log = logging.getLogger("recsys.access")
#: an incoming X-Request-ID (a proxy's or a client's) is kept when it is a plain token; anything else is replaced,
#: so that a header cannot forge or break a log line
_REQUEST_ID: Final[re.Pattern[bytes]] = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests_total", "HTTP requests", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "recsys_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.model = Gauge("recsys_model_info", "the model being served (value 1)", ["version"],
                           registry=self.registry)
        self.model_load_failed = Gauge(
            "recsys_model_load_failed", "1 while the version the shared model pointer names could not be loaded "
            "(the old model keeps serving)", ["version"], registry=self.registry)
        self.state_up = Gauge("recsys_state_up", "1 while the shared state database is reachable",
                              registry=self.registry)
        self.state_seq = Gauge("recsys_state_seq", "the highest stock sequence number read from the state",
                               registry=self.registry)

        # labelled children by (endpoint, method, status): labels() validates and locks on every call
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, endpoint: str, method: str, status_code: int, seconds: float) -> None:
        children = self._children.get((endpoint, method, status_code))
        if children is None:  # endpoints are route templates: few keys
            children = (self.requests.labels(endpoint, method, str(status_code)), self.latency.labels(endpoint))
            self._children[endpoint, method, status_code] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_model(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)

    def set_model_error(self, version: str | None) -> None:
        """The pointed-to version that failed to load, or None once the replica serves what it should."""
        self.model_load_failed.clear()
        if version is not None:
            self.model_load_failed.labels(version=version).set(1)

    def set_state(self, reachable: bool, seq: int) -> None:
        self.state_up.set(1 if reachable else 0)
        self.state_seq.set(seq)


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int,
                 larger_bodies: Mapping[str, int] | None = None) -> None:
        """``larger_bodies``: the body limit of paths that take more than ``max_body_bytes`` (by exact path)."""
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.larger_bodies = dict(larger_bodies or {})
        # the access log's timestamp to the second, made once a second rather than once a request
        self._second = -1
        self._second_text = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500
        headers = dict(scope.get("headers", []))
        request_id: bytes | None = headers.get(b"x-request-id")
        if request_id is None or _REQUEST_ID.fullmatch(request_id) is None:
            request_id = b2a_hex(os.urandom(8))  # unique enough to find one request, ten times cheaper than a uuid4
        id_header = (b"x-request-id", request_id)
        limit = self.larger_bodies.get(scope["path"], self.max_body_bytes)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            status_code = 413
            await send_error(send, 413, f"request body over {limit} bytes", [id_header])
            self._record(scope, status_code, start, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                # standard Server-Timing header: the time spent in the app, so clients can tell it from network
                # (a route may add its own entries: the substitute routes report the engine's time)
                elapsed_ms = (time.perf_counter() - start) * 1e3
                timing = (b"server-timing", f"app;dur={elapsed_ms:.3f}".encode())
                message["headers"] = [*message.get("headers", []), timing, id_header]
            await send(message)

        try:
            await self.app(scope, limited_receive, recording_send)
        except _BodyTooLarge:
            status_code = 413
            await send_error(send, 413, f"request body over {limit} bytes", [id_header])
        self._record(scope, status_code, start, request_id)

    def _record(self, scope: Scope, status_code: int, start: float, request_id: bytes) -> None:
        route: Any = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        seconds = time.perf_counter() - start
        method = scope.get("method", "")
        self.metrics.record(endpoint, method, status_code, seconds)
        if access_log.isEnabledFor(logging.INFO):
            # the name of the API key that called (``request.state.caller``, set by serving.access), never
            # a key, a header, the query string or the body
            state = scope.get("state")
            caller = state.get("caller") if state else None
            key = _json_string(caller) if isinstance(caller, str) else "null"
            # the route template, never the concrete path or body: no customer data in logs. Written as
            # json.dumps would write it, in a third of its time; the request id is a plain token, needing no escape
            access_log.info(f'{{"ts": "{self._timestamp()}", "event": "request", "request_id": '
                            f'"{request_id.decode()}", "key": {key}, "method": {_json_string(method)}, "endpoint": '
                            f'{_json_string(endpoint)}, "status": {status_code}, "ms": {round(seconds * 1e3, 3)!r}}}')

    def _timestamp(self) -> str:
        """Now in UTC, ISO 8601 to the millisecond: ``2026-11-24T08:15:02.417Z``."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"


class _BodyTooLarge(Exception):
    pass
