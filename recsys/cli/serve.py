"""``recsys serve``: the HTTP API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import console, fail

if TYPE_CHECKING:
    from serving.settings import Settings


def _show_example(base_url: str, model_path: Path) -> None:
    """After start-up: print (and run) an example request for a real, popular item."""
    import httpx
    import pandas as pd

    from recsys.model.data import ITEMS_FILE
    from serving.process import wait_ready

    items = pd.read_parquet(Path(model_path).resolve() / ITEMS_FILE, columns=["item_id", "n_customers"])
    item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    body = {"item_id": item_id, "k": 3}
    if not wait_ready(base_url):
        return
    command = (f"curl -s -X POST {base_url}/v1/substitutes -H 'content-type: application/json' "
               f"-d '{json.dumps(body)}'")
    answer = httpx.post(f"{base_url}/v1/substitutes", json=body, timeout=5).json()
    console.print(f"\n[bold]example request[/] (API docs: {base_url}/docs):")
    console.print(command, soft_wrap=True, markup=False, highlight=False)
    console.print_json(data=answer)


def _access_log(enabled: bool) -> None:
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # the access log lines are JSON already
    access = logging.getLogger("recsys.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO if enabled else logging.WARNING)
    access.propagate = False


def serve(
    model: Annotated[Path, typer.Option(help="model directory or the current symlink")] = Path("models/current"),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    state: Annotated[str | None, typer.Option(
        help="state URL: sqlite:///path (default: RECSYS_STATE_PATH) or postgresql://user:pass@host:port/db, "
             "shared by replicas (RECSYS_STATE_URL)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="processes on this host, sharing the port")] = 1,
    example: Annotated[bool, typer.Option(help="print and run an example request once ready")] = False,
    log_level: Annotated[str, typer.Option()] = "info",
    access_log: Annotated[bool, typer.Option(help="one JSON line per request on stderr")] = True,
) -> None:
    """Serve the HTTP API (uvloop/httptools when installed). Settings: RECSYS_* variables. With --workers N the
    model is loaded once and N forked workers share its memory (see docs/deployment.md)."""
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from recsys.model.artifact import ArtifactError, read_manifest
    from recsys.state.store import check_url
    from serving.app import create_app
    from serving.settings import Settings

    try:
        read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    if state is not None:
        try:
            check_url(state)
        except ValueError as exc:
            raise fail(f"--state: {exc}") from exc
    if log_level not in LOG_LEVELS:
        raise fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    settings = Settings(model_path=model) if state is None else Settings(model_path=model, state_url=state)
    if workers > 1 and settings.state_location() is None:
        raise fail("--workers needs a shared state (RECSYS_STATE_PATH or --state): with memory only, each "
                    "worker would keep its own inventory")
    if workers > 1:
        _serve_workers(settings, workers=workers, host=host, port=port, log_level=log_level, access_log=access_log,
                       example=example)
        return
    if example:
        threading.Thread(target=_show_example, args=(f"http://{host}:{port}", model), daemon=True).start()
    _access_log(access_log)
    application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)


def _serve_workers(settings: Settings, *, workers: int, host: str, port: int, log_level: str, access_log: bool,
                   example: bool) -> None:
    """The pre-fork server (:mod:`serving.prefork`): bad input and a model that cannot load exit 2 with a
    message; a worker that cannot be kept running makes the exit status non-zero."""
    import logging

    from uvicorn.config import LOG_LEVELS

    from recsys.model.artifact import ArtifactError
    from serving.prefork import PreforkError, WorkerOptions
    from serving.prefork import serve as prefork_serve

    # the supervisor's and the workers' own lines (uvicorn configures only its loggers)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    service_log = logging.getLogger("recsys.serving")
    service_log.addHandler(handler)
    service_log.setLevel(LOG_LEVELS[log_level])
    service_log.propagate = False
    options = WorkerOptions(host=host, port=port, log_level=log_level)

    def configure(first: bool) -> None:  # in each worker, after the fork: its threads start there
        _access_log(access_log)
        if example and first:
            threading.Thread(target=_show_example, args=(f"http://{host}:{port}", settings.model_path),
                             daemon=True).start()

    try:
        status = prefork_serve(settings, workers, options, configure)
    except (ArtifactError, PreforkError) as exc:
        raise fail(str(exc)) from exc
    if status:
        raise typer.Exit(status)
