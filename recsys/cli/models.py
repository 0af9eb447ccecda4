"""``recsys models``: the models directory (list, promote, rollback, prune)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recsys.cli.common import StateOption as SharedStateOption
from recsys.cli.common import (
    fail,
    print_json,
    print_table,
    service_settings,
    state_store,
    warn_password_in_argv,
)

app = typer.Typer(help="The models directory: list, promote, rollback, prune.", no_args_is_help=True)
ModelsDir = Annotated[Path, typer.Option("--models", help="models directory")]


@app.command("list")
def models_list(models: ModelsDir = Path("models"), as_json: Annotated[bool, typer.Option(
        "--json", help="a JSON list on stdout, one object per model, instead of the table")] = False) -> None:
    """Versions with creation time, data span, size, ranker, counts and held-out metrics; * marks the current."""
    from recsys.model.registry import HEADLINE_METRICS, list_models

    _existing(models)
    entries = list_models(models)
    if as_json:
        print_json([{"version": entry.version, "current": entry.current, "path": str(entry.path),
                     "created_at": entry.created_at, "data_span": entry.data_span, "size_bytes": entry.size_bytes,
                     "ranker": entry.ranker, "counts": entry.counts, "metrics": entry.metrics}
                    for entry in entries])
        return
    table = Table(title=f"models in {models}")
    headline = tuple(HEADLINE_METRICS)
    for column in ("", "version", "created", "data span", "size MB", "ranker", "events", "items", *headline):
        table.add_column(column, overflow="fold")  # squeezed on a terminal, a version folds but stays whole
    for entry in entries:
        span = f"{entry.data_span.get('start', '')[:10]} .. {entry.data_span.get('end', '')[:10]}"
        table.add_row("*" if entry.current else "", entry.version, entry.created_at, span,
                      f"{entry.size_bytes / 1e6:.1f}", entry.ranker, f"{entry.counts.get('events', 0):,}",
                      f"{entry.counts.get('items', 0):,}",
                      *(f"{entry.metrics[m]:.3f}" if m in entry.metrics else "" for m in headline))
    print_table(table, stderr=False, min_width=230)  # one line per model


def _existing(models: Path) -> None:
    """Refuse (exit 2) a models directory that does not exist: a mistyped --models is not an empty registry."""
    if not models.is_dir():
        raise fail(f"--models {models}: no such directory")


StateOption = Annotated[str | None, typer.Option(
    "--state", help="the replicas' shared state URL (postgresql://... or sqlite:///path): move its model pointer "
                    "too, so that every replica loads VERSION from the shared models directory")]


def point_replicas(state: str | None, version: str) -> None:
    """Move the model pointer of the state at ``state`` (if given) to ``version``; failures exit 2."""
    from recsys.state.store import StateUnavailableError, open_state

    if state is None:
        return
    try:
        store = open_state(state)
        try:
            store.set_model_pointer(version)
        finally:
            store.close()
    except (ValueError, StateUnavailableError) as exc:
        raise fail(f"--state: {exc}") from exc
    typer.echo(f"replicas -> {version}")


@app.command("promote")
def models_promote(version: str, models: ModelsDir = Path("models"), state: StateOption = None) -> None:
    """Verify VERSION and make it current; with --state every replica following that state loads it (else
    POST /v1/admin/reload to serve it)."""
    from recsys.model.artifact import ArtifactError
    from recsys.model.registry import promote

    warn_password_in_argv("--state", state)
    try:
        promote(models, version)  # refuses a version that is not a plain name before anything moves
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"current -> {version}")
    point_replicas(state, version)


@app.command("rollback")
def models_rollback(models: ModelsDir = Path("models"), state: StateOption = None) -> None:
    """Make the previously current model current again (with --state, on every replica too)."""
    from recsys.model.artifact import ArtifactError
    from recsys.model.registry import rollback

    warn_password_in_argv("--state", state)
    try:
        version = rollback(models)
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"current -> {version}")
    point_replicas(state, version)


@app.command("prune")
def models_prune(keep: Annotated[int, typer.Option(min=1, help="newest models to keep")],
                 models: ModelsDir = Path("models"), state: SharedStateOption = None) -> None:
    """Delete old models, keeping the newest KEEP. Never deleted: the current and previous ones, and those the
    replicas' shared state uses (--state, else the server's RECSYS_STATE_URL / RECSYS_STATE_PATH): the version its
    model pointer names and the versions of online experiments not yet ended."""
    from recsys.model.registry import prune

    _existing(models)
    in_use = _used_by_state(state)
    for version in prune(models, keep, in_use):
        typer.echo(f"deleted {version}")
    for version in sorted(in_use):
        typer.echo(f"kept {version}: in use through the shared state")


def _used_by_state(url: str | None) -> set[str]:
    """The model versions the shared state uses (none when no state is given or configured)."""
    from datetime import UTC, datetime

    if url is None:
        settings = service_settings()
        if settings.state_url is None and (settings.state_path is None or not settings.state_path.exists()):
            return set()  # no shared state, and none made here: opening a SQLite state creates its file
    with state_store(url, "the model pointer and the experiments") as shared:
        now = datetime.now(UTC)
        used = {version for experiment in shared.experiments.experiments() if experiment.status(now) != "ended"
                for version in experiment.model_versions()}
        pointer = shared.model_pointer()
    return used | ({pointer} if pointer else set())
