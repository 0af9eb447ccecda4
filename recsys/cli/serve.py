"""``recsys serve``: the HTTP API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import ExitStatus, console, fail, service_settings, warn_password_in_argv

if TYPE_CHECKING:
    from serving.settings import Settings


def _show_example(base_url: str, model_path: Path, key: str | None) -> None:
    """After start-up: print (and run) an example request for a real, popular item (with ``key`` when the
    service needs one)."""
    import httpx
    import pandas as pd

    from recsys.model.data import ITEMS_FILE
    from serving.process import wait_ready

    items = pd.read_parquet(Path(model_path).resolve() / ITEMS_FILE, columns=["item_id", "n_customers"])
    item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    body = {"item_id": item_id, "k": 3}
    if not wait_ready(base_url):
        return
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    command = (f"curl -s -X POST {base_url}/v1/substitutes -H 'content-type: application/json' "
               + "".join(f"-H '{name}: {value}' " for name, value in headers.items()) + f"-d '{json.dumps(body)}'")
    answer = httpx.post(f"{base_url}/v1/substitutes", json=body, headers=headers, timeout=5).json()
    console.print(f"\n[bold]example request[/] (API docs: {base_url}/docs):")
    console.print(command, soft_wrap=True, markup=False, highlight=False)
    console.print_json(data=answer)


def _check_access(settings: Settings, host: str, example: bool) -> str | None:
    """Say how the service is closed (loudly when it is not), and, for ``--example``, make the read-only key
    named ``example`` (replacing an earlier one) that the example request uses; returns it."""
    import ipaddress

    from recsys.state.keys import create_key
    from recsys.state.store import open_state

    if settings.auth == "open":
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            console.print(f"[bold red]WARNING: RECSYS_AUTH=open on {host}, which is not a loopback address: anyone "
                          "who reaches it can read customers' profiles and write the feedback the next model "
                          "learns from. Use RECSYS_AUTH=keys (the default) beyond a laptop.[/]", soft_wrap=True)
        else:
            console.print("development mode (RECSYS_AUTH=open) on loopback: reads and feedback need no key; "
                          "stock and admin calls need RECSYS_ADMIN_TOKEN or a key", soft_wrap=True)
        return None
    location = settings.state_location()
    if location is None:
        if settings.admin_token is None:
            console.print("[yellow]no state database and no RECSYS_ADMIN_TOKEN: every /v1 call will be refused[/]")
        return None
    state = open_state(location)
    try:
        if example:
            state.revoke_key("example")
            key = create_key(state, "example", frozenset({"read"}))
            console.print("made the read-only API key 'example' for the example request below (revoke it with "
                          "`recsys keys revoke example`)", soft_wrap=True)
            return key
        if not state.api_keys() and settings.admin_token is None:
            console.print("[yellow]no API key yet and no RECSYS_ADMIN_TOKEN: every /v1 call will be refused; make "
                          "one with `recsys keys create --name NAME --scope read`[/]", soft_wrap=True)
        return None
    finally:
        state.close()


def _access_log(enabled: bool) -> None:
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # the access log lines are JSON already
    access = logging.getLogger("recsys.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO if enabled else logging.WARNING)
    access.propagate = False


def serve(
    model: Annotated[Path | None, typer.Option(
        help="model directory or the current symlink; default: RECSYS_MODEL_PATH, else models/current")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    state: Annotated[str | None, typer.Option(
        help="state URL: sqlite:///path (default: RECSYS_STATE_PATH) or postgresql://user@host:port/db, "
             "shared by replicas (RECSYS_STATE_URL); its password in RECSYS_STATE_PASSWORD_FILE, not here")] = None,
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
    from recsys.state.storage import StateUnavailableError
    from recsys.state.store import check_url
    from serving.app import create_app
    from serving.http import CoalescingHttpToolsProtocol

    warn_password_in_argv("--state", state)
    settings = service_settings(model_path=model, state_url=state)  # the options given, else RECSYS_* variables
    try:
        read_manifest(settings.model_path, verify=False)
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    if state is not None:
        try:
            check_url(state)
        except ValueError as exc:
            raise fail(f"--state: {exc}") from exc
    if log_level not in LOG_LEVELS:
        raise fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if workers > 1 and settings.state_location() is None:
        raise fail("--workers needs a shared state (RECSYS_STATE_PATH or --state): with memory only, each "
                    "worker would keep its own inventory")
    try:
        key = _check_access(settings, host, example)
    except StateUnavailableError as exc:
        if example:
            raise fail(f"--example makes its key in the state, which cannot be reached: {exc}") from exc
        # a replica starts while the database is down and becomes ready once it answers
        console.print(f"[yellow]the state cannot be reached yet, so its keys are not checked: {exc}[/]",
                      soft_wrap=True, highlight=False)
        key = None
    if workers > 1:
        _serve_workers(settings, workers=workers, host=host, port=port, log_level=log_level, access_log=access_log,
                       example=example, key=key)
        return
    if example:
        threading.Thread(target=_show_example, args=(f"http://{host}:{port}", settings.model_path, key),
                         daemon=True).start()
    _access_log(access_log)
    application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False,
                http=CoalescingHttpToolsProtocol)


def _serve_workers(settings: Settings, *, workers: int, host: str, port: int, log_level: str, access_log: bool,
                   example: bool, key: str | None) -> None:
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
            threading.Thread(target=_show_example, args=(f"http://{host}:{port}", settings.model_path, key),
                             daemon=True).start()

    try:
        status = prefork_serve(settings, workers, options, configure)
    except (ArtifactError, PreforkError) as exc:
        raise fail(str(exc)) from exc
    if status:  # workers that could not be kept running: not the operator's input
        raise fail(f"workers could not be kept running (status {status}); see the log above",
                   ExitStatus.internal_error)
