"""Request dependencies: the engine (503 until a model is loaded) and the admin bearer token.

All are ``async def``: they only read app state, and FastAPI runs a plain ``def`` dependency in its thread
pool, a hop that cost more than the whole engine query."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recsys import SubstituteEngine
from serving.settings import Settings
from serving.state import ServiceState

_bearer = HTTPBearer(auto_error=False, description="RECSYS_ADMIN_TOKEN")


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> SubstituteEngine:
    # reads the state itself: a sub-dependency costs the hot path another resolution step
    engine: SubstituteEngine | None = request.app.state.service.engine
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
    return engine


async def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin endpoints are disabled: set RECSYS_ADMIN_TOKEN")
    expected = settings.admin_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not secrets.compare_digest(given, expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


EngineDep = Annotated[SubstituteEngine, Depends(get_engine)]
StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AdminDep = Depends(require_admin)
