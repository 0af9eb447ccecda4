"""Every endpoint and error path, through the real app (lifespan included)."""

import asyncio
import json
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from recsys import StockUpdate
from recsys.model.artifact import MANIFEST
from recsys.model.data import FACTORS_FILE
from serving.app import create_app
from serving.responses import TOO_DEEP
from serving.routers import substitutes
from serving.schemas import SubstituteRequest
from serving.settings import Settings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3")
    # the operator's token on every request: these tests are about answers; access has its own tests
    with TestClient(create_app(settings), headers=AUTH) as test_client:
        yield test_client


def unsigned(answer: dict) -> dict:
    """An answer without its signature, which differs from one answer to the next."""
    assert answer["answer_id"], "every answer is signed"
    return {key: value for key, value in answer.items() if key != "answer_id"}


@pytest.fixture()
def item_id(client: TestClient) -> str:
    engine = client.app.state.service.engine
    items = engine.model.items
    return str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])


def test_post_and_get_agree(client: TestClient, item_id: str) -> None:
    customer = str(client.app.state.service.engine.model.customers[0])
    posted = client.post("/v1/substitutes", json={"item_id": item_id, "customer_id": customer, "k": 5})
    got = client.get(f"/v1/items/{item_id}/substitutes", params={"customer_id": customer, "k": 5})
    assert posted.status_code == got.status_code == 200
    assert unsigned(posted.json()) == unsigned(got.json())
    assert posted.json()["answer_id"] != got.json()["answer_id"], "each answer is signed as itself"
    body = posted.json()
    assert body["item"]["item_id"] == item_id and body["personalized"] is True
    assert 1 <= len(body["substitutes"]) <= 5
    assert all(s["item_id"] != item_id and s["reasons"] for s in body["substitutes"])
    assert body["model_version"] == client.get("/readyz").json()["model_version"]


def test_substitute_answers_are_the_routes_bytes(client: TestClient, item_id: str) -> None:
    """POST /v1/substitutes answers with the route's own serialisation (answer_json), and errors with FastAPI's;
    Server-Timing carries the app's time and, where the engine answered, the engine's."""
    engine = client.app.state.service.engine
    customer = str(engine.model.customers[0])
    full = {"item_id": item_id, "customer_id": customer, "store_id": str(engine.model.stores[0]), "k": 3,
            "exclude": ["x"],
            "filters": {"max_price": 5.0, "same_size_family": True}}
    requests: list[dict[str, object]] = [
        {"json": {"item_id": item_id}},
        {"json": full},
        {"content": json.dumps({"item_id": item_id}).encode()},  # no content type
        {"content": json.dumps({"item_id": item_id}).encode(),
         "headers": {"content-type": "application/json; charset=utf-8"}},
        {"json": {"item_id": "no-such-item"}},
        {"json": {"item_id": item_id, "k": 0}},
        {"json": {"item_id": item_id, "surprise": 1}},
        {"json": {"item_id": item_id, "k": "3"}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b"", "headers": {"content-type": "application/json"}},
        {"content": json.dumps({"item_id": item_id}).encode(), "headers": {"content-type": "text/plain"}},
    ]
    responses = [client.post("/v1/substitutes", **request) for request in requests]  # type: ignore[arg-type]
    assert [r.status_code for r in responses] == [200, 200, 422, 200, 404, 422, 422, 422, 422, 422, 422]
    for response in responses:
        assert response.headers["content-type"] == "application/json"
        timings = dict(entry.split(";dur=") for entry in response.headers.get_list("server-timing"))
        assert ("engine" in timings) == (response.status_code == 200)
        assert float(timings.get("engine", 0)) <= float(timings["app"])
    signer = client.app.state.service.signer
    for response, payload in ((responses[0], {"item_id": item_id}), (responses[1], full)):
        expected = substitutes.answer_json(engine, signer, SubstituteRequest.model_validate(payload))[0]
        assert unsigned(response.json()) == unsigned(json.loads(expected))
    metrics = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/v1/substitutes",method="POST",status="200"} 3.0' in metrics


