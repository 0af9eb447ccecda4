"""``recsys serve``: the HTTP API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from recsys.cli._common import _fail, console


def _show_example(base_url: str, model_path: Path) -> None:
    """After start-up: print (and run) an example request for a real, popular item."""
    import httpx
    import pandas as pd

    from recsys.model import ITEMS_FILE
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


def worker_app() -> Any:
    """The app of one of ``--workers N`` processes (uvicorn's factory): settings from the environment, which
    ``serve`` filled in before starting them."""
    import os

    from serving.app import create_app
    from serving.settings import Settings

    _access_log(os.environ.get(ACCESS_LOG_VARIABLE, "1") == "1")
    return create_app(Settings())


ACCESS_LOG_VARIABLE = "RECSYS_SERVE_ACCESS_LOG"


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
    """Serve the HTTP API (uvloop/httptools when installed). Settings: RECSYS_* variables."""
    import os

    import uvicorn

    from recsys.artifact import ArtifactError, read_manifest
    from recsys.state import check_url
    from serving.app import create_app
    from serving.settings import Settings

    try:
        read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    if state is not None:
        try:
            check_url(state)
        except ValueError as exc:
            raise _fail(f"--state: {exc}") from exc
    settings = Settings(model_path=model, **({"state_url": state} if state is not None else {}))
    if workers > 1 and settings.state_location() is None:
        raise _fail("--workers needs a shared state (RECSYS_STATE_PATH or --state): with memory only, each "
                    "worker would keep its own inventory")
    if example:
        threading.Thread(target=_show_example, args=(f"http://{host}:{port}", model), daemon=True).start()
    if workers > 1:
        # each worker is a fresh process that builds its app from the environment
        os.environ["RECSYS_MODEL_PATH"] = str(model)
        if state is not None:
            os.environ["RECSYS_STATE_URL"] = state
        os.environ[ACCESS_LOG_VARIABLE] = "1" if access_log else "0"
        uvicorn.run("recsys.cli.serve:worker_app", factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, access_log=False)
        return
    _access_log(access_log)
    application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)
