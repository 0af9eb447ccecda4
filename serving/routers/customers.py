"""What the engine believes about a customer (ids and derived preferences only), for data scientists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from recsys import UnknownCustomerError
from serving.deps import EngineDep
from serving.schemas import BrandShare, CategoryPreferenceOut, CustomerProfileOut, ErrorOut, PriceBand

router = APIRouter(prefix="/v1", tags=["customers"])


@router.get("/customers/{customer_id}/profile", response_model=CustomerProfileOut,
            responses={404: {"model": ErrorOut, "description": "unknown customer"},
                       503: {"model": ErrorOut, "description": "no model loaded"}})
async def get_profile(
    engine: EngineDep,
    customer_id: Annotated[str, Path(min_length=1, max_length=256)],
    categories: Annotated[int, Query(ge=1, le=50, description="most categories listed")] = 10,
) -> CustomerProfileOut:
    """Segment (recency, frequency, monetary) and, per category the customer buys most, preferred brands,
    usual size and price band: why their answers are personal."""
    try:
        profile = engine.customer_profile(customer_id, max_categories=categories)
    except UnknownCustomerError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return CustomerProfileOut(
        customer_id=profile.customer_id, model_version=profile.model_version, segment=profile.segment,
        recency_days=profile.recency_days, baskets=profile.baskets, spend=profile.spend,
        home_store=profile.home_store, items=profile.items,
        categories=[CategoryPreferenceOut(
            department=c.department, category=c.category, share=c.share, purchases=c.purchases,
            brands=[BrandShare(brand=b, share=v) for b, v in c.brands], private_label_share=c.private_label_share,
            usual_size=c.usual_size,
            price_band=PriceBand(p25=c.price_band[0], median=c.price_band[1], p75=c.price_band[2])
            if c.price_band else None,
        ) for c in profile.categories],
    )
