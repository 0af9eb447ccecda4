"""Finding and reading a source's files: a CSV/TSV or parquet file, a directory of parquet parts (hive partitions
included) or a glob, read column-pruned to the columns a mapping names, with the columns checked."""

from __future__ import annotations

import glob
import os
import re
from collections import defaultdict
from collections.abc import Callable, Collection
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from recsys.domain.schema import DataValidationError
from training.mapping import ColumnMapping, MappedColumns

#: a parquet part file (Spark/pyarrow write ``part-0.parquet``, ``part-00000-<uuid>.snappy.parquet``)
_PARQUET = (".parquet", ".pq")


def _suffix(path: Path) -> str:
    return "".join(path.suffixes).lower()


def is_parquet(path: Path) -> bool:
    return _suffix(path).endswith(_PARQUET)


def _is_text(path: Path) -> bool:
    suffix = _suffix(path)
    return any(ext in suffix for ext in (".csv", ".tsv")) or suffix.endswith(".txt")


def _parquet_parts(directory: Path) -> list[Path]:
    """Parquet files in a directory and its (hive-style ``key=value``) subdirectories; ``_``/``.`` names are
    metadata (``_SUCCESS``, ``.crc``) and skipped, as pyarrow does."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and is_parquet(p)
                  and not any(part.startswith(("_", ".")) for part in p.relative_to(directory).parts))


#: a URL's scheme, before ``:/`` (two letters at least: ``C:/`` is a Windows drive)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


def url_scheme(source: str | Path) -> str | None:
    """The scheme of a ``--data``/``--catalog`` source given as a URL (``s3a``, ``file``), None for a path."""
    match = _SCHEME.match(str(source))
    return match.group(1).lower() if match else None


def local_path(source: str | Path) -> str:
    """A source as a local path: a ``file:`` URL as its path, a path as it is. Any other URL is refused with a
    message that says what reads it: this engine reads the files of this machine only."""
    scheme = url_scheme(source)
    if scheme is None:
        return str(source)
    if scheme == "file":
        return url2pathname(urlparse(str(source)).path)
    raise DataValidationError(f"{source}: the single-machine engine reads local files and file: URLs, not "
                              f"{scheme}:// URLs: train with --engine spark, which reads them (see docs/spark.md), "
                              "or copy the data to this machine")


def _resolve(source: str | Path) -> tuple[list[Path], Path | None]:
    """The files a ``--data``/``--catalog`` source names (a file, a directory of parquet parts or a glob, as a path
    or a ``file:`` URL) and the base directory of hive-style partitions (``date=2017-10-01/``) when there is one."""
    text = local_path(source)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        files = [f for m in matches for f in (_parquet_parts(m) if m.is_dir() else [m])]
        if not files:
            raise DataValidationError(f"{text}: no files match this pattern")
        base = Path(os.path.commonpath([str(f.parent) for f in files]))
        return files, base
    path = Path(text)
    if path.is_dir():
        files = _parquet_parts(path)
        if not files:
            raise DataValidationError(f"{path}: empty directory: no .parquet files in it or its partition folders")
        return files, path
    if not path.exists():
        raise DataValidationError(f"file not found: {path}")
    return [path], None


def _found(columns: list[str]) -> str:
    shown = ", ".join(map(str, columns[:25]))
    return shown + (f" and {len(columns) - 25} more" if len(columns) > 25 else "")


def check_columns(label: str, columns: list[str], mapping: MappedColumns, section: str) -> None:
    missing = {key: column for key, column in mapping.must_exist().items() if column not in columns}
    if section == "events" and isinstance(mapping, ColumnMapping) and mapping.types is not None \
            and (mapping.event_type is None or mapping.event_type not in columns):
        missing["event_type"] = str(mapping.event_type)
    if section == "catalog" and "item_id" in missing:
        raise DataValidationError(f"{label}: catalog has no item id column '{missing['item_id']}' (mapping key "
                                  f"catalog.item_id); found {_found(columns)}")
    if missing:
        keys = ", ".join(f"{section}.{key}" for key in missing)
        raise DataValidationError(f"{label}: missing required column(s) {', '.join(missing.values())} "
                                  f"(mapping keys {keys}); found {_found(columns)}")


def _read_parquet(files: list[Path], base: Path | None, label: str, mapping: MappedColumns, section: str,
                  categorical: Collection[str] = ()) -> pd.DataFrame:
    """Column-pruned parquet read: only the mapped columns of every part (hive partition keys are columns). The
    ``categorical`` text columns come as pandas categoricals straight from parquet's dictionary pages, never as a
    Python string per row."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    try:
        parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(categorical)))
        dataset = ds.dataset([str(f) for f in files], format=parquet, partitioning="hive",
                             partition_base_dir=str(base) if base else None)
        names = dataset.schema.names
        check_columns(label, names, mapping, section)
        return dataset.to_table(columns=[c for c in names if c in mapping.wanted()]).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        for part in files:  # name the part that cannot be read
            try:
                pq.read_metadata(part)
            except (pa.ArrowException, OSError) as part_exc:
                raise DataValidationError(f"{part}: unreadable parquet file: {part_exc}") from exc
        raise DataValidationError(f"{label}: cannot read: {exc}") from exc


def _read_text(path: Path, mapping: MappedColumns, section: str, categorical: Collection[str] = ()
               ) -> pd.DataFrame:
    """Every column as text; the ``categorical`` ones as categoricals of text (each distinct value held once)."""
    options = {"sep": "\t" if ".tsv" in _suffix(path) else ",", "dtype": str, "keep_default_na": False,
               "na_values": [""]}
    try:
        header = list(pd.read_csv(path, nrows=0, **options).columns)
        check_columns(str(path), header, mapping, section)
        dtypes = defaultdict(lambda: str, {name: "category" for name in categorical if name in header})
        return pd.read_csv(path, usecols=[c for c in header if c in mapping.wanted()], **{**options, "dtype": dtypes})
    except (UnicodeDecodeError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"{path}: cannot read: {exc}") from exc


def supported_files(source: str | Path) -> tuple[list[Path], Path | None]:
    """:func:`_resolve`, refusing a file that is neither CSV/TSV nor parquet (every engine reads these only)."""
    files, base = _resolve(source)
    unsupported = [f for f in files if not (is_parquet(f) or _is_text(f))]
    if unsupported:
        raise DataValidationError(f"{unsupported[0]}: unsupported file format {unsupported[0].suffix!r} "
                                  "(use .csv, .tsv or .parquet)")
    return files, base


#: reads a source's mapped columns: (source, mapping section, section name) -> frame (see :func:`read_columns`)
ColumnReader = Callable[[str | Path, MappedColumns, str], pd.DataFrame]


def read_columns(source: str | Path, mapping: MappedColumns, section: str, categorical: Collection[str] = ()
                 ) -> pd.DataFrame:
    """The mapped columns of a source: a CSV/TSV/parquet file, a directory of parquet parts or a glob.
    A column a key sets explicitly (or a required one) must be there; the rest are read when present.
    ``categorical``: text columns to read as categoricals where the format allows (parquet's dictionary-encoded
    text, CSV); a caller still converts the rest (numbers, partition keys) itself."""
    files, base = supported_files(source)
    parquet = [f for f in files if is_parquet(f)]
    frames = [_read_parquet(parquet, base, str(source), mapping, section, categorical)] if parquet else []
    frames += [_read_text(f, mapping, section, categorical) for f in files if not is_parquet(f)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
