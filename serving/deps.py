"""Request dependencies: the engine (503 until a model is loaded), the answer signer, the state and the settings.
Who may call a route is checked before routing, by :class:`serving.access.AccessMiddleware`.

All are ``async def``: they only read app state, and FastAPI runs a plain ``def`` dependency in its thread
pool, a hop that cost more than the whole engine query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from recsys import SubstituteEngine
from recsys.state.answers import AnswerSigner
from serving.experiments import Experiments
from serving.settings import Settings
from serving.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(service: ServiceState) -> SubstituteEngine:
    if service.engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet")
    return service.engine


def _signer(service: ServiceState) -> AnswerSigner:
    if service.signer is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the state database has not answered yet")
    return service.signer


async def get_engine(request: Request) -> SubstituteEngine:
    # reads the state itself: a sub-dependency costs the hot path another resolution step
    return _engine(request.app.state.service)


@dataclass(frozen=True, slots=True)
class Answering:
    """What a substitute route needs: the engine, the answer signer and the online experiments."""

    engine: SubstituteEngine
    signer: AnswerSigner
    experiments: Experiments


def answering_from(service: ServiceState) -> Answering:
    """A loaded model (else 503) and the signing key (else 503), with the online experiments."""
    return Answering(_engine(service), _signer(service), service.experiments)


async def answering(request: Request) -> Answering:
    """The substitute routes' one dependency (:func:`answering_from`). One, because each dependency FastAPI
    resolves costs microseconds."""
    return answering_from(request.app.state.service)


async def get_signer(request: Request) -> AnswerSigner:
    return _signer(request.app.state.service)


EngineDep = Annotated[SubstituteEngine, Depends(get_engine)]
AnsweringDep = Annotated[Answering, Depends(answering)]
SignerDep = Annotated[AnswerSigner, Depends(get_signer)]
StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
