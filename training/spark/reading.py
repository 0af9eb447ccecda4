"""``--data`` sources read by Spark into the canonical events schema, with ``training.loaders``' rules.

The same mapping types (``training.mapping``), the same column checks and messages, and the same skip reasons
counted in the source's report. A local path (file, directory of parquet parts, hive partitions, glob) is resolved
as the single-machine loader resolves it, so a missing file or an empty directory fails the same way; a URL Spark
reads (``s3a://``, ``hdfs://``, ``gs://``) goes to Spark as it is. ``completejourney`` is loaded on the driver and
handed to Spark. The catalog (one row per item) is collected to the driver: a local path is read there by the
single-machine loader, a URL by Spark.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from recsys.domain.schema import (
    EVENT_COLUMNS,
    LIST_PRICE,
    DataValidationError,
    ValidationReport,
    catalog_columns,
)
from training.loaders.completejourney import COMPLETEJOURNEY, load_completejourney
from training.loaders.event_log import EPOCH_RANGE, catalog_from_log
from training.loaders.files import check_columns, is_parquet, supported_files
from training.loaders.products import read_catalog_report
from training.mapping import ColumnMapping, DataMapping, MappedColumns

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkFrame

#: the times a pandas timestamp holds, in microseconds since 1970
_PANDAS_MICROS = (pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000)
#: a source Spark reads itself: the driver cannot list or glob it
_REMOTE_SCHEMES = ("s3a://", "s3://", "s3n://", "hdfs://", "gs://", "abfs://", "abfss://", "wasbs://", "dbfs:/",
                   "file:/")


def read_sources(spark: SparkSession, sources: list[str], mapping: DataMapping | None = None,
                 known_event_types: set[str] | None = None, catalog: str | Path | None = None,
                 households: int | None = None) -> tuple[SparkFrame, pd.DataFrame, list[ValidationReport]]:
    """``training.loaders.load_dataset`` for Spark: the events of every source as one Spark DataFrame in the
    canonical schema, the catalog (pandas) and the loaders' reports."""
    from training.spark.aggregates import events_to_spark

    sources = sources or [COMPLETEJOURNEY]
    mapping = mapping or DataMapping()
    products, catalog_report = (None, None)
    if catalog is not None:  # a URL only Spark can read; its columns then go through the loader's own rules
        remote = str(catalog).startswith(_REMOTE_SCHEMES)
        products, catalog_report = read_catalog_report(catalog, mapping.catalog,
                                                 partial(_spark_columns, spark) if remote else None)
    frames: list[SparkFrame] = []
    catalogs: list[pd.DataFrame] = []
    reports: list[ValidationReport] = []
    for source in sources:
        if source == COMPLETEJOURNEY:
            dataset = load_completejourney(households=households, attributes=mapping.catalog.attributes)
            frames.append(events_to_spark(spark, dataset.events))
            catalogs.append(dataset.catalog)
            reports.extend(dataset.reports)
            continue
        events, report, log_catalog = read_event_log(spark, source, mapping.events, known_event_types,
                                                     with_catalog=products is None)
        if products is not None:
            events = _join_catalog(spark, events, products, report)
        else:
            catalogs.append(log_catalog)
        frames.append(events)
        reports.append(report)
    if products is not None:
        list_price = products["price"].where(products["price"] > 0)
        described = products[catalog_columns(products)].assign(**{LIST_PRICE: list_price})
        catalogs.insert(0, described)
        reports.insert(0, catalog_report)  # type: ignore[arg-type]
    events = frames[0]
    for frame in frames[1:]:
        events = events.unionByName(frame)
    combined = pd.concat(catalogs, ignore_index=True).drop_duplicates("item_id", keep="first").reset_index(drop=True)
    return events, combined, reports


def _files(source: str) -> tuple[list[str], str | None, str]:
    """The paths Spark reads for ``source``, the partition base directory, and the format (parquet or csv)."""
    if source.startswith(_REMOTE_SCHEMES):
        text = source.rstrip("/")
        kind = "csv" if any(ext in text.lower() for ext in (".csv", ".tsv", ".txt")) else "parquet"
        return [source], None, kind
    files, base = supported_files(source)
    kinds = {is_parquet(f) for f in files}
    if len(kinds) > 1:
        raise DataValidationError(f"{source}: mixes parquet and text files; give them as separate --data sources")
    kind = "parquet" if kinds == {True} else "csv"
    return [str(f) for f in files], str(base) if base else None, kind


