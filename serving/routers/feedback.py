"""Substitution feedback: what the shopper (or picker) accepted, rejected or chose instead, for one answer the
service gave; the next training's strongest signal, so it is taken only for answers the service signed."""

from __future__ import annotations

import dataclasses
import logging
import time

from fastapi import APIRouter, HTTPException, Response, status

from recsys.state.answers import AnswerIdError
from recsys.state.experiments import accepted_item
from recsys.state.feedback import Feedback
from recsys.state.storage import StateUnavailableError
from serving.deps import SettingsDep, SignerDep, StateDep
from serving.schemas import ErrorOut, FeedbackIn, FeedbackRecorded, ValidationErrorOut
from serving.state import ServiceState

log = logging.getLogger("recsys.serving")
router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackRecorded, status_code=status.HTTP_201_CREATED, responses={
    200: {"model": FeedbackRecorded, "description": "the same decision was recorded for this answer before"},
    409: {"model": ErrorOut, "description": "this answer was decided before, differently (the first stands)"},
    422: {"model": ErrorOut | ValidationErrorOut,  # type: ignore[dict-item]
          "description": "a body that does not validate; or answer_id malformed, forged, changed or expired, or a "
                         "decision on an item the answer did not show"},
    503: {"model": ErrorOut, "description": "state database unreachable: not recorded"}})
def post_feedback(body: FeedbackIn, state: StateDep, signer: SignerDep, settings: SettingsDep,
                  response: Response) -> FeedbackRecorded:
    """Record one answer's outcome durably (committed before the reply), once per answer."""
    # a plain def: the SQLite commit (an fsync) runs in the thread pool, off the event loop
    try:
        answer = signer.verify(body.answer_id, time.time(), settings.feedback_max_age_s)
    except AnswerIdError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    not_shown = [s for s in (body.accepted, *body.rejected) if s is not None and s not in answer.shown]
    if not_shown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{not_shown[0]!r} was not among the substitutes this answer showed (a manual pick "
                            "goes in 'chosen')")
    feedback = Feedback(item_id=answer.item_id, shown=answer.shown, accepted=body.accepted,
                        rejected=tuple(body.rejected), chosen=body.chosen, customer_id=answer.customer_id,
                        store_id=answer.store_id, source=body.source, model_version=answer.model_version,
                        answer_id=body.answer_id, experiment=answer.experiment, arm=answer.arm,
                        order_id=answer.order_id)
    if answer.experiment is not None:  # what the shopper's choice cost them, for the experiment's report
        feedback = dataclasses.replace(feedback, price_difference=_price_difference(state, feedback))
    try:
        recorded = state.feedback.record(feedback)
    except StateUnavailableError as exc:
        # the reason names the database's host: it goes to the log, not to the client
        log.warning("feedback not recorded: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "not recorded, the state database is unreachable; retry") from exc
    if recorded.created:
        return FeedbackRecorded(id=recorded.id)
    if not recorded.feedback.same_decision(feedback):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"this answer was decided before (feedback {recorded.id}), differently; the first "
                            "decision stands")
    response.status_code = status.HTTP_200_OK
    return FeedbackRecorded(id=recorded.id, duplicate=True)


def _price_difference(state: ServiceState, feedback: Feedback) -> float | None:
    """The accepted substitute's shelf price minus the item's, from the model being served (prices are the
    catalog's, the same in both arms); None when nothing shown was taken or a price is unknown."""
    taken = accepted_item(feedback)
    engine = state.engine
    if taken is None or engine is None or taken not in engine or feedback.item_id not in engine:
        return None
    price, item_price = engine.item_info(taken).price, engine.item_info(feedback.item_id).price
    return None if price is None or item_price is None else round(price - item_price, 2)