def test_the_fast_path_answers_as_fastapis_route_would(client: TestClient, item_id: str, model_dir: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /v1/substitutes is served by QueryFastPath, not FastAPI's route: the same app without it (where
    ``post_substitutes`` answers) gives the same status, answer, errors located as FastAPI locates them, and
    headers, for every kind of request, valid or not; other methods still reach the router."""
    served = []
    answer_query = substitutes._answer_query

    async def counted(*args: object) -> tuple[bytes, str]:
        served.append(1)
        return await answer_query(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(substitutes, "_answer_query", counted)
    engine = client.app.state.service.engine
    plain = json.dumps({"item_id": item_id}).encode()
    requests: list[dict[str, object]] = [
        {"json": {"item_id": item_id, "customer_id": str(engine.model.customers[0]), "k": 3,
                  "store_id": str(engine.model.stores[0]), "filters": {"max_price": 5.0}}},
        {"json": {"item_id": "no-such-item"}},
        {"json": {"item_id": item_id, "store_id": "no-such-store"}},
        {"json": {"item_id": item_id, "filters": {"keep": ["no_such_attribute"]}}},
        {"json": {"item_id": item_id, "k": 0, "filters": {"max_price": "a"}}},
        {"content": b"", "headers": {"content-type": "application/json"}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
        {"content": plain, "headers": {"content-type": "application/vnd.shop+json"}},
        {"content": plain, "headers": {"content-type": "text/plain"}},
    ]
    without = create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "other.sqlite3"))
    without.user_middleware = [m for m in without.user_middleware if m.cls is not substitutes.QueryFastPath]
    with TestClient(without, headers=AUTH) as fastapi_client:
        for request in requests:
            fast = client.post("/v1/substitutes", **request)  # type: ignore[arg-type]
            routed = fastapi_client.post("/v1/substitutes", **request)  # type: ignore[arg-type]
            assert fast.status_code == routed.status_code, request
            assert sorted(fast.headers) == sorted(routed.headers)
            if fast.status_code == 200:
                assert unsigned(fast.json()) == unsigned(routed.json())
            elif fast.status_code == 422:  # where and what, not the parser's own words
                assert [(e["loc"], e["type"]) for e in fast.json()["detail"]] == [
                    (e["loc"], e["type"]) for e in routed.json()["detail"]]
            else:
                assert fast.json() == routed.json()
        assert [client.post("/v1/substitutes", **r).status_code for r in requests] == [  # type: ignore[arg-type]
            200, 404, 404, 400, 422, 422, 422, 400, 200, 422]
        assert client.get("/v1/substitutes").status_code == fastapi_client.get("/v1/substitutes").status_code == 405
    assert len(served) == 2 * len(requests), "every POST took the fast path, and only those of the app with it"

    def gone(request: Request, exc: Exception) -> PlainTextResponse:  # a plain def: run in the thread pool
        return PlainTextResponse(f"gone: {request.url.path}", status_code=404)

    client.app.add_exception_handler(404, gone)  # a status code's handler comes before the exception class's
    unknown = client.post("/v1/substitutes", json={"item_id": "no-such-item"})
    assert (unknown.status_code, unknown.text) == (404, "gone: /v1/substitutes")
    wrong = client.post("/v1/substitutes", json={"item_id": item_id, "k": 0, "filters": {"max_price": "a"}})
    assert sorted(tuple(error["loc"]) for error in wrong.json()["detail"]) == [
        ("body", "filters", "max_price"), ("body", "k")]

    pieces = [b'{"item_', b'id": ', json.dumps(item_id).encode(), b', "k": 2}']
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]

    async def receive() -> dict:
        return messages.pop(0)

    body = asyncio.run(substitutes._read_body(receive))
    assert substitutes.parse_json_body(b"application/json", body, SubstituteRequest).k == 2

    operation = client.get("/openapi.json").json()["paths"]["/v1/substitutes"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/SubstituteRequest") and operation["requestBody"]["required"]
    assert {"200", "404", "422"} <= set(operation["responses"])


def test_filters_and_exclude_over_http(client: TestClient, item_id: str) -> None:
    first = client.post("/v1/substitutes", json={"item_id": item_id, "k": 3}).json()["substitutes"]
    excluded = first[0]["item_id"]
    answer = client.post("/v1/substitutes", json={
        "item_id": item_id, "k": 10, "exclude": [excluded], "filters": {"max_price": 5.0, "same_size_family": True},
    })
    assert answer.status_code == 200
    for s in answer.json()["substitutes"]:
        assert s["item_id"] != excluded and s["price"] <= 5.0 and s["size_ratio"] is not None


def test_catalog_attributes_over_http(client: TestClient, item_id: str) -> None:
    """Attributes in the answer, ``keep`` and ``prefer`` in the filters with their reasons as codes, and an
    attribute the catalog lacks a 400 that names it, for one line and for a whole order."""
    first, *_, last = client.app.state.service.engine.item_table.attributes.names
    answer = client.post("/v1/substitutes", json={"item_id": item_id, "k": 10,
                                                  "filters": {"keep": [last], "prefer": [first]}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    wanted = set(body["item"]["attributes"].get(last, []))
    assert body["substitutes"] and body["item"]["attributes"]
    for s in body["substitutes"]:
        assert wanted <= set(s["attributes"].get(last, []))
        shared = [c["value"] for c in s["reason_codes"]
                  if c["code"] in ("shared_attribute", "shared_flag") and c["attribute"] == last]
        assert shared == sorted(wanted - {"no"})
    for path, payload in (("/v1/substitutes", {"item_id": item_id}), ("/v1/substitutes/batch", {"items": [item_id]})):
        refused = client.post(path, json={**payload, "filters": {"keep": ["colour"]}})
        assert refused.status_code == 400 and "unknown attribute 'colour'" in refused.json()["detail"]


def test_unknown_customer_is_not_personalised(client: TestClient, item_id: str) -> None:
    body = client.post("/v1/substitutes", json={"item_id": item_id, "customer_id": "stranger"}).json()
    assert body["personalized"] is False


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"item_id": "no-such-item"}, 404),
        ({"item_id": "X", "k": 0}, 422),
        ({"item_id": "X", "k": -3}, 422),
        ({"item_id": "X", "k": 1000}, 422),
        ({"item_id": "X", "k": "ten"}, 422),
        ({"item_id": "X", "k": 2.5}, 422),
        ({"item_id": ""}, 422),
        ({"item_id": "x" * 300}, 422),
        ({}, 422),
        ({"item_id": "X", "filters": {"max_price": -1}}, 422),
        ({"item_id": "X", "surprise": 1}, 422),
        ({"item_id": "X", "intent": "cheapest"}, 422),
        ({"item_id": "X", "intent": "Familiar"}, 422),
        ({"item_id": "X", "intent": None}, 422),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(client: TestClient, payload: dict, status: int) -> None:
    response = client.post("/v1/substitutes", json=payload)
    assert response.status_code == status
    assert response.json()["detail"]


def test_intent_in_post_get_and_batch(client: TestClient, item_id: str) -> None:
    engine = client.app.state.service.engine
    customer = str(engine.model.customers[0])
    query = {"item_id": item_id, "customer_id": customer, "k": 5}
    for intent in ("balanced", "familiar", "discover"):
        posted = client.post("/v1/substitutes", json={**query, "intent": intent})
        got = client.get(f"/v1/items/{item_id}/substitutes", params={"customer_id": customer, "k": 5,
                                                                     "intent": intent})
        assert posted.status_code == got.status_code == 200 and unsigned(posted.json()) == unsigned(got.json())
        assert posted.json()["intent"] == intent
        expected = engine.substitutes(item_id, customer, k=5, intent=intent)
        assert [s["item_id"] for s in posted.json()["substitutes"]] == [s.item_id for s in expected]
    default = client.post("/v1/substitutes", json=query).json()
    assert default["intent"] == "balanced"
    assert unsigned(default) == unsigned(client.post("/v1/substitutes", json={**query, "intent": "balanced"}).json())
    batch = client.post("/v1/substitutes/batch", json={"items": [item_id], "customer_id": customer,
                                                       "intent": "discover"})
    assert batch.status_code == 200 and [line["intent"] for line in batch.json()["lines"]] == ["discover"]
    bad = client.get(f"/v1/items/{item_id}/substitutes", params={"intent": "newest"})
    assert bad.status_code == 422 and "intent" in json.dumps(bad.json()["detail"])
    assert client.post("/v1/substitutes/batch", json={"items": [item_id], "intent": "x"}).status_code == 422


def test_unknown_item_message(client: TestClient) -> None:
    response = client.get("/v1/items/ünïcode-😀/substitutes")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown item 'ünïcode-😀'"}


def test_exclude_lists_empty_and_huge(client: TestClient, item_id: str) -> None:
    assert client.post("/v1/substitutes", json={"item_id": item_id, "exclude": []}).status_code == 200
    everything = client.app.state.service.engine.model.items["item_id"].head(9_000).tolist()
    response = client.post("/v1/substitutes", json={"item_id": item_id, "exclude": everything, "k": 10})
    assert response.status_code == 200
    assert not set(everything) & {s["item_id"] for s in response.json()["substitutes"]}
    too_many = client.post("/v1/substitutes", json={"item_id": item_id, "exclude": ["x"] * 10_001})
    assert too_many.status_code == 422


def test_wrong_content_type(client: TestClient, item_id: str) -> None:
    response = client.post("/v1/substitutes", content=json.dumps({"item_id": item_id}),
                           headers={"content-type": "text/plain"})
    assert response.status_code == 422 and response.json()["detail"]


def test_malformed_json_and_oversized_body(client: TestClient) -> None:
    broken = client.post("/v1/substitutes", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422
    huge = client.post("/v1/substitutes", content=b"{" + b" " * 2_000_000 + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "request body over" in huge.json()["detail"]


# every endpoint that reads a JSON body
JSON_ENDPOINTS = [("POST", "/v1/substitutes"), ("POST", "/v1/substitutes/batch"), ("POST", "/v1/feedback"),
                  ("PUT", "/v1/inventory"), ("PUT", "/v1/inventory/snapshot"), ("POST", "/v1/admin/reload")]
TOO_DEEP_BODIES = {"100k [": b"[" * 100_000, "100k {\"a\":": b'{"a":' * 100_000,
                   "100k [ closed": b"[" * 100_000 + b"]" * 100_000,
                   "100k {\"a\": closed": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                   "deep in a field": b'{"item_id":"1","exclude":' + b"[" * 100_000 + b"]" * 100_000 + b"}"}


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
def test_json_nested_too_deep_is_a_400_naming_the_problem(client: TestClient, item_id: str, method: str,
                                                          path: str) -> None:
    """json.loads raises RecursionError on these: a 400 that says why, never a 500; the next request works."""
    for name, body in TOO_DEEP_BODIES.items():
        response = client.request(method, path, content=body,
                                  headers={"content-type": "application/json", **AUTH})
        assert (response.status_code, response.json()) == (400, {"detail": TOO_DEEP}), name
        assert client.post("/v1/substitutes", json={"item_id": item_id}).status_code == 200


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
def test_json_nested_near_the_parsers_limit_is_a_4xx(client: TestClient, method: str, path: str) -> None:
    """Nesting json.loads just parses (or just fails to), in a field the 422 echoes back or at the top: a 4xx
    with a message at every depth (writing the echo back can hit the recursion limit too)."""
    for depth in range(600, 1101, 5):
        for body in (b'{"item_id":"1","surprise":' + b"[" * depth + b"]" * depth + b"}",
                     b'{"a":' * depth + b"1" + b"}" * depth):
            response = client.request(method, path, content=body,
                                      headers={"content-type": "application/json", **AUTH})
            assert response.status_code in (400, 422), (depth, response.status_code, response.text[:200])
            assert _parsed(response.text)["detail"]


def _parsed(text: str) -> dict:
    """``json.loads`` on a fresh thread: the echo of a body nested near the parser's limit parses there whatever
    the depth of the test's own stack (a test runner's frames count against the recursion limit too)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(json.loads, text).result()


