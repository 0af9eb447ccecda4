"""State-changing endpoints: inventory updates and whole-store snapshots (the ``write`` scope) and model reload
(``admin``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status

from recsys import ArtifactError, StockUpdate
from recsys.state.storage import StateUnavailableError
from serving.deps import SettingsDep, StateDep
from serving.schemas import (
    ErrorOut,
    InventoryResult,
    InventoryUpdate,
    ReloadRequest,
    ReloadResult,
    SnapshotResult,
    StockSnapshotIn,
)

log = logging.getLogger("recsys.serving")
router = APIRouter(prefix="/v1", tags=["admin"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


@router.put("/inventory", response_model=InventoryResult,
            responses={503: {"model": ErrorOut, "description": "state database unreachable: nothing applied"}})
async def put_inventory(body: InventoryUpdate, state: StateDep, settings: SettingsDep) -> InventoryResult:
    """Apply a batch of stock changes (per store; ``online`` when no store is given), live, no retraining.
    Acknowledged only once committed to the state database, where every replica reads it."""
    if len(body.updates) > settings.max_batch:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"{len(body.updates)} updates in one request, at most {settings.max_batch}")
    updates = [StockUpdate(item_id=u.item_id, store_id=u.store_id, in_stock=u.in_stock, restock_eta=u.restock_eta)
               for u in body.updates]
    try:
        # in a worker thread: the commit waits for the disk or the database, never on the event loop
        applied = await asyncio.to_thread(state.inventory.apply, updates)
    except StateUnavailableError as exc:
        log.warning("inventory update not applied: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "not applied, the state database is unreachable; retry") from exc
    engine = state.engine
    unknown = sorted({u.item_id for u in updates if engine is not None and u.item_id not in engine})
    return InventoryResult(applied=applied, unknown_items=unknown)


@router.put("/inventory/snapshot", response_model=SnapshotResult, responses={
    413: {"model": ErrorOut, "description": "body over RECSYS_MAX_SNAPSHOT_BYTES"},
    503: {"model": ErrorOut, "description": "state database unreachable: nothing applied"}})
async def put_inventory_snapshot(body: StockSnapshotIn, state: StateDep) -> SnapshotResult:
    """Replace one store's stock with its whole count (a store system's nightly count) in one atomic step.
    With `unlisted: out_of_stock` every item of the store not listed is out from then on, items never reported
    included; with `unchanged` the others keep their state. Acknowledged only once committed to the state
    database, where every replica reads it; single updates after it apply on top."""
    updates = [StockUpdate(item_id=item.item_id, store_id=body.store_id, in_stock=item.in_stock,
                           restock_eta=item.restock_eta) for item in body.items]
    try:
        # in a worker thread: the commit of a whole count waits for the disk or the database
        applied = await asyncio.to_thread(state.inventory.apply_snapshot, body.store_id, updates,
                                          body.unlisted == "out_of_stock")
    except StateUnavailableError as exc:
        log.warning("stock snapshot not applied: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "not applied, the state database is unreachable; retry") from exc
    engine = state.engine
    # ids the model does not know are stored all the same: a later model may know them, and their stock is then
    # in place the moment it is served; counted, not listed, as a whole count may hold thousands of them
    unknown = 0 if engine is None else sum(1 for update in updates if update.item_id not in engine)
    return SnapshotResult(store_id=body.store_id, applied=applied, unknown_items=unknown, unlisted=body.unlisted)


@router.post("/admin/reload", response_model=ReloadResult,
             responses={409: {"model": ErrorOut}})
async def reload_model(request: Request, state: StateDep, body: ReloadRequest | None = None) -> ReloadResult:
    """Load (and verify) the model again, or another one, and swap it in without dropping requests."""
    path = Path(body.model_path) if body is not None and body.model_path else None
    try:
        engine, previous = await state.reload(path)
    except ArtifactError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"model refused, still serving the old one: {exc}") from exc
    request.app.state.metrics.set_model(engine.version)
    return ReloadResult(model_version=engine.version, previous_version=previous)
