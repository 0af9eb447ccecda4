"""``PUT /v1/inventory/snapshot`` through the real app: a store's whole count needs a key with the ``write``
scope, replaces the store's stock in one step (closed-world or not), counts the ids the model does not know,
refuses a body that lists an item twice or does not validate with nothing applied, takes a 50,000-item count
(over the general body limit), and reaches another process sharing the state file within 2 s."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.state.keys import create_key
from serving.app import create_app
from serving.settings import Settings

TOKEN = "snapshot-operator-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PATH = "/v1/inventory/snapshot"


def _app(model_dir: Path, state: Path) -> TestClient:
    return TestClient(create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=state,
                                          state_poll_s=0.1)))


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with _app(model_dir, tmp_path / "state.sqlite3") as test_client:
        yield test_client


def _key(client: TestClient, name: str, *scopes: str) -> dict[str, str]:
    service = client.app.state.service
    key = create_key(service.store, name, frozenset(scopes))
    service.refresh_access()
    return {"Authorization": f"Bearer {key}"}


def _store_item_offers(client: TestClient) -> tuple[str, str, list[str]]:
    """A store the model knows, its most popular item and the substitutes offered for it there."""
    engine = client.app.state.service.engine
    item = str(engine.model.items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    store = str(engine.model.stores[0])
    return store, item, _offered(client, item, store)


def _offered(client: TestClient, item: str, store: str) -> list[str]:
    answer = client.post("/v1/substitutes", json={"item_id": item, "store_id": store, "k": 5}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return [s["item_id"] for s in answer.json()["substitutes"]]


def test_a_snapshot_needs_a_write_key_and_replaces_the_stores_stock(client: TestClient) -> None:
    store, item, offered = _store_item_offers(client)
    assert len(offered) >= 2
    gone, kept = offered[0], offered[1]
    inventory = client.app.state.service.inventory
    body = {"store_id": store, "unlisted": "out_of_stock", "items": [
        {"item_id": gone, "in_stock": False, "restock_eta": "2026-12-24T07:00:00"},
        {"item_id": kept, "in_stock": True}, {"item_id": "not-in-the-model", "in_stock": True}]}
    assert client.put(PATH, json=body).status_code == 401
    refused = client.put(PATH, json=body, headers=_key(client, "storefront", "read"))
    assert refused.status_code == 403 and "'write'" in refused.json()["detail"]
    assert inventory.store_stock(store).in_stock == [], "nothing applied on a refusal"
    answer = client.put(PATH, json=body, headers=_key(client, "store-system", "write"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"store_id": store, "applied": 3, "unknown_items": 1, "unlisted": "out_of_stock"}
    stock = inventory.store_stock(store)
    assert (sorted(stock.in_stock), stock.out_of_stock, stock.unlisted_out) == (
        sorted([kept, "not-in-the-model"]), [gone], True)
    assert inventory.state(store, gone).restock_eta is not None
    assert gone not in _offered(client, item, store)
    # closed world: of the store's items only the one listed in stock is offered, and it says it was reported
    after = client.post("/v1/substitutes", json={"item_id": item, "store_id": store, "k": 10}, headers=ADMIN).json()
    assert [(s["item_id"], s["availability"]) for s in after["substitutes"]] == [(kept, "in_stock")]
    again = client.put(PATH, json={"store_id": store, "unlisted": "unchanged",
                                   "items": [{"item_id": gone, "in_stock": True}]}, headers=ADMIN)
    assert again.json() == {"store_id": store, "applied": 1, "unknown_items": 0, "unlisted": "unchanged"}
    stock = inventory.store_stock(store)
    assert (sorted(stock.in_stock), stock.out_of_stock, stock.unlisted_out) == (
        sorted([gone, kept, "not-in-the-model"]), [], True), "the rest, and the closed-world flag, kept"


@pytest.mark.parametrize(("items", "extra", "named"), [
    ([{"item_id": "a", "in_stock": True}, {"item_id": "b", "in_stock": False}, {"item_id": "a", "in_stock": False}],
     {}, "'a' is listed twice"),
    ([{"item_id": "a", "in_stock": "yes"}], {}, "in_stock"),
    ([{"item_id": "a", "in_stock": 1}], {}, "in_stock"),
    ([{"item_id": "a", "in_stock": False, "restock_eta": 1700000000}], {}, "restock_eta"),
    ([{"item_id": "", "in_stock": True}], {}, "item_id"),
    ([{"item_id": "a", "in_stock": True, "price": 1}], {}, "price"),
    ([{"item_id": "a", "in_stock": True}], {"unlisted": "maybe"}, "unlisted"),
    ([{"item_id": "a", "in_stock": True}], {"unlisted": None}, "unlisted"),
    ([{"item_id": "a", "in_stock": True}], {"surprise": 1}, "surprise"),
])
def test_a_bad_snapshot_is_a_422_naming_the_problem_with_nothing_applied(client: TestClient, items: list[object],
                                                                         extra: dict[str, object],
                                                                         named: str) -> None:
    body = {"store_id": "bad-snapshot", "items": items, "unlisted": "out_of_stock", **extra}
    if extra.get("unlisted", "") is None:
        del body["unlisted"]  # required: what the rest of the store means is never guessed
    response = client.put(PATH, json=body, headers=ADMIN)
    assert response.status_code == 422 and named in str(response.json()["detail"]), response.text
    assert not client.app.state.service.inventory.knows_store("bad-snapshot")


def test_a_whole_count_of_50000_items_fits_and_a_larger_body_is_413(client: TestClient, tmp_path: Path) -> None:
    items = [{"item_id": f"sku-{n:07d}", "in_stock": n % 10 != 0} for n in range(50_000)]
    body = {"store_id": "big-store", "items": items, "unlisted": "out_of_stock"}
    answer = client.put(PATH, json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json() == {"store_id": "big-store", "applied": 50_000, "unknown_items": 50_000,
                             "unlisted": "out_of_stock"}
    assert len(answer.request.content) > Settings().max_body_bytes, "over the limit of every other endpoint"
    stock = client.app.state.service.inventory.store_stock("big-store")
    assert (len(stock.in_stock), len(stock.out_of_stock)) == (45_000, 5_000)
    with sqlite3.connect(tmp_path / "state.sqlite3") as check:
        assert check.execute("SELECT COUNT(*) FROM stock WHERE store_id = ?", (b"big-store",)).fetchone() == (50_000,)
    too_large = client.put(PATH, content=b" " * (Settings().max_snapshot_bytes + 1), headers={
        **ADMIN, "content-type": "application/json"})
    assert too_large.status_code == 413 and "request body over" in too_large.json()["detail"]
    assert client.put("/v1/inventory", content=answer.request.content, headers={
        **ADMIN, "content-type": "application/json"}).status_code == 413, "the other endpoints keep their limit"


def test_a_snapshot_reaches_another_process_within_2_s(model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with _app(model_dir, state) as first, _app(model_dir, state) as second:
        store, item, offered = _store_item_offers(first)
        gone = offered[0]
        response = first.put(PATH, headers=ADMIN, json={"store_id": store, "unlisted": "out_of_stock", "items": [
            {"item_id": gone, "in_stock": False}, {"item_id": offered[1], "in_stock": True}]})
        assert response.status_code == 200
        acknowledged = time.monotonic()
        expected = first.app.state.service.inventory.store_stock(store)
        other = second.app.state.service.inventory
        while (other.store_stock(store).in_stock, other.store_stock(store).out_of_stock,
               other.store_stock(store).unlisted_out) != (expected.in_stock, expected.out_of_stock, True):
            assert time.monotonic() - acknowledged < 2.0, "the other process did not see the snapshot within 2 s"
            time.sleep(0.02)
        assert gone not in _offered(second, item, store)