def _read(spark: SparkSession, source: str) -> SparkFrame:
    paths, base, kind = _files(source)
    if kind == "parquet":
        reader = spark.read.option("basePath", base) if base else spark.read
        return reader.parquet(*paths)
    if not source.startswith(_REMOTE_SCHEMES) and all(Path(p).stat().st_size == 0 for p in paths):
        raise DataValidationError(f"{source}: cannot read: the file is empty (no header, no rows)")
    sep = "\t" if ".tsv" in source.lower() or any(".tsv" in p.lower() for p in paths) else ","
    # every column as text, as the single-machine loader reads CSV; an empty field is missing
    return spark.read.csv(paths, header=True, sep=sep, inferSchema=False, enforceSchema=False)


def _spark_columns(spark: SparkSession, source: str | Path, mapping: MappedColumns, section: str) -> pd.DataFrame:
    """``loaders.files.read_columns`` through Spark, collected to the driver: the source's mapped columns (a column a
    key sets explicitly, or a required one, must be there; the rest are read when present)."""
    raw = _read(spark, str(source))
    check_columns(str(source), raw.columns, mapping, section)
    return raw.select(*[f"`{c}`" for c in raw.columns if c in mapping.wanted()]).toPandas()


def read_event_log(spark: SparkSession, source: str, mapping: ColumnMapping | None = None,
                   known_event_types: set[str] | None = None, with_catalog: bool = True
                   ) -> tuple[SparkFrame, ValidationReport, pd.DataFrame]:
    """``training.loaders.read_event_log`` in Spark: the canonical events, the source's report and (with
    ``with_catalog``) the catalog derived from the log's own item columns."""
    from pyspark.sql import functions as F

    mapping = mapping or ColumnMapping()
    raw = _read(spark, source)
    check_columns(source, raw.columns, mapping, "events")
    raw = raw.withColumn("_row", F.monotonically_increasing_id())  # file order: the "last" description of an item

    def column(name: str | None) -> Column | None:
        return F.col(f"`{name}`") if name and name in raw.columns else None

    customer = _clean_id(F.col(f"`{mapping.customer_id}`"))
    item = _clean_id(F.col(f"`{mapping.item_id}`"))
    timestamp, present_time = _timestamp(raw, mapping)
    event_col = column(mapping.event_type)
    event_type = F.lower(F.trim(event_col.cast("string"))) if event_col is not None else F.lit("purchase")
    unmapped = F.lit(False)
    source_type = event_type  # the log's own names, for the report to name those it skips
    if mapping.types is not None and event_col is not None:
        lookup = {s.strip().lower(): t.strip().lower() for s, t in mapping.types.items()}
        mapped = F.create_map(*[F.lit(v) for pair in lookup.items() for v in pair])[event_type]
        unmapped = event_type.isNotNull() & mapped.isNull()
        event_type = mapped
    price_col = column(mapping.price)
    price = F.expr(f"try_cast(`{mapping.price}` as double)") if price_col is not None else F.lit(None).cast("double")
    quantity_col = column(mapping.quantity)
    quantity = F.expr(f"try_cast(`{mapping.quantity}` as double)") if quantity_col is not None else F.lit(1.0)
    session_col = column(mapping.session_id)
    day_session = F.concat(customer, F.lit(":"), F.date_format(timestamp, "yyyy-MM-dd"))
    session = F.coalesce(_clean_id(session_col), day_session) if session_col is not None else day_session
    store_col = column(mapping.store_id)
    store = _clean_id(store_col) if store_col is not None else F.lit(None).cast("string")

    checks: list[tuple[str, Column]] = [
        ("unparseable customer id", customer.isNull()),
        ("unparseable item id", item.isNull()),
        ("unparseable timestamp", timestamp.isNull()),
        ("event type not in the mapping", unmapped),
        ("missing event type", event_type.isNull()),
        ("unparseable price", (F.length(F.trim(price_col.cast("string"))) > 0) & price.isNull()
         if price_col is not None else F.lit(False)),
        ("negative price", price < 0),
        ("non-positive quantity", ~(quantity > 0) | quantity.isNull()),
    ]
    if known_event_types is not None:
        checks.append(("unknown event type", event_type.isNotNull() & ~event_type.isin(list(known_event_types))))
    reason: Column | None = None
    for name, bad in checks:  # each bad row counted once, under its first problem
        reason = (F.when(F.coalesce(bad, F.lit(False)), name) if reason is None
                  else reason.when(F.coalesce(bad, F.lit(False)), name))
    canonical = raw.select(
        customer.alias("customer_id"), item.alias("item_id"), session.alias("session_id"),
        event_type.alias("event_type"), timestamp.alias("timestamp"), quantity.cast("double").alias("quantity"),
        F.when(price > 0, price).alias("price"), store.alias("store_id"), reason.alias("_reason"),  # type: ignore[union-attr]
        present_time.alias("_present_time"), F.col(f"`{mapping.timestamp}`").cast("string").alias("_raw_time"),
        "_row",
        *[F.col(f"`{c}`") for c in _description_columns(mapping, raw.columns)],
    ).cache()
    counts = {row["_reason"]: int(row["n"]) for row in
              canonical.groupBy("_reason").agg(F.count(F.lit(1)).alias("n")).collect()}
    report = ValidationReport(source=source, rows_read=sum(counts.values()))
    _check_timestamp_unit(canonical, source, mapping)
    for name, _ in checks:
        report.skip(name, counts.get(name, 0))
    named = {"event type not in the mapping": source_type, "unknown event type": event_type}
    for name, value in named.items():  # named, as the single-machine loader names them
        if counts.get(name):
            rows = (raw.select(reason.alias("_reason"), value.alias("_value")).filter(F.col("_reason") == name)  # type: ignore[union-attr]
                    .groupBy("_value").count().collect())
            report.name_values(name, {row["_value"]: row["count"] for row in rows if row["_value"] is not None})
    good = canonical.filter(F.col("_reason").isNull())
    log_catalog = _log_catalog(good, mapping) if with_catalog else pd.DataFrame()
    return good.select(*EVENT_COLUMNS), report, log_catalog


