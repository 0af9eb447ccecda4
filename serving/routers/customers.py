"""What the engine believes about a customer (ids and derived preferences only), for data scientists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from recsys import CustomerProfile, UnknownCustomerError
from serving.deps import EngineDep
from serving.responses import json_response
from serving.schemas import ErrorOut

router = APIRouter(prefix="/v1", tags=["customers"])


@router.get("/customers/{customer_id}/profile", response_model=CustomerProfile,
            responses={404: {"model": ErrorOut, "description": "unknown customer"},
                       503: {"model": ErrorOut, "description": "no model loaded"}})
async def get_profile(
    engine: EngineDep,
    customer_id: Annotated[str, Path(min_length=1, max_length=256)],
    categories: Annotated[int, Query(ge=1, le=50, description="most categories listed")] = 10,
) -> Response:
    """Segment (recency, frequency, monetary) and, per category the customer buys most, preferred brands,
    usual size and price band: why their answers are personal."""
    try:
        profile = engine.customer_profile(customer_id, max_categories=categories)
    except UnknownCustomerError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return json_response(profile)
