"""A store system's whole stock count from a file: read and checked whole before anything is applied, then applied
as one snapshot per store, each atomic (``recsys stock import``, and its benchmark).

The file is parquet (``.parquet``, ``.pq``) or CSV (``.tsv``: tab-separated), one row per store and item: a store
column, an item column and, optionally, an in-stock column. Ids are read as text, so ``007`` stays ``007`` (integer
columns of a parquet file are written out in decimal). The in-stock column is boolean-like: booleans, 0/1, or
true/false, yes/no, y/n, t/f in any case; without it, every listed row means in stock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.state.inventory import StockStore, StockUpdate

DEFAULT_ITEM_COLUMN: Final[str] = "item_id"
#: read when the file has it and no other in-stock column is named
DEFAULT_IN_STOCK_COLUMN: Final[str] = "in_stock"
_TRUE: Final[tuple[str, ...]] = ("true", "t", "yes", "y", "1")
_FALSE: Final[tuple[str, ...]] = ("false", "f", "no", "n", "0")
_PARQUET_SUFFIXES: Final[tuple[str, ...]] = (".parquet", ".pq")
_PARQUET_MAGIC: Final[bytes] = b"PAR1"


class StockFileError(ValueError):
    """The file cannot be imported; the message is one line that names the file (and the column)."""


@dataclass(frozen=True, slots=True)
class StockColumns:
    """Which columns of the file say what."""

    store: str
    item: str = DEFAULT_ITEM_COLUMN
    in_stock: str | None = None  # None: DEFAULT_IN_STOCK_COLUMN when the file has it, else every row is in stock


@dataclass(frozen=True, slots=True)
class StockFile:
    """A checked file: its rows grouped per store, in the file's order."""

    path: Path
    snapshots: dict[str, list[StockUpdate]]
    rows: int
    in_stock_column: str | None  # the column read, None when every row meant in stock
    read_s: float


def read_stock_file(path: str | Path, columns: StockColumns) -> StockFile:
    """Read and check the whole file (raises :class:`StockFileError` with one line naming the file and the
    column): the columns exist, no id is empty or missing, the in-stock column is boolean-like and no item is listed
    twice for a store."""
    started = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise StockFileError(f"{path}: no such file")
    if not path.is_file():
        raise StockFileError(f"{path}: not a file")
    parquet = _is_parquet(path)
    names = _column_names(path, parquet)
    in_stock = columns.in_stock
    if in_stock is None and DEFAULT_IN_STOCK_COLUMN in names:
        in_stock = DEFAULT_IN_STOCK_COLUMN
    wanted = list(dict.fromkeys(name for name in (columns.store, columns.item, in_stock) if name is not None))
    for name in wanted:
        if name not in names:
            shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise StockFileError(f"{path}: no column {name!r} (its columns: {shown})")
    table = _read(path, parquet, wanted)
    stores = _ids(table.column(columns.store), path, columns.store)
    items = _ids(table.column(columns.item), path, columns.item)
    flags = _flags(table.column(in_stock), path, in_stock) if in_stock is not None else [True] * table.num_rows
    twice = pd.DataFrame({"store": stores, "item": items}).duplicated()
    if twice.any():
        row = int(twice.to_numpy().argmax())
        raise StockFileError(f"{path}: column {columns.item!r}: item {items[row]!r} is listed twice for store "
                             f"{stores[row]!r} (row {row + 1}); list each item once per store")
    snapshots: dict[str, list[StockUpdate]] = {}
    for store, item, flag in zip(stores, items, flags, strict=True):
        updates = snapshots.get(store)
        if updates is None:
            updates = snapshots[store] = []
        updates.append(StockUpdate(item, flag, store))
    return StockFile(path, snapshots, table.num_rows, in_stock, time.perf_counter() - started)


