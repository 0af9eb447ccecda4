"""Merchandising rules (the ``admin`` scope): kept in the shared state, so every replica applies the same rules
within its polling interval (see :mod:`recsys.query.rules`)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, Field

from recsys.query.rules import Rule
from recsys.state.storage import StateUnavailableError
from serving.deps import StateDep
from serving.schemas import ErrorOut

router = APIRouter(prefix="/v1/admin/rules", tags=["admin"])
log = logging.getLogger("recsys.serving")
_DOWN = {503: {"model": ErrorOut, "description": "the state database is unreachable: nothing changed"}}


class RuleSaved(BaseModel):
    name: str
    created: bool = Field(description="false: a rule of that name was replaced")


@router.post("", response_model=RuleSaved, status_code=status.HTTP_201_CREATED, responses={
    200: {"model": RuleSaved, "description": "a rule of that name was replaced"}, **_DOWN})
async def add_rule(rule: Rule, state: StateDep, response: Response) -> RuleSaved:
    """Add a rule, or replace the one of the same name (200). Every replica applies it within seconds."""
    try:
        created = await asyncio.to_thread(state.save_rule, rule)
    except StateUnavailableError as exc:
        log.warning("rule not saved: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return RuleSaved(name=rule.name, created=created)


@router.get("", response_model=list[Rule], response_model_exclude_none=True)
async def list_rules(state: StateDep) -> list[Rule]:
    """Every rule this replica applies, active or not (``starts`` / ``ends`` say when), by name."""
    return state.rules


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"model": ErrorOut, "description": "no rule of that name"}, **_DOWN})
async def remove_rule(state: StateDep, name: str = Path(min_length=1, max_length=100)) -> Response:
    """Remove a rule: every replica stops applying it within seconds."""
    try:
        removed = await asyncio.to_thread(state.remove_rule, name)
    except StateUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule named {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