def test_whole_order_over_http(client: TestClient, item_id: str) -> None:
    engine = client.app.state.service.engine
    lo, hi = engine.group_range(engine.index_of(item_id))
    same_group = [str(i) for i in engine.item_ids[lo:hi] if i != item_id][:2]
    body = {"items": [item_id, *same_group, "nope"], "order": same_group[:1] + ["other"], "k": 4,
            "customer_id": str(engine.model.customers[0]), "store_id": str(engine.model.stores[0])}
    response = client.post("/v1/substitutes/batch", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["unknown_items"] == ["nope"] and answer["personalized"] is True
    assert [line["item"]["item_id"] for line in answer["lines"]] == [item_id, *same_group]
    proposed = [s["item_id"] for line in answer["lines"] for s in line["substitutes"]]
    assert proposed and len(proposed) == len(set(proposed))
    assert not set(proposed) & {item_id, *same_group, "other"}
    single = client.post("/v1/substitutes", json={"item_id": item_id, "k": 4, "store_id": body["store_id"],
                                                  "customer_id": body["customer_id"], "exclude": body["items"]
                                                  + body["order"]}).json()
    assert unsigned(single) == unsigned(answer["lines"][0]), "the first line is the single-item answer"
    assert len({line["answer_id"] for line in answer["lines"]}) == len(answer["lines"]), "a signature per line"


@pytest.mark.parametrize("payload", [{"items": []}, {"items": ["1"] * 201}, {"items": [""]}, {"items": "1"},
                                     {"items": ["1"], "k": 0}, {"order": ["1"]}])
def test_bad_order_requests_are_422(client: TestClient, payload: dict) -> None:
    response = client.post("/v1/substitutes/batch", json=payload)
    assert response.status_code == 422 and response.json()["detail"]


def test_inventory_needs_the_token(client: TestClient, item_id: str) -> None:
    update = {"updates": [{"item_id": item_id, "store_id": "7", "in_stock": False}]}
    anonymous = TestClient(client.app)  # the same app, without the fixture's token
    assert anonymous.put("/v1/inventory", json=update).status_code == 401
    assert anonymous.put("/v1/inventory", json=update, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert anonymous.post("/v1/admin/reload").status_code == 401


def test_admin_is_closed_without_a_configured_token(model_dir: Path) -> None:
    with TestClient(create_app(Settings(model_path=model_dir, admin_token=None, state_path=None))) as client:
        response = client.post("/v1/admin/reload", headers=AUTH)
        assert response.status_code == 401 and "unknown or revoked" in response.json()["detail"]


def test_inventory_updates_change_answers_live(client: TestClient, item_id: str) -> None:
    here, there, other = (str(s) for s in client.app.state.service.engine.model.stores[:3])
    before = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": here, "k": 3}).json()
    before_there = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": there, "k": 3}).json()
    top = before["substitutes"][0]["item_id"]
    update = {"updates": [
        {"item_id": top, "store_id": here, "in_stock": False},
        {"item_id": item_id, "store_id": here, "in_stock": False, "restock_eta": "2026-12-01T08:00:00"},
        {"item_id": "not-in-model", "store_id": here, "in_stock": False},
        {"item_id": item_id, "store_id": other, "in_stock": True},
    ]}
    response = client.put("/v1/inventory", json=update, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"applied": 4, "unknown_items": ["not-in-model"]}
    after = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": here, "k": 3}).json()
    assert top not in [s["item_id"] for s in after["substitutes"]]
    assert after["restock_eta"] == "2026-12-01T08:00:00" and after["available_at"] == [other]
    there_after = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": there, "k": 3}).json()
    assert there_after["substitutes"] == before_there["substitutes"] and there_after["restock_eta"] is None


def test_an_unknown_store_is_404_until_stock_is_reported_for_it(client: TestClient, item_id: str) -> None:
    """A store the model never saw and nobody reported on gets a 404 naming it, not a list as if it had every
    item; one stock report makes it known, answered by the chain-level rules."""
    response = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": "no-such-store"})
    assert response.status_code == 404 and "no-such-store" in response.json()["detail"]
    batch = client.post("/v1/substitutes/batch", json={"items": [item_id], "store_id": "no-such-store"})
    assert batch.status_code == 404 and "no-such-store" in batch.json()["detail"]
    update = {"updates": [{"item_id": item_id, "store_id": "no-such-store", "in_stock": False}]}
    assert client.put("/v1/inventory", json=update, headers=AUTH).status_code == 200
    known = client.post("/v1/substitutes", json={"item_id": item_id, "store_id": "no-such-store"}).json()
    online = client.post("/v1/substitutes", json={"item_id": item_id}).json()
    assert known["store_known"] is True and known["substitutes"] == online["substitutes"]
    assert {s["availability"] for s in known["substitutes"]} == {"likely"}


def test_a_restock_date_given_through_the_python_api_as_a_pandas_timestamp(client: TestClient, item_id: str) -> None:
    """The answer's JSON is written from the engine's types: a datetime subclass in the inventory is written too."""
    engine = client.app.state.service.engine
    engine.inventory.apply([StockUpdate(item_id=item_id, store_id="12", in_stock=False,  # a report makes it known
                                        restock_eta=pd.Timestamp("2026-12-03 09:30", tz="UTC"))])
    response = client.get(f"/v1/items/{item_id}/substitutes", params={"store_id": "12", "k": 2})
    assert response.status_code == 200 and response.json()["restock_eta"] == "2026-12-03T09:30:00+00:00"


def test_reload_swaps_and_refuses_a_corrupt_model(client: TestClient, model_dir: Path, tmp_path: Path,
                                                   item_id: str) -> None:
    old_version = client.get("/readyz").json()["model_version"]
    ok = client.post("/v1/admin/reload", headers=AUTH)
    assert ok.status_code == 200 and ok.json() == {"model_version": old_version, "previous_version": old_version}

    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / FACTORS_FILE).write_bytes(b"garbage")
    refused = client.post("/v1/admin/reload", json={"model_path": str(corrupt)}, headers=AUTH)
    assert refused.status_code == 409
    assert "checksum mismatch" in refused.json()["detail"]
    assert client.get("/readyz").json()["model_version"] == old_version
    assert client.post("/v1/substitutes", json={"item_id": item_id}).status_code == 200

    renamed = tmp_path / "renamed"
    shutil.copytree(model_dir, renamed)
    manifest = json.loads((renamed / MANIFEST).read_text())
    manifest["version"] = "v-next"
    (renamed / MANIFEST).write_text(json.dumps(manifest))
    swapped = client.post("/v1/admin/reload", json={"model_path": str(renamed)}, headers=AUTH)
    assert swapped.json() == {"model_version": "v-next", "previous_version": old_version}
    assert client.post("/v1/substitutes", json={"item_id": item_id}).json()["model_version"] == "v-next"


@pytest.mark.parametrize("update", [
    {"item_id": "1", "in_stock": "yes"},
    {"item_id": "1", "in_stock": 1},
    {"item_id": "1", "in_stock": False, "restock_eta": 1700000000},
    {"item_id": "1", "in_stock": False, "restock_eta": "next tuesday"},
    {"item_id": "", "in_stock": False},
    {"in_stock": False},
])
def test_bad_inventory_updates_are_rejected(client: TestClient, update: dict) -> None:
    response = client.put("/v1/inventory", json={"updates": [update]}, headers=AUTH)
    assert response.status_code == 422 and response.json()["detail"]


def test_access_log_is_one_json_line_per_request_without_ids(client: TestClient, item_id: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recsys.access"):
        client.post("/v1/substitutes", json={"item_id": item_id, "customer_id": "secret-customer"})
    (record,) = [r for r in caplog.records if r.name == "recsys.access"]
    line = json.loads(record.getMessage())
    assert line["endpoint"] == "/v1/substitutes" and line["status"] == 200 and line["ms"] > 0
    assert "secret-customer" not in record.getMessage() and item_id not in record.getMessage()


def test_health_ready_metrics(client: TestClient, item_id: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    client.post("/v1/substitutes", json={"item_id": item_id})
    client.post("/v1/substitutes", json={"item_id": "nope"})
    text = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/v1/substitutes",method="POST",status="200"} 1.0' in text
    assert 'recsys_requests_total{endpoint="/v1/substitutes",method="POST",status="404"} 1.0' in text
    assert "recsys_request_seconds_bucket" in text
    assert 'recsys_model_info{version="' in text


def test_not_ready_without_a_model(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(model_path=tmp_path / "none", state_path=None, auth="open"))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/substitutes", json={"item_id": "1"})
        assert response.status_code == 503 and response.json()["detail"] == "no model loaded yet"


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/substitutes", "/v1/substitutes/batch", "/v1/items/{item_id}/substitutes", "/v1/inventory",
            "/v1/admin/reload", "/healthz", "/readyz", "/metrics"} <= set(paths)


def test_reasons_in_the_configured_locale_and_currency_with_price_protection(model_dir: Path, tmp_path: Path,
                                                                             item_id: str) -> None:
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3",
                        locale="de", currency="EUR", price_protection=True)
    with TestClient(create_app(settings), headers=AUTH) as client:
        answer = client.post("/v1/substitutes", json={"item_id": item_id, "k": 10}).json()
    x_price = answer["item"]["price"]
    assert answer["substitutes"]
    for s in answer["substitutes"]:
        assert len(s["reason_codes"]) == len(s["reasons"]) and not any("$" in r for r in s["reasons"])
        assert all(c.get("currency", "EUR") == "EUR" for c in s["reason_codes"])
        assert s["shopper_price"] == min(s["price"], x_price)
    assert "gleiche Art: " + answer["item"]["product_type"].lower() in answer["substitutes"][0]["reasons"]


def test_an_unknown_locale_or_currency_stops_the_start_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="locale 'xx'"):
        Settings(locale="xx")
    with pytest.raises(ValueError, match="currency"):
        Settings(currency="euro")
