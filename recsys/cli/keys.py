"""``recsys keys``: the API keys every replica accepts (create, list, revoke), kept hashed in the shared state."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from recsys.cli.common import StateOption, console, fail, print_table, state_store

app = typer.Typer(help="API keys: create, list, revoke (stored hashed in the shared state).", no_args_is_help=True)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who holds the key, e.g. storefront-eu (shown in logs)")],
    scope: Annotated[str, typer.Option("--scope", help="comma-separated: read, profiles, write, admin")],
    state: StateOption = None,
) -> None:
    """Make a key and print it as the last line (shown this once: only its hash is stored)."""
    from recsys.state.keys import create_key, parse_scopes

    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise fail(f"--scope: {exc}") from exc
    with state_store(state, "keys") as store:
        try:
            key = create_key(store, name, scopes)
        except ValueError as exc:
            raise fail(str(exc)) from exc
    console.print(f"key {name!r} with scopes {', '.join(sorted(scopes))} (every replica accepts it within "
                  "seconds); store it now, it is not shown again:", highlight=False, soft_wrap=True)
    typer.echo(key)  # stdout, alone: KEY=$(recsys keys create ... | tail -1)


@app.command("list")
def keys_list(state: StateOption = None,
              revoked: Annotated[bool, typer.Option(help="also the revoked keys")] = False) -> None:
    """Every key's name, scopes and dates (never the key)."""
    with state_store(state, "keys") as store:
        keys = store.api_keys()
    table = Table(title="API keys")
    for column in ("name", "scopes", "created", "revoked"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        if key.revoked_at is None or revoked:
            table.add_row(key.name, ",".join(sorted(key.scopes)), key.created_at, key.revoked_at or "")
    print_table(table, min_width=160)  # whole names and dates


@app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")], state: StateOption = None) -> None:
    """Revoke a key: every replica refuses it within seconds (2 s at the default polling interval)."""
    with state_store(state, "keys") as store:
        if not store.revoke_key(name):
            raise fail(f"no active key named {name!r} (recsys keys list)")
    console.print(f"revoked {name!r}", highlight=False)
