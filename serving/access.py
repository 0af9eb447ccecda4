"""Who may call what: API keys with scopes (:mod:`recsys.state.keys`), the operator's admin token, and the
development mode that leaves reads and feedback open.

:class:`AccessMiddleware` checks every ``/v1`` request before routing, by the scope its path needs
(:data:`PATH_SCOPES`). A path under ``/v1`` that the table does not name needs ``admin``, so a new endpoint is
closed until it is given a scope here. A missing or unknown key is 401, a key without the scope 403, a caller over
its rate limit 429; the request's body is not even read. The key's name (never the key) goes to the request's
state, where the access log finds it. Checking in a middleware rather than a FastAPI dependency costs a few
microseconds instead of a dependency resolution, on every request.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.state.keys import Keyring
from serving.limits import RateLimiter, rate_limited
from serving.responses import send_error

#: what a request with no key is called in the development mode (rate-limited per client address)
ANONYMOUS: Final[str] = "anonymous"
ADMIN: Final[str] = "admin-token"
_CHALLENGE: Final[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Access:
    """The credentials one process accepts: the keys it last read from the state (replaced whole by the
    state's follower) and the admin token from the settings."""

    def __init__(self, mode: str, admin_token: str | None, keyring: Keyring | None = None) -> None:
        self.open = mode == "open"
        self._admin = admin_token.encode() if admin_token else None
        self.keyring = keyring if keyring is not None else Keyring()

    def caller(self, authorization: str | None, scope: str, open_in_development: bool) -> str:
        """The name of who sent ``authorization`` (an ``Authorization`` header's value) if it may use ``scope``;
        raises the 401 or 403 :class:`HTTPException` that says why not."""
        if authorization is None:
            if self.open and open_in_development:
                return ANONYMOUS
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                f"this call needs an API key with the {scope!r} scope: send "
                                "'Authorization: Bearer <key>'", headers=_CHALLENGE)
        kind, _, token = authorization.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the Authorization header must be 'Bearer <key>'",
                                headers=_CHALLENGE)
        if self._admin is not None and secrets.compare_digest(token.encode("utf-8", "replace"), self._admin):
            return ADMIN
        key = self.keyring.find(token)
        if key is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers=_CHALLENGE)
        if not key.allows(scope):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the key {key.name!r} does not hold the {scope!r} scope")
        return key.name


#: (path prefix, scope, open in development mode), the first match wins; other /v1 paths need admin
PATH_SCOPES: Final[tuple[tuple[str, str, bool], ...]] = (
    ("/v1/substitutes", "read", True),
    ("/v1/items", "read", True),
    ("/v1/model", "read", True),
    ("/v1/customers/", "profiles", True),
    ("/v1/feedback", "write", True),
    ("/v1/inventory", "write", False),
    # experiments' results are the retailer's business, and read keys end up in browsers: admin, even to read
    ("/v1/experiments", "admin", False),
)


def path_scope(path: str) -> tuple[str, bool] | None:
    """The scope ``path`` needs and whether development mode opens it; None: no key needed (not under /v1)."""
    if not path.startswith("/v1/"):
        return None
    for prefix, scope, open_in_development in PATH_SCOPES:
        if path.startswith(prefix):
            return scope, open_in_development
    return "admin", False


#: what access control answers, documented on every /v1 operation
REFUSALS: Final[dict[str, str]] = {
    "401": "no key, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    "403": "the key does not hold this operation's scope",
    "429": "the caller is over its rate limit (Retry-After says when to retry)",
}


def document_scopes(schema: dict[str, Any]) -> dict[str, Any]:
    """Mark every ``/v1`` operation of an OpenAPI ``schema`` as needing a bearer key and say which scope (so
    ``/docs`` has its Authorize button and each operation names its scope); returns the schema, changed in place."""
    schema.setdefault("components", {})["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer",
        "description": "an API key (recsys keys create) or the operator's RECSYS_ADMIN_TOKEN"}}
    for path, operations in schema.get("paths", {}).items():
        needs = path_scope(path)
        if needs is None:
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}]
            responses = operation.setdefault("responses", {})
            for code, meaning in REFUSALS.items():
                responses.setdefault(code, {"description": meaning, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}})
            note = f"Needs an API key with the `{needs[0]}` scope (or `admin`)."
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
    return schema


class AccessMiddleware:
    """Authorizes each ``/v1`` request (:func:`path_scope`, :meth:`Access.caller`) and counts it against its
    caller's rate limit before the app sees it. Plain ASGI, like the other middlewares."""

    def __init__(self, app: ASGIApp, access: Access, limiter: RateLimiter) -> None:
        self.app = app
        self.access = access
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needs = path_scope(scope["path"]) if scope["type"] == "http" else None
        if needs is None:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            caller = self.access.caller(authorization, *needs)
            scope.setdefault("state", {})["caller"] = caller
            if caller == ANONYMOUS:  # without a key, the client's address is who the rate limit counts
                client = scope.get("client")
                caller = f"ip:{client[0]}" if client else "ip:unknown"
            wait_s = self.limiter.check(caller)
            if wait_s is not None:
                raise rate_limited(wait_s, self.limiter)
        except HTTPException as exc:
            extra = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                     for name, value in (exc.headers or {}).items()]
            await send_error(send, exc.status_code, exc.detail, extra)
            return
        await self.app(scope, receive, send)
