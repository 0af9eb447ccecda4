"""Limits that keep one client from starving the others: a per-caller rate limit (token buckets), a server-wide
cap on requests in flight (an ASGI middleware), and the cost cap of a batch request (checked in its route).

Both limits are per process: with R replicas of W workers each, a caller can get R x W times the rate limit and
the service R x W times the concurrency limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.responses import send_error

# never refused: a load balancer must still see a busy replica as alive and ready, and the metrics scrape is what
# shows the refusals; all three answer from memory
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_CALLERS = 10_000  # about 3 MB of buckets; a forgotten caller only gets a full bucket again


class RateLimiter:
    """A token bucket per caller: ``burst`` requests at once, then ``rate_per_s`` a second on average.

    A caller is a name: an API key's name, or ``ip:<address>`` for callers without a key. ``rate_per_s`` 0 turns
    the limit off. At most ``max_callers`` buckets are kept: the one used least recently is forgotten first, which
    at worst gives a caller idle that long a full bucket again (a bucket idle for ``burst / rate_per_s`` seconds
    is full anyway)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_callers: int = MAX_CALLERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s < 0 or burst < 1 or max_callers < 1:
            raise ValueError(f"need rate_per_s >= 0, burst >= 1, max_callers >= 1; got {rate_per_s}, {burst}, "
                             f"{max_callers}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._full = float(burst)
        self.max_callers = max_callers
        self._clock = clock
        # caller -> [tokens left, clock at the last update]: a list, updated in place, allocates nothing
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        # requests reach it from the event loop and from the thread pool (plain def dependencies)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def check(self, caller: str) -> float | None:
        """Take a token for ``caller``: None when the request may go ahead, else the seconds until it may."""
        if self.rate_per_s <= 0:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= self.max_callers:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[caller] = [self._full, now]
            else:
                self._buckets.move_to_end(caller)
                bucket[0] = min(self._full, bucket[0] + max(0.0, now - bucket[1]) * self.rate_per_s)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return None
            return (1.0 - bucket[0]) / self.rate_per_s

    def describe(self) -> str:
        return (f"{self.rate_per_s:g} requests/s with bursts of {self.burst} "
                f"(RECSYS_RATE_LIMIT_PER_S, RECSYS_RATE_LIMIT_BURST)")

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1 (0 would invite an immediate retry)."""
    return str(max(1, math.ceil(wait_s)))


def rate_limited(wait_s: float, limiter: RateLimiter) -> HTTPException:
    """The 429 for a caller over ``limiter``'s rate, who may retry in ``wait_s`` seconds."""
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                         f"rate limit exceeded: {limiter.describe()} per caller; retry after {retry_after(wait_s)} s",
                         headers={"Retry-After": retry_after(wait_s)})


class ConcurrencyLimitMiddleware:
    """Answers 503 with ``Retry-After: 1`` at once when ``max_concurrency`` HTTP requests are already in flight in
    this process, rather than queueing them until every caller times out. ``max_concurrency`` 0 turns it off.

    Plain ASGI, like :class:`serving.metrics.ObservabilityMiddleware`. The count needs no lock: every request
    enters and leaves on the one event loop, with no ``await`` between the check and the increment."""

    def __init__(self, app: ASGIApp, max_concurrency: int, unlimited_paths: Iterable[str] = UNLIMITED_PATHS) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.unlimited_paths = frozenset(unlimited_paths)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_concurrency <= 0 or scope["path"] in self.unlimited_paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            await send_error(send, status.HTTP_503_SERVICE_UNAVAILABLE,
                             f"server busy: {self.max_concurrency} requests in flight (RECSYS_MAX_CONCURRENCY); retry",
                             [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1



def batch_cost_error(lines: int, k: int, max_cost: int) -> HTTPException | None:
    """The 413 for a batch of ``lines`` x ``k`` substitutes over ``max_cost`` (RECSYS_MAX_BATCH_COST), else None.
    The answer grows with lines x k (about 450 bytes a substitute), so that product is what is capped."""
    if lines * k <= max_cost:
        return None
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"{lines} lines x k={k} = {lines * k} substitutes asked for, at most {max_cost} in one "
                         f"request (RECSYS_MAX_BATCH_COST); split the order or lower k")
