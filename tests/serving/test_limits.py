"""The limits that keep one client from starving the others: the per-caller rate limit (token buckets, on an
injected clock), the cap on requests in flight, and the cost cap of batch requests, through the real app."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from recsys.state.keys import create_key
from serving.app import create_app
from serving.limits import (
    ConcurrencyLimitMiddleware,
    RateLimiter,
    batch_cost_error,
    rate_limited,
    retry_after,
)
from serving.settings import Settings

WAIT_S = 30  # only a bound on a broken test: nothing below waits on the clock when it passes
TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def test_a_bucket_gives_the_burst_then_the_rate(clock: Clock) -> None:
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.check("key") for _ in range(3)] == [None, None, None]
    assert limiter.check("key") == pytest.approx(0.5)  # empty: one token comes in 1 / 2 s
    clock.now += 0.25
    assert limiter.check("key") == pytest.approx(0.25)  # half a token, and a refusal takes none
    clock.now += 0.25
    assert limiter.check("key") is None
    assert limiter.check("key") == pytest.approx(0.5)


def test_a_bucket_refills_to_the_burst_and_no_more(clock: Clock) -> None:
    limiter = RateLimiter(10.0, 4, clock=clock)
    for _ in range(4):
        assert limiter.check("key") is None
    clock.now += 3600
    assert [limiter.check("key") for _ in range(5)] == [None, None, None, None, pytest.approx(0.1)]


def test_callers_have_their_own_buckets(clock: Clock) -> None:
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.check("key-a") is None
    assert limiter.check("key-a") == pytest.approx(1.0)
    assert limiter.check("ip:10.0.0.1") is None
    assert limiter.check("key-b") is None


def test_a_zero_rate_is_no_limit(clock: Clock) -> None:
    limiter = RateLimiter(0.0, 1, clock=clock)
    assert not limiter.enabled
    assert all(limiter.check("key") is None for _ in range(1000))
    assert len(limiter) == 0


def test_the_least_recently_used_bucket_is_forgotten_first(clock: Clock) -> None:
    limiter = RateLimiter(1.0, 1, max_callers=2, clock=clock)
    assert limiter.check("a") is None and limiter.check("b") is None
    assert limiter.check("a") is not None  # a used last: b goes when c comes
    assert limiter.check("c") is None
    assert len(limiter) == 2
    assert limiter.check("a") is not None  # still remembered
    assert limiter.check("b") is None  # forgotten: a full bucket again
    assert len(limiter) == 2


def test_invalid_limits_are_refused() -> None:
    for rate, burst in [(-1.0, 1), (1.0, 0)]:
        with pytest.raises(ValueError):
            RateLimiter(rate, burst)


def test_threads_share_one_bucket_exactly(clock: Clock) -> None:
    """With the clock stopped, callers on many threads get exactly the burst between them."""
    limiter = RateLimiter(1.0, 500, clock=clock)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: limiter.check("key"), range(2000)))
    assert sum(answer is None for answer in answers) == 500


def test_retry_after_is_whole_seconds_rounded_up_at_least_one() -> None:
    assert [retry_after(s) for s in (0.0, 0.001, 1.0, 1.2, 59.5)] == ["1", "1", "1", "2", "60"]


def test_the_429_names_the_limit_and_when_to_retry() -> None:
    error = rate_limited(2.5, RateLimiter(200.0, 400))
    assert error.status_code == 429
    assert error.headers == {"Retry-After": "3"}
    assert "200 requests/s" in error.detail and "400" in error.detail
    assert "RECSYS_RATE_LIMIT_PER_S" in error.detail and "retry after 3 s" in error.detail


def test_the_app_answers_429_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    """The access middleware counts each caller against the app's limiter: a request without a key by its
    client address (development mode), one with a key by the key's name."""
    app = create_app(Settings(model_path=model_dir, state_path=tmp_path / "state.sqlite3", auth="open",
                              rate_limit_per_s=0.01, rate_limit_burst=2))
    limiter = app.state.rate_limiter
    assert (limiter.rate_per_s, limiter.burst) == (0.01, 2)
    with TestClient(app) as client:
        service = client.app.state.service
        key = create_key(service.store, "b", frozenset({"read"}))
        service.refresh_access()
        assert [client.get("/v1/model").status_code for _ in range(2)] == [200, 200]
        refused = client.get("/v1/model")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "rate limit exceeded" in refused.json()["detail"]
        assert client.get("/v1/model", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/healthz").status_code == 200, "only /v1 is limited"
        metrics = client.get("/metrics").text
        assert 'method="GET",status="429"} 1.0' in metrics


async def _call(app: ConcurrencyLimitMiddleware, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through an ASGI app: its status, headers and body."""
    scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start, body = messages[0], messages[1]
    return start["status"], dict(start["headers"]), body["body"]


def test_requests_over_the_concurrency_limit_get_503_at_once() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        entered = 0

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal entered
            entered += 1
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        limited = ConcurrencyLimitMiddleware(slow, max_concurrency=2)
        held = [asyncio.create_task(_call(limited, "/v1/substitutes")) for _ in range(2)]
        while entered < 2:
            await asyncio.sleep(0)
        assert limited.in_flight == 2
        status, headers, body = await _call(limited, "/v1/substitutes")  # answered without waiting for release
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert headers[b"content-type"] == b"application/json"
        assert "RECSYS_MAX_CONCURRENCY" in json.loads(body)["detail"]
        health = [asyncio.create_task(_call(limited, path)) for path in ("/healthz", "/readyz", "/metrics")]
        while entered < 5:  # the health paths went through, and are not counted
            await asyncio.sleep(0)
        assert limited.in_flight == 2
        release.set()
        assert [(await task)[0] for task in [*held, *health]] == [200] * 5
        assert limited.in_flight == 0
        assert (await _call(limited, "/v1/substitutes"))[0] == 200

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S))


def test_the_slot_is_freed_when_the_app_fails() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        limited = ConcurrencyLimitMiddleware(failing, max_concurrency=1)
        with pytest.raises(RuntimeError):
            await _call(limited, "/v1/substitutes")
        assert limited.in_flight == 0

    asyncio.run(scenario())


def test_zero_concurrency_is_no_limit() -> None:
    async def scenario() -> None:
        async def ok(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        limited = ConcurrencyLimitMiddleware(ok, max_concurrency=0)
        assert (await _call(limited, "/v1/substitutes"))[0] == 200

    asyncio.run(scenario())


def test_the_app_refuses_over_its_concurrency_limit_but_not_health(model_dir: Path, tmp_path: Path) -> None:
    """Through the real app: one slow request holds the only slot; the next is a 503 counted in the metrics,
    and health and readiness still answer."""
    app = create_app(Settings(model_path=model_dir, state_path=tmp_path / "state.sqlite3", max_concurrency=1))
    entered, release = threading.Event(), threading.Event()

    @app.get("/slow")
    def slow() -> dict[str, bool]:  # in the thread pool: the event loop stays free for the requests below
        entered.set()
        return {"released": release.wait(WAIT_S)}

    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.get, "/slow")
        assert entered.wait(WAIT_S)
        try:
            refused = client.get("/v1/items/any/substitutes")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "in flight" in refused.json()["detail"]
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            assert 'method="GET",status="503"} 1.0' in client.get("/metrics").text
        finally:
            release.set()
        assert held.result(WAIT_S).json() == {"released": True}
        assert client.get("/healthz").status_code == 200


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3")
    with TestClient(create_app(settings)) as client:
        yield client


def _batch(client: TestClient, lines: int, k: int) -> httpx.Response:
    items = client.app.state.service.engine.model.items["item_id"].astype(str).tolist()
    return client.post("/v1/substitutes/batch", json={"items": items[:lines], "k": k}, headers=AUTH)


def test_a_batch_over_the_cost_cap_is_413(client: TestClient) -> None:
    assert Settings().max_batch_cost == 2000
    refused = _batch(client, 200, 11)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert "200 lines x k=11 = 2200" in detail and "at most 2000" in detail and "RECSYS_MAX_BATCH_COST" in detail


def test_a_batch_at_the_cost_cap_is_answered(client: TestClient) -> None:
    answered = _batch(client, 200, 10)
    assert answered.status_code == 200
    assert len(answered.json()["lines"]) == 200


def test_the_cost_cap_is_a_setting(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3",
                        max_batch_cost=6)
    with TestClient(create_app(settings)) as client:
        assert _batch(client, 2, 3).status_code == 200
        assert _batch(client, 2, 4).status_code == 413
        assert _batch(client, 7, 1).status_code == 413


def test_batch_cost_error() -> None:
    assert batch_cost_error(200, 10, 2000) is None
    error = batch_cost_error(3, 5, 14)
    assert error is not None and error.status_code == 413
