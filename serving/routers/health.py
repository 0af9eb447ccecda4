"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import StateDep

router = APIRouter(tags=["health"])
#: apart, so that ``RECSYS_METRICS=false`` leaves it out (404)
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep, response: Response) -> dict[str, object]:
    """Ready once a model is loaded and the inventory was read from the state database (503 before). Once
    ready, it stays ready while the database is down (answers come from memory; ``state`` says so), and it
    reports a model the shared pointer names but this replica could not load (``model_error``: the version and
    the kind of failure, never a directory of the host; the log has the full error)."""
    engine = state.engine
    sync = state.sync
    body: dict[str, object] = {"ready": state.ready, "model_version": engine.version if engine else None}
    if state.store is not None:
        reachable = sync.reachable if sync is not None else None
        body["state"] = {True: "reachable", False: "unreachable", None: "unknown"}[reachable]
        body["wanted_version"] = sync.wanted_version if sync is not None else None
        body["model_error"] = sync.model_error if sync is not None else None
        body["experiment_error"] = sync.experiment_error if sync is not None else None
    if not state.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return body


@metrics_router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
