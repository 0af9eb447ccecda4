"""GET /v1/customers/{id}/profile and SubstituteEngine.customer_profile, checked against the raw purchases."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys import Dataset, SubstituteEngine, UnknownCustomerError
from recsys.domain.schema import PURCHASE_TYPES
from serving.app import create_app
from serving.settings import Settings


def test_profile_agrees_with_the_customers_purchases(engine: SubstituteEngine, dataset: Dataset) -> None:
    data_end = dataset.events["timestamp"].max()
    purchases = dataset.events[dataset.events["event_type"].isin(PURCHASE_TYPES)]
    events = purchases.merge(dataset.catalog, on="item_id")
    catalog_events = dataset.events.merge(dataset.catalog, on="item_id")
    segments = set()
    for customer in [str(c) for c in engine.model.customers[::30]]:
        profile = engine.customer_profile(customer, max_categories=5)
        mine = events[events["customer_id"] == customer]
        assert profile.baskets == mine["session_id"].nunique()
        assert profile.recency_days == pytest.approx((data_end - mine["timestamp"].max()).total_seconds() / 86400,
                                                     abs=0.06)
        touched = catalog_events[catalog_events["customer_id"] == customer]  # purchases, views and carts
        assert profile.items == touched["item_id"].nunique(), "items the customer interacted with"
        segments.add(profile.segment)
        shares = [c.share for c in profile.categories]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
        for category in profile.categories:
            bought = mine[(mine["department"] == category.department) & (mine["category"] == category.category)]
            assert category.purchases == len(bought.drop_duplicates())
            # brands and the private-label share weigh every interaction, views and carts too
            interest = touched[(touched["department"] == category.department)
                               & (touched["category"] == category.category)]
            assert category.brands[0].brand in set(interest["brand"])
            shares = [b.share for b in category.brands]
            assert shares == sorted(shares, reverse=True)
            assert (category.private_label_share > 0) == bool(interest["private_label"].any())
            if category.price_band:
                band = category.price_band
                assert band.p25 <= band.median <= band.p75
    assert len(segments) >= 3, "customers fall into different RFM segments"
    with pytest.raises(UnknownCustomerError):
        engine.customer_profile("nobody")


def test_profile_over_http(model_dir: Path) -> None:
    settings = Settings(model_path=model_dir, state_path=None, admin_token="profile-token")
    with TestClient(create_app(settings), headers={"Authorization": "Bearer profile-token"}) as client:
        engine: SubstituteEngine = client.app.state.service.engine
        customer = str(engine.model.customers[5])
        response = client.get(f"/v1/customers/{customer}/profile", params={"categories": 3})
        assert response.status_code == 200
        body = response.json()
        expected = engine.customer_profile(customer, max_categories=3)
        assert body["segment"] == expected.segment and len(body["categories"]) == 3
        assert body["categories"][0]["brands"][0] == {"brand": expected.categories[0].brands[0].brand,
                                                      "share": expected.categories[0].brands[0].share}
        missing = client.get("/v1/customers/nobody/profile")
        assert missing.status_code == 404 and missing.json() == {"detail": "unknown customer 'nobody'"}
        assert client.get(f"/v1/customers/{customer}/profile", params={"categories": 0}).status_code == 422
