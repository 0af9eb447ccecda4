"""The FastAPI application: a thin HTTP layer over :class:`recsys.SubstituteEngine`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from recsys import ArtifactError, Inventory, SubstituteEngine
from serving.access import AccessMiddleware, document_scopes
from serving.cors import add_cors
from serving.limits import ConcurrencyLimitMiddleware, RateLimiter
from serving.metrics import Metrics, ObservabilityMiddleware
from serving.responses import TOO_DEEP
from serving.routers import admin, customers, experiments, feedback, health, items, model, rules, substitutes, ui
from serving.schemas import ErrorOut
from serving.settings import Settings
from serving.state import ServiceState

log = logging.getLogger("recsys.serving")


def create_app(settings: Settings | None = None, inventory: Inventory | None = None,
               engine: SubstituteEngine | None = None) -> FastAPI:
    """Build the app; the model loads in ``lifespan`` (never at import), so a failed load leaves it unready.
    ``engine``: a model already loaded (by the pre-fork parent of ``--workers N``, see :mod:`serving.prefork`),
    served unless the state's model pointer names another version."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service: ServiceState = app.state.service
        try:
            first = await _first_engine(service, settings, engine)
            app.state.metrics.set_model(first.version)
            log.info("serving model %s", first.version)
        except ArtifactError as exc:
            log.error("no model loaded, /readyz stays 503 until POST /v1/admin/reload succeeds: %s", exc)
        service.start_sync(settings, app.state.metrics)
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    # the service exports Prometheus metrics; FastAPI's OpenTelemetry hooks cost about 8 µs a request even with
    # no provider configured, so they are opt-in
    telemetry = None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="recsys substitutes", version="1.0", lifespan=lifespan, telemetry=telemetry,
                  # RECSYS_DOCS=false: no API description served (all three are 404)
                  openapi_url="/openapi.json" if settings.docs else None,
                  docs_url="/docs" if settings.docs else None, redoc_url="/redoc" if settings.docs else None,
                  responses={400: {"model": ErrorOut, "description": "unparseable body"},
                             413: {"model": ErrorOut, "description": "body over RECSYS_MAX_BODY_BYTES"}},
                  description="Substitutes for unavailable items: ranked, available, personal, with reasons.")
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_scopes(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.service = ServiceState.from_settings(settings, inventory)
    app.state.metrics = Metrics()
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    # the innermost middleware: the busiest request, answered without FastAPI's per-request machinery (see
    # QueryFastPath) once every middleware below has seen it; the handlers registered below answer its errors
    app.add_middleware(substitutes.QueryFastPath, handlers=app.exception_handlers)
    # access control: every middleware added after it (metrics, CORS, the concurrency limit) sees its refusals
    app.add_middleware(AccessMiddleware, access=app.state.service.access, limiter=app.state.rate_limiter)
    # added first, so it runs inside ObservabilityMiddleware (the last added is outermost): refusals are
    # counted and timed in the metrics, and a body whose length is over the limit never takes a slot
    app.add_middleware(ConcurrencyLimitMiddleware, max_concurrency=settings.max_concurrency)
    # CORS inside ObservabilityMiddleware, so preflights are counted, timed and get an X-Request-ID; outside the
    # concurrency limit, the access check and routing, so a preflight takes no slot and needs no API key, and
    # their 401s, 429s and 503s carry the CORS headers a page needs to read them (the 413 for a body over the
    # limit, answered outside, does not)
    add_cors(app, settings.cors_origin_list())
    # a store's whole count is larger than any query; its path needs a write key, checked before a body is read
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes,
                       larger_bodies={"/v1/inventory/snapshot": settings.max_snapshot_bytes})
    for router in (substitutes.router, customers.router, feedback.router, admin.router, health.router,
                   items.router, model.router, experiments.router, rules.router):
        app.include_router(router)
    if settings.ui:  # the review page: static files calling the API above
        app.include_router(ui.router)
    if settings.metrics:
        app.include_router(health.metrics_router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # FastAPI answers a body that json.loads cannot parse for recursion depth (e.g. 100,000 "[") with a 400
        # whose message does not say why; name the problem
        if isinstance(exc.__cause__, RecursionError):
            return JSONResponse({"detail": TOO_DEEP}, status_code=400)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # a 422 echoes the invalid input: one nested nearly as deep as json.loads allows cannot be written back
        try:
            return await request_validation_exception_handler(request, exc)
        except RecursionError:
            return JSONResponse({"detail": TOO_DEEP}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # never a stack trace to clients
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app


async def _first_engine(service: ServiceState, settings: Settings, preloaded: SubstituteEngine | None
                        ) -> SubstituteEngine:
    """The pre-loaded engine, now reading this process's inventory, when the state's pointer names its version
    (or nothing); else the first model as :meth:`ServiceState.load_first` finds it."""
    if preloaded is not None:
        pointed = await asyncio.to_thread(service.pointed_model, settings.models_directory())
        if pointed is None or pointed.name == preloaded.version:
            service.prepare(preloaded)
            service.engine = preloaded
            return preloaded
    return await service.load_first(settings.models_directory())
