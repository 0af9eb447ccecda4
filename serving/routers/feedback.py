"""Substitution feedback: what was shown, accepted, rejected or chosen; the next training's strongest signal."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status

from recsys.state.feedback import Feedback
from recsys.state.storage import StateUnavailableError
from serving.deps import StateDep
from serving.schemas import ErrorOut, FeedbackIn, FeedbackRecorded

log = logging.getLogger("recsys.serving")
router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackRecorded, status_code=status.HTTP_201_CREATED,
             responses={503: {"model": ErrorOut, "description": "state database unreachable: not recorded"}})
def post_feedback(body: FeedbackIn, state: StateDep) -> FeedbackRecorded:
    """Record one answer's outcome durably (committed before the reply)."""
    # a plain def: the SQLite commit (an fsync) runs in the thread pool, off the event loop
    feedback = Feedback(item_id=body.item_id, shown=tuple(body.shown), accepted=body.accepted,
                        rejected=tuple(body.rejected), chosen=body.chosen, customer_id=body.customer_id,
                        store_id=body.store_id, source=body.source, model_version=body.model_version)
    try:
        return FeedbackRecorded(id=state.feedback.record(feedback))
    except StateUnavailableError as exc:
        # the reason names the database's host: it goes to the log, not to the client
        log.warning("feedback not recorded: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "not recorded, the state database is unreachable; retry") from exc
