"""The models directory as a registry: list versions, promote one, roll back, prune old ones.

Every change of ``current`` goes through :func:`recsys.model.artifact.point_current` (an atomic rename), and the
previous target is remembered in ``models/.previous`` so ``rollback`` knows where to go. A running server
picks a change up on ``POST /v1/admin/reload``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from recsys.domain.types import Intent
from recsys.model.artifact import CURRENT, ArtifactError, directory_size, point_current, read_manifest
from recsys.model.manifest import Manifest

PREVIOUS = ".previous"
#: the longest model version accepted (a trained version, a UTC timestamp, has 22 characters)
MAX_VERSION_CHARS: Final[int] = 128
#: a plain directory name: no separator, and not hidden (``.``, ``..``, half-written ``.tmp-*`` models)
_VERSION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class InvalidVersionError(ArtifactError, ValueError):
    """A model version that is not a plain name: as a path (``models / version``) it could name any directory."""


def check_version(version: str) -> str:
    """``version`` if it is a plain name of a directory in the models directory: ASCII letters, digits, ``.``,
    ``_`` and ``-``, not starting with ``.``, at most :data:`MAX_VERSION_CHARS` characters. Checked wherever a
    version comes from outside (the shared model pointer, the command line) before it is used as a path; raises
    :class:`InvalidVersionError` otherwise."""
    if len(version) > MAX_VERSION_CHARS or _VERSION_NAME.fullmatch(version) is None:
        raise InvalidVersionError(f"model version {version[:MAX_VERSION_CHARS]!r} is not a plain name: letters, "
                                  f"digits, '.', '_' and '-', not starting with '.', at most {MAX_VERSION_CHARS}")
    return version


@dataclass(frozen=True)
class ModelEntry:
    version: str
    path: Path
    created_at: str
    data_span: dict[str, str]
    size_bytes: int
    current: bool
    ranker: str
    counts: dict[str, Any]
    metrics: dict[str, float]  # held-out headline metrics of the model ("ours"), empty if none


def current_version(models: Path) -> str | None:
    link = models / CURRENT
    return link.resolve().name if link.exists() else None


#: the evaluation's method name of our answers for each intent (balanced is "ours")
INTENT_METHODS: Final[dict[Intent, str]] = {Intent.balanced: "ours", Intent.familiar: "ours-familiar",
                                            Intent.discover: "ours-discover"}
_RANK_METRICS: Final[tuple[str, ...]] = ("HR@1", "HR@3", "NDCG@10")  # HR@1: a picker takes the first substitute
#: the metrics a model is judged by: name -> (method, query subset, metric) in the evaluation's results. Each
#: intent on the queries it is for: balanced on both subsets, familiar on all, discover on new-to-customer ones
HEADLINE_METRICS: Final[dict[str, tuple[str, str, str]]] = {
    **{metric: (INTENT_METHODS[Intent.balanced], "all", metric) for metric in _RANK_METRICS},
    "new HR@3": (INTENT_METHODS[Intent.balanced], "new_to_customer", "HR@3"),
    **{f"familiar {metric}": (INTENT_METHODS[Intent.familiar], "all", metric) for metric in _RANK_METRICS},
    **{f"discover new {metric}": (INTENT_METHODS[Intent.discover], "new_to_customer", metric)
       for metric in _RANK_METRICS},
}


def headline(methods: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """:data:`HEADLINE_METRICS` of an evaluation's results (method -> subset -> metric -> value); metrics of a
    method the results lack (a model trained before the intents has balanced only) are left out."""
    return {name: methods[method][subset][metric] for name, (method, subset, metric) in HEADLINE_METRICS.items()
            if method in methods}


def headline_metrics(manifest: Manifest) -> dict[str, float]:
    """The model's held-out headline metrics (from its training report), empty if it has none."""
    return headline((manifest.metrics or {}).get("methods", {}))


def list_models(models: Path) -> list[ModelEntry]:
    """Complete models (a readable manifest), oldest first. Half-written ``.tmp-*`` directories are skipped."""
    current = current_version(models)
    entries = []
    for path in sorted(p for p in models.iterdir() if p.is_dir() and not p.is_symlink()
                       and not p.name.startswith(".")):
        try:
            manifest = read_manifest(path, verify=False)
        except ArtifactError:
            continue
        entries.append(ModelEntry(
            version=path.name, path=path, created_at=manifest.created_at,
            data_span=manifest.data_span.model_dump(), size_bytes=directory_size(path),
            current=path.name == current, ranker=manifest.ranker.source,
            counts=manifest.counts, metrics=headline_metrics(manifest),
        ))
    return entries


def promote(models: Path, version: str) -> None:
    """Verify ``version`` (checksums included) and make it current, remembering the one it replaces."""
    read_manifest(models / check_version(version), verify=True)
    previous = current_version(models)
    point_current(models, version)
    if previous and previous != version:
        (models / PREVIOUS).write_text(previous)


def rollback(models: Path) -> str:
    """Make the previously current model current again; returns its version."""
    marker = models / PREVIOUS
    if not marker.is_file():
        raise ArtifactError(f"{models}: no previous model to roll back to")
    version = marker.read_text().strip()
    promote(models, version)
    return version


def prune(models: Path, keep: int, in_use: Iterable[str] = ()) -> list[str]:
    """Delete all but the newest ``keep`` complete models; never the current or the previous one, nor the
    versions ``in_use`` elsewhere (what the replicas' shared state points at or an experiment serves)."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    protected = {current_version(models), *in_use}
    marker = models / PREVIOUS
    if marker.is_file():
        protected.add(marker.read_text().strip())
    entries = list_models(models)
    doomed = [e for e in entries[:-keep] if e.version not in protected] if len(entries) > keep else []
    for entry in doomed:
        shutil.rmtree(entry.path)
    return [e.version for e in doomed]
