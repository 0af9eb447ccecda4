"""The service as a hostile client finds it: no key, unknown, revoked and wrong-scope keys, forged, changed,
expired and replayed answer ids, decisions on items never shown, floods and oversized batches. Every refusal is
a 4xx that names the problem, never a 500, and every acknowledged write is kept."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.state.answers import AnswerSigner
from recsys.state.keys import create_key
from serving.app import create_app
from serving.settings import Settings

TOKEN = "operator-token"
SCOPES = ("read", "profiles", "write", "admin")


def _app(model_dir: Path, state: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=state,
                                          state_poll_s=0.1, **settings)))


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with _app(model_dir, tmp_path / "state.sqlite3") as test_client:
        yield test_client


def _key(client: TestClient, name: str, *scopes: str) -> dict[str, str]:
    """A new key's Authorization header, known to the app at once."""
    service = client.app.state.service
    key = create_key(service.store, name, frozenset(scopes))
    service.refresh_access()
    return {"Authorization": f"Bearer {key}"}


def _popular(client: TestClient) -> tuple[str, str]:
    engine = client.app.state.service.engine
    item = str(engine.model.items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    return item, str(engine.model.customers[0])


def _calls(item: str, customer: str) -> dict[str, list[tuple[str, str, dict[str, object]]]]:
    """One call of every /v1 endpoint, by the scope it needs."""
    return {
        "read": [("POST", "/v1/substitutes", {"json": {"item_id": item}}),
                 ("GET", f"/v1/items/{item}/substitutes", {}),
                 ("POST", "/v1/substitutes/batch", {"json": {"items": [item]}}),
                 ("GET", "/v1/items", {"params": {"q": "a"}}),
                 ("GET", "/v1/model", {})],
        "profiles": [("GET", f"/v1/customers/{customer}/profile", {})],
        "write": [("POST", "/v1/feedback", {"json": {"answer_id": "x.y", "chosen": item}}),
                  ("PUT", "/v1/inventory", {"json": {"updates": [{"item_id": item, "in_stock": True}]}}),
                  ("PUT", "/v1/inventory/snapshot", {"json": {"store_id": "access", "unlisted": "unchanged",
                                                              "items": [{"item_id": item, "in_stock": True}]}})],
        "admin": [("POST", "/v1/admin/reload", {})],
    }


def test_every_v1_call_needs_a_key_with_its_scope(client: TestClient) -> None:
    item, customer = _popular(client)
    calls = _calls(item, customer)
    keys = {scope: _key(client, f"only-{scope}", scope) for scope in SCOPES}
    unknown = {"Authorization": "Bearer rsk_" + "A" * 43}
    for scope, requests in calls.items():
        for method, path, options in requests:
            anonymous = client.request(method, path, **options)  # type: ignore[arg-type]
            assert anonymous.status_code == 401, (path, anonymous.text)
            assert anonymous.headers["www-authenticate"] == "Bearer" and scope in anonymous.json()["detail"]
            assert client.request(method, path, headers=unknown, **options).status_code == 401  # type: ignore[arg-type]
            not_bearer = client.request(method, path, headers={"Authorization": "Basic dXNlcjpwYXNz"}, **options)  # type: ignore[arg-type]
            assert not_bearer.status_code == 401 and "Bearer" in not_bearer.json()["detail"]
            for other, header in keys.items():
                response = client.request(method, path, headers=header, **options)  # type: ignore[arg-type]
                if other in (scope, "admin"):
                    # allowed through: what follows is the endpoint's own answer (the feedback's made-up
                    # answer id is refused by the endpoint itself, not by access control)
                    assert response.status_code not in (401, 403), (path, other, response.text)
                else:
                    assert response.status_code == 403, (path, other, response.status_code)
                    assert f"only-{other}" in response.json()["detail"] and scope in response.json()["detail"]
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_development_mode_opens_reads_and_feedback_only(model_dir: Path, tmp_path: Path) -> None:
    with _app(model_dir, tmp_path / "state.sqlite3", auth="open") as client:
        item, customer = _popular(client)
        calls = _calls(item, customer)
        for method, path, options in calls["read"] + calls["profiles"]:
            assert client.request(method, path, **options).status_code == 200, path  # type: ignore[arg-type]
        answer = client.post("/v1/substitutes", json={"item_id": item}).json()
        decision = {"answer_id": answer["answer_id"], "accepted": answer["substitutes"][0]["item_id"]}
        assert client.post("/v1/feedback", json=decision).status_code == 201
        for method, path, options in calls["admin"] + calls["write"][1:]:
            assert client.request(method, path, **options).status_code == 401, path  # type: ignore[arg-type]
        stock = calls["write"][1]
        assert client.request(stock[0], stock[1], headers={"Authorization": f"Bearer {TOKEN}"},
                              **stock[2]).status_code == 200  # type: ignore[arg-type]


def test_a_key_revoked_on_one_replica_is_refused_by_another(model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with _app(model_dir, state) as first, _app(model_dir, state) as second:
        item, _ = _popular(first)
        store = first.app.state.service.store
        key = {"Authorization": f"Bearer {create_key(store, 'storefront', frozenset({'read'}))}"}
        deadline = time.monotonic() + 10
        while second.post("/v1/substitutes", json={"item_id": item}, headers=key).status_code != 200:
            assert time.monotonic() < deadline, "the other replica never learned the new key"
            time.sleep(0.05)
        assert store.revoke_key("storefront")
        revoked_at = time.monotonic()
        while second.post("/v1/substitutes", json={"item_id": item}, headers=key).status_code == 200:
            assert time.monotonic() - revoked_at < 2.0, "a revoked key still works on the other replica after 2 s"
            time.sleep(0.05)
        refused = second.post("/v1/substitutes", json={"item_id": item}, headers=key)
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def _answer(client: TestClient, item: str, customer: str, headers: dict[str, str]) -> dict:
    response = client.post("/v1/substitutes", json={"item_id": item, "customer_id": customer, "k": 5},
                           headers=headers)
    assert response.status_code == 200
    return response.json()


def _swap_payload(answer_id: str, change: dict[int, object]) -> str:
    """The answer id with fields of its signed payload changed, the signature kept."""
    payload, tag = answer_id.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for index, value in change.items():
        fields[index] = value
    changed = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{changed}.{tag}"


def test_feedback_is_bound_to_an_answer_the_service_gave(client: TestClient) -> None:
    item, customer = _popular(client)
    shop = _key(client, "storefront", "read", "write")
    answer = _answer(client, item, customer, shop)
    answer_id = answer["answer_id"]
    shown = [s["item_id"] for s in answer["substitutes"]]
    never_shown = next(str(i) for i in client.app.state.service.engine.item_ids if str(i) not in {*shown, item})
    other_answer = _answer(client, item, customer, shop)
    service = client.app.state.service
    forger = AnswerSigner(b"a guess at the signing key, 32 bytes or more")
    old = service.signer.sign(answer["model_version"], item, customer, answer["store_id"], shown,
                              time.time() - 8 * 24 * 3600)
    refusals = {
        "forged": (forger.sign(answer["model_version"], item, customer, None, [never_shown], time.time()),
                   {"accepted": never_shown}, "does not verify"),
        "shown changed": (_swap_payload(answer_id, {4: [never_shown]}), {"accepted": never_shown}, "does not verify"),
        "customer changed": (_swap_payload(answer_id, {2: "someone else"}), {"accepted": shown[0]}, "does not verify"),
        "not base64": ("!!!.???", {"accepted": shown[0]}, "does not verify"),
        "no separator": ("abc", {"accepted": shown[0]}, "malformed"),
        "expired": (old, {"accepted": shown[0]}, "expired"),
        "accepted not shown": (answer_id, {"accepted": never_shown}, "not among"),
        "rejected not shown": (answer_id, {"rejected": [shown[0], never_shown]}, "not among"),
    }
    for case, (given_id, decision, message) in refusals.items():
        response = client.post("/v1/feedback", json={"answer_id": given_id, **decision}, headers=shop)
        assert response.status_code == 422, (case, response.text)
        assert message in response.json()["detail"], (case, response.json())

    first = client.post("/v1/feedback", json={"answer_id": answer_id, "accepted": shown[1], "rejected": [shown[0]]},
                        headers=shop)
    assert first.status_code == 201
    retry = client.post("/v1/feedback", json={"answer_id": answer_id, "rejected": [shown[0]], "accepted": shown[1]},
                        headers=shop)
    assert retry.status_code == 200 and retry.json() == {"id": first.json()["id"], "duplicate": True}
    changed_mind = client.post("/v1/feedback", json={"answer_id": answer_id, "accepted": shown[2]}, headers=shop)
    assert changed_mind.status_code == 409 and "first decision stands" in changed_mind.json()["detail"]
    manual = client.post("/v1/feedback", json={"answer_id": other_answer["answer_id"], "chosen": never_shown},
                         headers=shop)
    assert manual.status_code == 201, "a manual pick may be any item"

    stored = service.store.feedback.feedback()
    assert [f.answer_id for f in stored] == [answer_id, other_answer["answer_id"]], "one row per answer, no more"
    kept = stored[0]
    assert (kept.item_id, kept.customer_id, kept.shown, kept.accepted, kept.rejected, kept.model_version) == \
        (item, customer, tuple(shown), shown[1], (shown[0],), answer["model_version"])


def test_a_flood_gets_429_with_retry_after_and_an_oversized_batch_413(model_dir: Path, tmp_path: Path) -> None:
    with _app(model_dir, tmp_path / "state.sqlite3", rate_limit_per_s=1.0, rate_limit_burst=5,
              max_batch_cost=50) as client:
        item, _ = _popular(client)
        flooder, other = _key(client, "flooder", "read"), _key(client, "other", "read")
        statuses = [client.post("/v1/substitutes", json={"item_id": item}, headers=flooder).status_code
                    for _ in range(20)]
        assert statuses[:5] == [200] * 5 and statuses.count(429) >= 14
        limited = client.post("/v1/substitutes", json={"item_id": item}, headers=flooder)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["detail"]
        assert client.post("/v1/substitutes", json={"item_id": item}, headers=other).status_code == 200, \
            "one caller's flood does not limit another"

        big = client.post("/v1/substitutes/batch", json={"items": [item] * 6, "k": 10}, headers=other)
        assert big.status_code == 413 and "60" in big.json()["detail"] and "50" in big.json()["detail"]
        assert client.post("/v1/substitutes/batch", json={"items": [item] * 5, "k": 10},
                           headers=other).status_code == 200


def test_no_key_reaches_a_log_or_a_metric(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    item, _ = _popular(client)
    header = _key(client, "storefront", "read")
    key = header["Authorization"].removeprefix("Bearer ")
    with caplog.at_level("INFO"):
        assert client.post("/v1/substitutes", json={"item_id": item}, headers=header).status_code == 200
        assert client.post("/v1/substitutes", json={"item_id": item},
                           headers={"Authorization": f"Bearer {key}x"}).status_code == 401
    assert caplog.records, "the access log wrote its lines"
    assert key not in caplog.text and TOKEN not in caplog.text
    metrics = client.get("/metrics").text
    assert key not in metrics and "storefront" not in metrics


def test_the_openapi_schema_names_each_operations_scope(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    item, customer = _popular(client)
    for scope, requests in _calls(item, customer).items():
        for method, path, _ in requests:
            template = path.replace(f"/{item}/", "/{item_id}/").replace(f"/{customer}/", "/{customer_id}/")
            operation = schema["paths"][template][method.lower()]
            assert operation["security"] == [{"apiKey": []}] and f"`{scope}` scope" in operation["description"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