def _check_timestamp_unit(canonical: SparkFrame, label: str, mapping: ColumnMapping) -> None:
    """``loaders.event_log._parse_timestamps``' checks: most present values unparseable, or epoch numbers whose
    middle value falls outside 1980..2100, mean a wrong ``timestamp_unit``; either fails the file."""
    from pyspark.sql import functions as F

    present, parsed = F.col("_present_time"), F.col("timestamp").isNotNull()
    failed = present & ~parsed
    stats = canonical.agg(
        F.sum(present.cast("int")).alias("present"), F.sum(failed.cast("int")).alias("failed"),
        F.first(F.when(failed, F.col("_raw_time")), ignorenulls=True).alias("failed_example"),
        F.first(F.when(parsed, F.col("_raw_time")), ignorenulls=True).alias("parsed_example"),
        F.percentile_approx(F.expr("unix_micros(timestamp)"), 0.5).alias("middle_us"),
    ).first()
    column = f"column '{mapping.timestamp}' (events.timestamp, timestamp_unit = \"{mapping.timestamp_unit}\")"
    n_present, n_failed = int(stats["present"] or 0), int(stats["failed"] or 0)
    if n_failed * 2 > n_present:
        raise DataValidationError(f"{label}: {column}: {n_failed:,} of {n_present:,} values do not parse as "
                                  f"timestamps in this unit, e.g. {stats['failed_example']!r}")
    if mapping.timestamp_unit in ("s", "ms") and stats["middle_us"] is not None:
        middle = pd.Timestamp(int(stats["middle_us"]), unit="us")
        if not EPOCH_RANGE[0] <= middle <= EPOCH_RANGE[1]:
            raise DataValidationError(f"{label}: {column}: values such as {stats['parsed_example']!r} read as year "
                                      f"{middle.year}, outside 1980..2100; check timestamp_unit")


