"""Prometheus metrics and the ASGI middleware that records them (and enforces the body-size limit).

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds microseconds, not a task per request.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("recsys.access")


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
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            status_code = 413
            await _plain_error(send, 413, f"request body over {self.max_body_bytes} bytes")
            self._record(scope, status_code, start)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
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
                message["headers"] = [*message.get("headers", []), timing]
            await send(message)

        try:
            await self.app(scope, limited_receive, recording_send)
        except _BodyTooLarge:
            status_code = 413
            await _plain_error(send, 413, f"request body over {self.max_body_bytes} bytes")
        self._record(scope, status_code, start)

    def _record(self, scope: Scope, status_code: int, start: float) -> None:
        route: Any = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        seconds = time.perf_counter() - start
        method = scope.get("method", "")
        self.metrics.record(endpoint, method, status_code, seconds)
        if access_log.isEnabledFor(logging.INFO):
            # the route template, never the concrete path or body: no customer data in logs
            access_log.info(json.dumps({"event": "request", "method": method, "endpoint": endpoint,
                                        "status": status_code, "ms": round(seconds * 1e3, 3)}))


class _BodyTooLarge(Exception):
    pass


async def _plain_error(send: Send, status_code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