def apply_snapshots(stock: StockStore, file: StockFile, unlisted_out: bool) -> Iterator[tuple[str, int]]:
    """Apply the file as one snapshot per store, in the file's order of stores, yielding each store and its
    sequence number once that store's snapshot is committed (so a caller knows how far it got when the database
    fails: applying a snapshot again changes nothing, so the whole file may simply be imported again)."""
    for store, updates in file.snapshots.items():
        yield store, stock.save_snapshot(store, updates, unlisted_out)


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return True
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return False
    try:
        with path.open("rb") as file:
            return file.read(4) == _PARQUET_MAGIC
    except OSError as exc:
        raise StockFileError(f"{path}: cannot read it: {exc.strerror}") from exc


def _csv_options(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    import pyarrow.csv as pacsv

    options: dict[str, Any] = {"parse_options": pacsv.ParseOptions(
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",")}
    if names is not None:  # ids and flags as text, exactly as written ("007", "yes"); an empty field is ""
        options["convert_options"] = pacsv.ConvertOptions(
            include_columns=names, column_types={name: pa.string() for name in names}, strings_can_be_null=False)
    return options


def _unreadable(path: Path, kind: str, exc: Exception) -> StockFileError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
    reason = reason.splitlines()[0] if reason else type(exc).__name__
    return StockFileError(f"{path}: cannot read it as {kind}: {reason}")


def _column_names(path: Path, parquet: bool) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if parquet:
            return list(pq.read_schema(path).names)
        reader = pacsv.open_csv(path, **_csv_options(path))
        try:
            return list(reader.schema.names)
        finally:
            reader.close()
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, "parquet" if parquet else "CSV", exc) from exc


def _read(path: Path, parquet: bool, names: list[str]) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if parquet:
            return pq.read_table(path, columns=names)
        return pacsv.read_csv(path, **_csv_options(path, names))
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, "parquet" if parquet else "CSV", exc) from exc


def _first(mask: pa.ChunkedArray) -> int | None:
    """The first row where ``mask`` is true (None: none is)."""
    found = pc.index(mask, True).as_py()
    return None if found is None or found < 0 else int(found)


def _ids(column: pa.ChunkedArray, path: Path, name: str) -> list[str]:
    """A column of ids as text; raises when one is missing or empty, or the column holds no ids."""
    where = f"{path}: column {name!r}"
    row = _first(pc.is_null(column)) if column.null_count else None
    if row is not None:
        raise StockFileError(f"{where}: no id in row {row + 1}")
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind):  # integer ids a writer turned into floats (a column that had nulls once)
        if len(column) and not pc.all(pc.equal(pc.floor(column), column)).as_py():
            raise StockFileError(f"{where}: holds fractional numbers, not ids (text or integers)")
        column, kind = column.cast(pa.int64()), pa.int64()
    if pa.types.is_integer(kind):
        column = column.cast(pa.string())
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise StockFileError(f"{where}: holds {kind}, not ids (text or integers)")
    row = _first(pc.equal(column, ""))
    if row is not None:
        raise StockFileError(f"{where}: empty id in row {row + 1}")
    return [str(value) for value in column.to_pylist()]


def _flags(column: pa.ChunkedArray, path: Path, name: str) -> list[bool]:
    """A boolean-like column as booleans; raises naming the first value that is not one."""
    where = f"{path}: column {name!r}"
    row = _first(pc.is_null(column)) if column.null_count else None
    if row is not None:
        raise StockFileError(f"{where}: no in-stock value in row {row + 1}")
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_boolean(kind):
        return [bool(value) for value in column.to_pylist()]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        known = pc.is_in(column, value_set=pa.array([0, 1], type=kind))
        truth = pc.equal(column, pa.scalar(1, type=kind))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        truth = pc.is_in(text, value_set=pa.array(_TRUE))
        known = pc.or_(truth, pc.is_in(text, value_set=pa.array(_FALSE)))
    else:
        raise StockFileError(f"{where}: holds {kind}, not in-stock values (true/false, yes/no or 1/0)")
    row = _first(pc.invert(known))
    if row is not None:
        raise StockFileError(f"{where}: {column[row].as_py()!r} in row {row + 1} is not an in-stock value "
                             "(true/false, yes/no, y/n, t/f or 1/0)")
    return [bool(value) for value in truth.to_pylist()]
