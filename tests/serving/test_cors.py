"""CORS (RECSYS_CORS_ORIGINS): the origins named get their preflights and read the answers, any other origin gets
no CORS header at all, and with none named there is no CORS. A real browser checks the same in
tests/browser/test_cross_origin_page.py."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.app import create_app
from serving.cors import MAX_AGE_S
from serving.settings import Settings

SHOP = "https://shop.example.com"
DEV = "http://127.0.0.1:5173"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, x-request-id"}


def _client(model_dir: Path, tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(model_path=model_dir, state_path=tmp_path / "state.sqlite3",
                                          admin_token="cors-token", **settings)))


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with _client(model_dir, tmp_path, cors_origins=f"{SHOP},{DEV}", auth="open") as test_client:
        yield test_client


@pytest.fixture()
def item_id(client: TestClient) -> str:
    items = client.app.state.service.engine.model.items
    return str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])


def _cors_headers(headers: object) -> dict[str, str]:
    return {name: value for name, value in dict(headers).items() if name.lower().startswith("access-control-")}


def test_an_allowed_origin_gets_its_preflight(client: TestClient) -> None:
    response = client.options("/v1/substitutes", headers={"Origin": DEV, **PREFLIGHT})
    assert response.status_code == 200
    headers = response.headers
    assert headers["access-control-allow-origin"] == DEV
    assert set(headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
    assert {"authorization", "content-type", "x-request-id"} <= {
        h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert headers["access-control-max-age"] == str(MAX_AGE_S)
    assert "access-control-allow-credentials" not in headers  # keys travel in a header, never in cookies
    assert "origin" in headers["vary"].lower()
    # answered inside the observability middleware: tagged, timed and counted like any request
    assert headers["x-request-id"] and headers["server-timing"].startswith("app;dur=")
    counted = client.app.state.metrics.registry.get_sample_value(
        "recsys_requests_total", {"endpoint": "unmatched", "method": "OPTIONS", "status": "200"})
    assert counted == 1


def test_a_preflight_for_a_header_the_api_does_not_read_is_refused(client: TestClient) -> None:
    response = client.options("/v1/substitutes", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"})
    assert response.status_code == 400


def test_an_allowed_origin_reads_the_answer(client: TestClient, item_id: str) -> None:
    response = client.post("/v1/substitutes", json={"item_id": item_id, "k": 3}, headers={"Origin": SHOP})
    assert response.status_code == 200 and response.json()["substitutes"]
    assert response.headers["access-control-allow-origin"] == SHOP
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-request-id", "server-timing", "retry-after"}
    assert "access-control-allow-credentials" not in response.headers
    assert "origin" in response.headers["vary"].lower()
    # errors too, so a page can read why
    missing = client.post("/v1/substitutes", json={"item_id": "no-such-item"}, headers={"Origin": SHOP})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == SHOP
    searched = client.get("/v1/items", params={"q": "milk"}, headers={"Origin": DEV})
    assert searched.headers["access-control-allow-origin"] == DEV


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost:5173", "https://shop.example.com:8443",
                                    "http://shop.example.com", "null"])
def test_any_other_origin_gets_no_cors_headers(client: TestClient, item_id: str, origin: str) -> None:
    response = client.post("/v1/substitutes", json={"item_id": item_id, "k": 3}, headers={"Origin": origin})
    assert response.status_code == 200  # the server answers; the browser keeps it from the page
    assert _cors_headers(response.headers) == {}
    assert "origin" in response.headers["vary"].lower()  # a cache must not hand this to an allowed origin
    preflight = client.options("/v1/substitutes", headers={"Origin": origin, **PREFLIGHT})
    assert preflight.status_code == 400
    assert _cors_headers(preflight.headers) == {}


def test_a_preflight_needs_no_api_key(model_dir: Path, tmp_path: Path) -> None:
    """With keys required, the preflight (which a browser sends without the Authorization header) still passes;
    the request itself needs its key, and its refusal is readable by the page."""
    with _client(model_dir, tmp_path, cors_origins=SHOP, auth="keys") as client:
        preflight = client.options("/v1/substitutes", headers={"Origin": SHOP, **PREFLIGHT})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == SHOP
        refused = client.post("/v1/substitutes", json={"item_id": "x"}, headers={"Origin": SHOP})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == SHOP


def test_no_cors_when_no_origin_is_named(model_dir: Path, tmp_path: Path) -> None:
    with _client(model_dir, tmp_path, auth="open") as client:
        item = str(client.app.state.service.engine.model.items["item_id"].iloc[0])
        response = client.post("/v1/substitutes", json={"item_id": item, "k": 3}, headers={"Origin": SHOP})
        assert response.status_code == 200
        assert _cors_headers(response.headers) == {} and "vary" not in response.headers
        preflight = client.options("/v1/substitutes", headers={"Origin": SHOP, **PREFLIGHT})
        assert preflight.status_code == 405 and _cors_headers(preflight.headers) == {}


def test_origins_are_read_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", " https://Shop.Example.com/ ,http://127.0.0.1:5173,,"
                                              "https://shop.example.com")
    assert Settings().cors_origin_list() == (SHOP, DEV)  # as browsers send them, once each
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "")
    assert Settings().cors_origin_list() == ()
    monkeypatch.delenv("RECSYS_CORS_ORIGINS")
    assert Settings().cors_origin_list() == ()


@pytest.mark.parametrize("value", ["*", "shop.example.com", "https://shop.example.com/api", "https://*.example.com",
                                   "https://shop.example.com?x=1", "https://user@shop.example.com"])
def test_anything_but_an_origin_stops_the_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", f"{SHOP},{value}")
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings()
