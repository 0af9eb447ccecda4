"""``recsys stock import``: a store system's whole stock count (parquet or CSV) into the shared state, as one
snapshot per store; every replica following the state reads it."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import console, fail, service_settings, warn_password_in_argv

app = typer.Typer(help="Stock: import a store system's whole count into the shared state.", no_args_is_help=True)


class Unlisted(str, Enum):
    """What a store's snapshot says of its items that the file does not list."""

    out_of_stock = "out_of_stock"
    unchanged = "unchanged"


@app.command("import")
def stock_import(
    file: Annotated[Path, typer.Argument(help="parquet or CSV (.tsv: tab-separated), one row per store and item")],
    store_column: Annotated[str, typer.Option("--store-column", help="the column of store ids")],
    item_column: Annotated[str, typer.Option("--item-column", help="the column of item ids")] = "item_id",
    in_stock_column: Annotated[str | None, typer.Option(
        "--in-stock-column", help="the boolean-like column (true/false, yes/no, 1/0); default: in_stock when the "
                                  "file has it, else every listed row means in stock")] = None,
    unlisted: Annotated[Unlisted, typer.Option(
        "--unlisted", help="out_of_stock: every item of a store in the file that its rows do not list is out of "
                           "stock (items never reported included); unchanged: they keep their state")
    ] = Unlisted.out_of_stock,
    state: Annotated[str | None, typer.Option(
        "--state", help="state URL (sqlite:///path or postgresql://user@host/db); default: the server's "
                        "(RECSYS_STATE_URL, else RECSYS_STATE_PATH)")] = None,
) -> None:
    """Check the whole file, then replace each of its stores' stock with its rows (one atomic snapshot per store).
    Nothing is applied when the file has a problem: a one-line message names the file and the column (exit 2)."""
    from recsys.state.stock_files import StockColumns, StockFileError, apply_snapshots, read_stock_file
    from recsys.state.storage import StateUnavailableError
    from recsys.state.store import check_url, open_state

    started = time.perf_counter()
    warn_password_in_argv("--state", state)
    location = state if state is not None else service_settings().state_location()
    if location is None:
        raise fail("stock lives in the state database: give --state or set RECSYS_STATE_URL / RECSYS_STATE_PATH")
    try:
        check_url(location)
    except ValueError as exc:
        raise fail(f"--state: {exc}") from exc
    try:
        stock_file = read_stock_file(file, StockColumns(store_column, item_column, in_stock_column))
    except StockFileError as exc:
        raise fail(str(exc)) from exc
    try:
        store = open_state(location)
    except ValueError as exc:
        raise fail(f"--state: {exc}") from exc
    applied = 0
    try:
        for _ in apply_snapshots(store.stock, stock_file, unlisted is Unlisted.out_of_stock):
            applied += 1
    except StateUnavailableError as exc:
        total = len(stock_file.snapshots)
        raise fail(f"{applied} of {total} stores applied, each whole, the others not (importing the file again "
                   f"is safe): {exc}") from exc
    finally:
        store.close()
    seconds = time.perf_counter() - started
    meaning = "out of stock" if unlisted is Unlisted.out_of_stock else "unchanged"
    read_from = stock_file.in_stock_column or "none: every row in stock"
    console.print(f"imported {applied:,} stores, {stock_file.rows:,} rows from {file} into {store.url} in "
                  f"{seconds:.1f} s (read {stock_file.read_s:.1f} s); in-stock column: {read_from}; unlisted "
                  f"items: {meaning}", highlight=False, soft_wrap=True)
