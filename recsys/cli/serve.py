"""``recsys serve``: the HTTP API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

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


def serve(
    model: Annotated[Path, typer.Option(help="model directory or the current symlink")] = Path("models/current"),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    example: Annotated[bool, typer.Option(help="print and run an example request once ready")] = False,
    log_level: Annotated[str, typer.Option()] = "info",
    access_log: Annotated[bool, typer.Option(help="one JSON line per request on stderr")] = True,
) -> None:
    """Serve the HTTP API (one worker, uvloop/httptools when installed). Settings: RECSYS_* variables."""
    import uvicorn

    from recsys.artifact import ArtifactError, read_manifest
    from serving.app import create_app
    from serving.settings import Settings

    try:
        read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # the access log lines are JSON already
    access = logging.getLogger("recsys.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO if access_log else logging.WARNING)
    access.propagate = False
    application = create_app(Settings(model_path=model))
    if example:
        threading.Thread(target=_show_example, args=(f"http://{host}:{port}", model), daemon=True).start()
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)
