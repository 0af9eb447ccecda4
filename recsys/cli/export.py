"""``recsys export``: every item's substitutes to parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import console, fail, warn_password_in_argv


def export(
    out: Annotated[Path, typer.Option(help="parquet file to write")] = Path("exports/substitutes.parquet"),
    model: Annotated[Path, typer.Option(help="model directory or the current symlink")] = Path("models/current"),
    k: Annotated[int, typer.Option(min=1, max=100, help="substitutes per item")] = 10,
    store: Annotated[list[str] | None, typer.Option(
        help="apply this store's live availability (repeat for several); default: online")] = None,
    state: Annotated[str | None, typer.Option(
        help="the server's inventory database for the stores' availability: its file (RECSYS_STATE_PATH) or "
             "state URL (RECSYS_STATE_URL)")] = None,
    items_with_events_only: Annotated[bool, typer.Option(help="skip items nobody bought or viewed")] = False,
    progress: Annotated[bool, typer.Option(
        help="a progress bar on stderr when it is a terminal (a log gets the summary line alone)")] = True,
) -> None:
    """The top-k substitutes of every item (non-personal), one row per (store, item, rank), to parquet."""
    from recsys import ArtifactError, Inventory, SubstituteEngine
    from recsys.query.export import export_substitutes
    from recsys.state.inventory import ONLINE
    from recsys.state.store import StateUnavailableError, open_state, redact, sqlite_path
    from training.progress import stderr_is_terminal

    warn_password_in_argv("--state", state)
    inventory = Inventory()
    if state is not None:
        path = sqlite_path(state)
        if path is not None and not path.is_file():
            raise fail(f"--state {state}: no such inventory database")
        try:
            shared = open_state(state, must_exist=True)
            inventory = Inventory(shared.stock)
            inventory.catch_up()  # raises when a database server is down, rather than export without stock
        except (ValueError, StateUnavailableError) as exc:
            raise fail(f"--state {redact(state)}: {exc}") from exc
    try:
        engine = SubstituteEngine.load(model, inventory)
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    stats = export_substitutes(engine, out, k=k, stores=store or [ONLINE],
                               items_with_events_only=items_with_events_only,
                               show_progress=progress and stderr_is_terminal())
    console.print(f"{stats.items:,} items ({stats.items_without_substitutes:,} without substitutes), "
                  f"{stats.rows:,} rows in {stats.seconds:.1f} s: {stats.items_per_second:,.0f} items/s")
    typer.echo(str(stats.path))
