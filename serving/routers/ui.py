"""The review page (``/ui``): plain HTML, JavaScript and CSS shipped inside the ``serving`` package, which call
the public HTTP API only. Nothing is fetched from elsewhere, so it works offline."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Response, status

router = APIRouter(prefix="/ui", include_in_schema=False)

#: the pages and their assets: a request names one of these, never a path
PAGES: Final[dict[str, str]] = {"": "index.html", "model": "model.html"}
ASSETS: Final[dict[str, str]] = {"app.js": "text/javascript", "model.js": "text/javascript",
                                 "common.js": "text/javascript", "style.css": "text/css"}
#: the browser may load scripts, styles, images and API answers from this server only (no CDN, no inline code)
_HEADERS: Final[dict[str, str]] = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return files("serving").joinpath("ui", name).read_bytes()


def _page(name: str) -> Response:
    return Response(_read(name), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("")
async def review_page() -> Response:
    """The main view: an item, its substitutes for a customer at a store, and why."""
    return _page(PAGES[""])


@router.get("/model")
async def model_page() -> Response:
    """The serving model: version, report, held-out metrics."""
    return _page(PAGES["model"])


@router.get("/static/{name}")
async def asset(name: Annotated[str, Path(max_length=64)]) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {name!r}")
    return Response(_read(name), media_type=f"{media_type}; charset=utf-8", headers=_HEADERS)
