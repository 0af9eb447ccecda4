"""`recsys stock import`: a whole-store count from CSV, TSV or parquet becomes one snapshot per store (ids kept as
written, boolean-like in-stock values, every row in stock without the column); a file with any problem exits 2
with one line naming the file and the column, and nothing of it is applied."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from recsys import Inventory
from recsys.cli import app
from recsys.state.store import open_state


def _import(*args: str) -> Result:
    """``recsys stock import ARGS`` in this process, standard output and error apart."""
    return CliRunner().invoke(app, ["stock", "import", *args])


def _stock(state: str) -> dict[str, tuple[list[str], list[str], bool]]:
    """Every store's (in stock, out of stock, closed-world) as a fresh process reads them from the state."""
    store = open_state(state)
    try:
        changes = store.stock.stock_since(-1)
        inventory = Inventory(store.stock)
        stores = {u.store_id for u in changes.updates} | {m.store_id for m in changes.snapshots}
        return {s: (sorted(inventory.store_stock(s).in_stock), sorted(inventory.store_stock(s).out_of_stock),
                    inventory.store_stock(s).unlisted_out) for s in stores}
    finally:
        store.close()


def test_a_count_becomes_one_snapshot_per_store(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    count = tmp_path / "count.csv"
    count.write_text("shop,item_id,in_stock,price\n"
                     "12,007,yes,1.5\n12,8,No,2\n12,9,1,3\n"
                     "13,007,FALSE,1.5\n13,10, true ,4\n")
    done = _import(str(count), "--store-column", "shop", "--state", state)
    assert done.exit_code == 0, done.output
    assert "imported 2 stores, 5 rows" in done.stderr and "in-stock column: in_stock" in done.stderr
    assert _stock(state) == {"12": (["007", "9"], ["8"], True), "13": (["10"], ["007"], True)}, \
        "ids as written ('007'), and every unlisted item out"
    # a later count of store 12 only, without an in-stock column, as a parquet file: every row in stock
    later = tmp_path / "later.parquet"
    pd.DataFrame({"store": [12, 12], "sku": [11, 8]}).to_parquet(later)
    assert _import(str(later), "--store-column", "store", "--item-column", "sku", "--state", state).exit_code == 0
    assert _stock(state) == {"12": (["11", "8"], [], True), "13": (["10"], ["007"], True)}
    partial = tmp_path / "partial.tsv"
    partial.write_text("store\titem_id\tavailable\n13\t10\tn\n13\t12\ty\n")
    kept = _import(str(partial), "--store-column", "store", "--in-stock-column", "available",
                   "--unlisted", "unchanged", "--state", state)
    assert kept.exit_code == 0, kept.output
    assert _stock(state)["13"] == (["12"], ["007", "10"], True), "the unlisted '007' kept, the store still closed"
    again = _import(str(count), "--store-column", "shop", "--state", state)
    assert again.exit_code == 0 and _stock(state) == {"12": (["007", "9"], ["8"], True),
                                                      "13": (["10"], ["007"], True)}, "a snapshot replaces"


@pytest.mark.parametrize(("name", "content", "args", "message"), [
    ("missing.csv", None, [], "missing.csv: no such file"),
    ("garbage.parquet", b"\x00\x01 not parquet at all", [], "cannot read it as parquet"),
    ("no-store.csv", "store,item_id\n1,2\n", [], "no column 'shop'"),
    ("no-item.csv", "shop,sku\n1,2\n", [], "no column 'item_id'"),
    ("no-flag.csv", "shop,item_id\n1,2\n", ["--in-stock-column", "available"], "no column 'available'"),
    ("empty-store.csv", "shop,item_id\n1,2\n,3\n", [], "column 'shop': empty id in row 2"),
    ("empty-item.csv", "shop,item_id\n1,2\n1,\n", [], "column 'item_id': empty id in row 2"),
    ("maybe.csv", "shop,item_id,in_stock\n1,2,yes\n2,3,maybe\n", [],
     "column 'in_stock': 'maybe' in row 2 is not an in-stock value"),
    ("blank-flag.csv", "shop,item_id,in_stock\n1,2,yes\n2,3,\n", [], "column 'in_stock': '' in row 2"),
    ("twice.csv", "shop,item_id\n1,2\n2,2\n1,2\n", [], "column 'item_id': item '2' is listed twice for store '1'"),
    ("null-item.parquet", pd.DataFrame({"shop": ["1", "1"], "item_id": ["2", None]}), [],
     "column 'item_id': no id in row 2"),
    ("fractional.parquet", pd.DataFrame({"shop": ["1", "1"], "item_id": [2.0, 2.5]}), [],
     "column 'item_id': holds fractional numbers"),
    ("two.parquet", pd.DataFrame({"shop": ["1"], "item_id": ["2"], "in_stock": [2]}), [],
     "column 'in_stock': 2 in row 1 is not an in-stock value"),
    ("null-flag.parquet", pd.DataFrame({"shop": ["1"], "item_id": ["2"], "in_stock": pd.array([None],
                                                                                             dtype="boolean")}),
     [], "column 'in_stock': no in-stock value in row 1"),
])
def test_a_bad_file_exits_2_naming_file_and_column_with_nothing_applied(
        tmp_path: Path, name: str, content: str | bytes | pd.DataFrame | None, args: list[str], message: str) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    before = tmp_path / "before.csv"
    before.write_text("shop,item_id\n1,old\n")
    assert _import(str(before), "--store-column", "shop", "--state", state).exit_code == 0
    path = tmp_path / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = _import(str(path), "--store-column", "shop", *args, "--state", state)
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and message in error and str(path) in error, error
    assert "Traceback" not in result.output
    assert _stock(state) == {"1": (["old"], [], True)}, "nothing of the file applied"


def test_no_state_is_a_clear_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_STATE_PATH", "")
    monkeypatch.delenv("RECSYS_STATE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    count = tmp_path / "count.csv"
    count.write_text("shop,item_id\n1,2\n")
    result = _import(str(count), "--store-column", "shop")
    assert result.exit_code == 2 and "give --state" in result.stderr
    wrong = _import(str(count), "--store-column", "shop", "--state", "mysql://x")
    assert wrong.exit_code == 2 and "--state" in wrong.stderr