def _clean_id(column: Column) -> Column:
    """``loaders.event_log.clean_id``: trimmed text without a float's ``.0``; empty is missing."""
    from pyspark.sql import functions as F

    text = F.regexp_replace(F.trim(column.cast("string")), r"\.0$", "")
    return F.when(F.length(text) > 0, text)


def _timestamp(raw: SparkFrame, mapping: ColumnMapping) -> tuple[Column, Column]:
    """The event time (UTC) and whether the raw value is present at all (for the wrong-unit check)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    name = f"`{mapping.timestamp}`"
    kind = raw.schema[mapping.timestamp].dataType
    raw_value = F.col(name)
    present = raw_value.isNotNull() & (F.length(F.trim(raw_value.cast("string"))) > 0)
    if isinstance(kind, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        parsed = raw_value.cast("timestamp")
    elif mapping.timestamp_unit == "iso":
        parsed = F.expr(f"try_cast({name} as timestamp)")
    else:
        scale = 1_000_000 if mapping.timestamp_unit == "s" else 1_000
        micros = F.expr(f"try_cast(round(try_cast({name} as double) * {scale}) as bigint)")
        parsed = F.when(micros.isNotNull(), F.timestamp_micros(micros))
    # beyond what pandas' nanoseconds hold (years 1677..2262): not a time, as for the single-machine loader
    in_range = F.unix_micros(parsed).between(_PANDAS_MICROS[0], _PANDAS_MICROS[1])
    return F.when(in_range, parsed), present


def _description_columns(mapping: ColumnMapping, columns: list[str]) -> list[str]:
    names = [mapping.brand, mapping.category, mapping.category_fallback, mapping.package_size]
    return [n for n in dict.fromkeys(names) if n and n in columns and n not in EVENT_COLUMNS]


def _log_catalog(good: SparkFrame, mapping: ColumnMapping) -> pd.DataFrame:
    """``loaders.event_log.catalog_from_log``: per item, the last non-empty description in file order."""
    from pyspark.sql import functions as F

    def last(value: Column) -> Column:
        return F.max_by(value, F.when(value.isNotNull(), F.col("_row")))

    def text(name: str | None) -> Column:
        return (F.when(F.length(F.col(f"`{name}`").cast("string")) > 0, F.col(f"`{name}`").cast("string"))
                if name and name in good.columns else F.lit(None).cast("string"))

    brand = F.lower(F.trim(text(mapping.brand)))
    category = text(mapping.category)
    if mapping.category_fallback and mapping.category_fallback in good.columns:
        fallback = F.concat(F.lit("id:"), _clean_id(F.col(f"`{mapping.category_fallback}`")))
        category = F.coalesce(category, fallback)
    per_item = good.groupBy("item_id").agg(
        last(brand).alias("brand"), last(category).alias("category"),
        last(text(mapping.package_size)).alias("package_size")).toPandas()
    described = mapping.model_copy(update={"brand": "brand", "category": "category", "category_fallback": None,
                                           "package_size": "package_size"})
    return catalog_from_log(per_item, per_item["item_id"], described)


def _join_catalog(spark: SparkSession, events: SparkFrame, products: pd.DataFrame, report: ValidationReport
                  ) -> SparkFrame:
    """``loaders.products.join_catalog``: events of catalog items only (the rest counted), list price filling gaps."""
    from pyspark.sql import functions as F

    list_price = products["price"].where(products["price"] > 0).astype("float64")
    prices = spark.createDataFrame(pd.DataFrame({"item_id": products["item_id"].astype(str),
                                                 "_list_price": list_price}),
                                   schema="item_id string, _list_price double")
    known = prices.withColumn("_in_catalog", F.lit(True))
    joined = events.join(F.broadcast(known), on="item_id", how="left")
    unknown = joined.filter(F.col("_in_catalog").isNull()).count()
    report.skip("item not in catalog", unknown)
    kept = joined.filter(F.col("_in_catalog").isNotNull())
    kept = kept.withColumn("price", F.coalesce(F.col("price"), F.when(~F.isnan("_list_price"), F.col("_list_price"))))
    return kept.select(*EVENT_COLUMNS)
