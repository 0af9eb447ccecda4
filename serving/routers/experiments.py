"""Online experiments over HTTP: start and stop one (``admin``), list them and read one's report (``admin`` too:
the results are the retailer's business, and ``read`` keys end up in browsers). The experiments themselves live in
the shared state (:mod:`recsys.state.experiments`), where every replica reads them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from recsys.state.answers import AnswerSigner
from recsys.state.experiments import (
    Experiment,
    ExperimentError,
    ExperimentStore,
    find,
    model_in,
    new_experiment,
    report,
    start_experiment,
)
from recsys.state.storage import StateUnavailableError
from recsys.state.store import StateStore
from serving.deps import SettingsDep, SignerDep, StateDep
from serving.schemas import ErrorOut, ExperimentIn, ExperimentOut, ExperimentReportOut, ValidationErrorOut
from serving.state import ServiceState

log = logging.getLogger("recsys.serving")
router = APIRouter(prefix="/v1", tags=["experiments"])
_UNAVAILABLE = {503: {"model": ErrorOut, "description": "state database unreachable"}}
Name = Annotated[str, Path(min_length=1, max_length=64)]


def _state_store(state: ServiceState) -> StateStore:
    if state.store is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "experiments live in the state database, and this server "
                                                      "has none: set RECSYS_STATE_URL or RECSYS_STATE_PATH")
    return state.store


def _experiments(state: ServiceState) -> ExperimentStore:
    return _state_store(state).experiments


def _unavailable(exc: StateUnavailableError) -> HTTPException:
    log.warning("experiment call failed: %s", exc)  # names the database's host: the log, not the client
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the state database is unreachable; retry")


def _refused(exc: ExperimentError) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT if exc.conflict else status.HTTP_422_UNPROCESSABLE_CONTENT,
                         str(exc))


def _out(experiment: Experiment, now: datetime) -> ExperimentOut:
    return ExperimentOut(**experiment.to_json(now))


@router.post("/admin/experiments", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED, responses={
    409: {"model": ErrorOut, "description": "the name is taken, another experiment runs at the same stores, or "
                                            "there is no state database"},
    422: {"model": ErrorOut | ValidationErrorOut,  # type: ignore[dict-item]
          "description": "an invalid field (named): share, an unknown model version or intent"},
    **_UNAVAILABLE})
def start(body: ExperimentIn, state: StateDep, settings: SettingsDep) -> ExperimentOut:
    """Start an experiment: every replica serves it within its polling interval (at once on PostgreSQL)."""
    # a plain def: it reads the models directory and writes the state, off the event loop
    store = _experiments(state)
    now = datetime.now(UTC)
    try:
        experiment = new_experiment(body.name, body.treatment, body.share, control=body.control, stores=body.stores,
                                    starts_at=body.starts_at, stops_at=body.stops_at,
                                    model_exists=model_in(settings.models_directory()), now=now)
        start_experiment(store, experiment, now)
        state.experiments.replace(store.experiments())  # this replica at once; the others at their next read
    except ExperimentError as exc:
        raise _refused(exc) from exc
    except StateUnavailableError as exc:
        raise _unavailable(exc) from exc
    return _out(experiment, now)


@router.get("/experiments", response_model=list[ExperimentOut], responses=_UNAVAILABLE)
def list_experiments(state: StateDep) -> list[ExperimentOut]:
    """Every experiment, the oldest first, with its status."""
    store = _experiments(state)
    now = datetime.now(UTC)
    try:
        return [_out(experiment, now) for experiment in store.experiments()]
    except StateUnavailableError as exc:
        raise _unavailable(exc) from exc


@router.get("/experiments/{name}", response_model=ExperimentReportOut, responses={
    404: {"model": ErrorOut, "description": "no such experiment"}, **_UNAVAILABLE})
def experiment_report(name: Name, state: StateDep, signer: SignerDep) -> ExperimentReportOut:
    """An experiment's numbers per arm (answers, decisions, acceptance with its 95% interval, first-position
    acceptance, price difference of accepted substitutes, whole orders and their substitution rate with its 95%
    interval) and the sequential test's decision, which stays valid
    however often it is read. Answers are counted by the replicas every polling interval."""
    return ExperimentReportOut(**_report(name, state, signer))


def _report(name: str, state: ServiceState, signer: AnswerSigner) -> dict[str, object]:
    shared = _state_store(state)
    now = datetime.now(UTC)
    try:
        experiment = find(shared.experiments, name)
        measured = report(experiment, shared.experiments.answers(name), shared.feedback.experiment_feedback(name),
                          signer, now, orders=shared.experiments.orders(name))
    except ExperimentError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except StateUnavailableError as exc:
        raise _unavailable(exc) from exc
    return measured.to_json(now)


@router.post("/admin/experiments/{name}/stop", response_model=ExperimentOut, responses={
    404: {"model": ErrorOut, "description": "no such experiment"},
    409: {"model": ErrorOut, "description": "stopped before"}, **_UNAVAILABLE})
def stop(name: Name, state: StateDep) -> ExperimentOut:
    """End an experiment now: every replica answers as before it within its polling interval. Its report stays.
    Promoting its treatment is `recsys experiments stop NAME --promote`, where the models directory is."""
    store = _experiments(state)
    now = datetime.now(UTC)
    try:
        experiment = find(store, name)
        if not store.stop_experiment(name, now.isoformat(timespec="seconds")):
            raise HTTPException(status.HTTP_409_CONFLICT, f"experiment {name!r} was stopped at {experiment.stopped_at}")
        state.experiments.replace(store.experiments())
        return _out(find(store, name), now)
    except ExperimentError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except StateUnavailableError as exc:
        raise _unavailable(exc) from exc
