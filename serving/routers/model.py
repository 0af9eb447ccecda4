"""The serving model: its summary from the manifest, and its report (``report.md`` and plots) read-only."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, HTTPException, Path, Response, status
from fastapi.responses import FileResponse

from recsys.model.registry import headline_metrics
from serving.deps import EngineDep, SettingsDep
from serving.schemas import ErrorOut, ModelSummary

router = APIRouter(prefix="/v1", tags=["model"])
_MEDIA_TYPES: Final[dict[str, str]] = {".md": "text/markdown; charset=utf-8", ".png": "image/png"}


@router.get("/model", response_model=ModelSummary,
            responses={503: {"model": ErrorOut, "description": "no model loaded"}})
async def get_model(engine: EngineDep, settings: SettingsDep) -> ModelSummary:
    """Version, data span, counts, ranker, held-out metrics and coverage of the model being served, and the
    currency and language its answers are written in."""
    manifest = engine.manifest
    reranker = manifest.ranker.reranker
    return ModelSummary(
        model_version=engine.version, created_at=manifest.created_at, data_span=manifest.data_span.model_dump(),
        train_until=manifest.train_until, counts=manifest.counts, ranker=manifest.ranker.source,
        reranker_trees=reranker.trees if reranker is not None else None,
        headline_metrics=headline_metrics(manifest), heldout=manifest.metrics, coverage=manifest.coverage,
        report_files=sorted(engine.report_files()), currency=settings.currency, locale=settings.locale,
    )


@router.get("/model/report/{name}", response_class=Response,
            responses={200: {"content": {"text/markdown": {}, "image/png": {}}},
                       404: {"model": ErrorOut, "description": "not a file of this model's report"},
                       503: {"model": ErrorOut, "description": "no model loaded"}})
async def get_report_file(engine: EngineDep, name: Annotated[str, Path(min_length=1, max_length=256)]) -> Response:
    """A file of the model's report (``report.md`` or one of its PNG plots), as the trainer wrote it."""
    # only names the manifest lists (and checksums) are served: no path from the request reaches the disk
    path = engine.report_files().get(name)
    if path is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name!r} is not a file of this model's report")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix])
