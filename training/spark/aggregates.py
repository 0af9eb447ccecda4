"""The Spark backend of :class:`training.aggregates.Aggregates`: the single-machine trainer's aggregates, computed in
Spark and collected in its exact layout.

:func:`compute_aggregates` mirrors ``training.aggregates.aggregate``'s validate, catalog, interactions and neighbours
stages:
the same skip reasons and counts, the same weights, the item frame in group order (``training.catalog.sort_items``),
customers sorted by id, and every matrix with the structure and values the pandas code builds. Where the pandas
code rounds to float32 step by step, the Spark expressions do too (each float32 operation is computed in double and
rounded to float, which gives the identical float32 result for +, -, *, / and sqrt). Pair signals are joins on
(customer or session, substitution group): pairs only ever form inside a group, never across the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.domain.config import TrainConfig
from recsys.domain.schema import EVENT_COLUMNS, PURCHASE_TYPES, ValidationReport
from recsys.model.data import GROUP_KEYS, contiguous_ranges
from training.aggregates import PER_ITEM_COLUMNS, Aggregates, items_from_aggregates, size_parse_rate, with_segments
from training.assortment import SalesEvidence
from training.events import no_usable_events
from training.spark.als import ratings as als_ratings

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkFrame

MICROS_PER_SECOND = 1_000_000.0
SECONDS_PER_DAY = 86400.0


@dataclass
class SparkAggregates(Aggregates):
    """:class:`training.aggregates.Aggregates` computed in Spark, with what the Spark trainer keeps cached for its
    later stages (the caller unpersists them)."""

    events: SparkFrame | None = None  # the validated events, when asked to keep them (the ranker stage's)
    ratings: SparkFrame | None = None  # MLlib's (user, item, rating) rows of customer_weight, when asked


def events_to_spark(spark: SparkSession, events: pd.DataFrame) -> SparkFrame:
    """A pandas events frame (the canonical schema) as a Spark DataFrame, ids as plain strings."""
    from pyspark.sql import types as T

    schema = T.StructType([
        T.StructField("customer_id", T.StringType()), T.StructField("item_id", T.StringType()),
        T.StructField("session_id", T.StringType()), T.StructField("event_type", T.StringType()),
        T.StructField("timestamp", T.TimestampType()), T.StructField("quantity", T.DoubleType()),
        T.StructField("price", T.DoubleType()), T.StructField("store_id", T.StringType()),
    ])
    frame = pd.DataFrame({
        **{column: _strings(events[column]) for column in ("customer_id", "item_id", "session_id", "event_type",
                                                           "store_id")},
        "timestamp": events["timestamp"].astype("datetime64[ns]"),
        "quantity": events["quantity"].astype("float64"),
        "price": events["price"].astype("float64"),
    })[list(EVENT_COLUMNS)]
    return spark.createDataFrame(frame, schema=schema)


def _strings(values: pd.Series) -> pd.Series:
    """Ids as Python strings, missing as None (Arrow's null)."""
    text = values.astype(object)
    return text.where(values.notna(), None).map(lambda v: v if v is None else str(v))


def _f32(column: Column) -> Column:
    """A value rounded to float32 (kept as double): one float32 operation of the pandas code."""
    return column.cast("float").cast("double")


def prepare_events(events: SparkFrame, catalog_ids: SparkFrame, config: TrainConfig, train_until: datetime | None,
                   report: ValidationReport, now: pd.Timestamp | None = None) -> SparkFrame:
    """``events.prepare_events`` in Spark: the usable events (plus ``t_us``, the time in microseconds), with
    each skipped row counted once, under the first of the trainer's reasons that applies."""
    from pyspark.sql import functions as F

    # NaN and null are one "missing" in pandas (duplicates, medians): make them one in Spark too
    events = events.select(
        *[F.col(c).cast("string").alias(c) for c in ("customer_id", "item_id", "session_id", "event_type",
                                                     "store_id")],
        F.col("timestamp").cast("timestamp").alias("timestamp"),
        *[F.when(F.isnan(F.col(c).cast("double")), None).otherwise(F.col(c).cast("double")).alias(c)
          for c in ("quantity", "price")],
    ).withColumn("t_us", F.expr("unix_micros(timestamp)"))
    known_types = list(config.event_weights)
    future_us = _micros((now or pd.Timestamp.now()) + pd.Timedelta(days=1))
    until_us = _micros(pd.Timestamp(train_until)) if train_until is not None else None
    in_catalog = F.col("_known").isNotNull()
    reason = (F.when(~F.col("event_type").isin(known_types) | F.col("event_type").isNull(), "unknown event type")
              .when(~in_catalog, "item not in catalog")
              .when(F.col("t_us") > F.lit(future_us), "timestamp in the future"))
    if until_us is not None:
        reason = reason.when(F.col("t_us") > F.lit(until_us), "after --train-until")
    known = catalog_ids.select(F.col("item_id"), F.lit(True).alias("_known")).distinct()
    tagged = events.join(F.broadcast(known), on="item_id", how="left").withColumn("_reason", reason).cache()
    counts = {row["_reason"]: int(row["count"]) for row in tagged.groupBy("_reason").count().collect()}
    report.rows_read = sum(counts.values())
    kept_rows = counts.pop(None, 0)
    order = ["unknown event type", "item not in catalog", "timestamp in the future", "after --train-until"]
    for name in order:
        report.skip(name, counts.get(name, 0))
    if counts.get("unknown event type"):  # named, as the pandas engine names them
        unknown = tagged.filter(F.col("_reason") == "unknown event type").groupBy("event_type").count().collect()
        report.name_values("unknown event type", {row["event_type"]: row["count"] for row in unknown
                                                  if row["event_type"] is not None})
    kept = tagged.filter(F.col("_reason").isNull()).drop("_reason", "_known").select(*EVENT_COLUMNS, "t_us")
    # identical rows are identical in every check above, so duplicates among kept rows are kept rows - distinct
    kept = kept.dropDuplicates(list(EVENT_COLUMNS)).cache()
    distinct_rows = kept.count()
    report.skip("duplicate row", kept_rows - distinct_rows)
    tagged.unpersist()
    if distinct_rows == 0:
        raise no_usable_events(report)
    return kept


def _micros(timestamp: pd.Timestamp) -> int:
    """A naive timestamp (read as UTC, like the Spark session) in microseconds since 1970."""
    if timestamp.tzinfo is not None:
        timestamp = timestamp.tz_convert("UTC").tz_localize(None)
    return int(timestamp.value // 1000)


def _age_days(end_us: int) -> Column:
    """``(data_end - timestamp).total_seconds() / 86400``: seconds first, as pandas rounds them."""
    from pyspark.sql import functions as F

    return ((F.lit(end_us) - F.col("t_us")) / F.lit(MICROS_PER_SECOND)) / F.lit(SECONDS_PER_DAY)


def items_frame(catalog: pd.DataFrame, per_item: pd.DataFrame, end_us: int) -> pd.DataFrame:
    """``aggregates._build_items`` from Spark's per-item aggregates (index ``item_id``: price, popularity, trend,
    n_customers, trial_trend, first_us) and the data's end in microseconds."""
    # seconds first, then days, as pandas' total_seconds() / 86400 rounds them
    days_on_sale = ((end_us - per_item["first_us"]) / MICROS_PER_SECOND) / SECONDS_PER_DAY
    return items_from_aggregates(catalog, {**{c: per_item[c] for c in PER_ITEM_COLUMNS if c != "days_on_sale"},
                                           "days_on_sale": days_on_sale})


def compute_aggregates(spark: SparkSession, events: SparkFrame, catalog: pd.DataFrame, config: TrainConfig,
                       train_until: datetime | None = None, *, now: pd.Timestamp | None = None,
                       keep_events: bool = False, keep_ratings: bool = False) -> SparkAggregates:
    """Everything the single-machine trainer derives from the events, from a Spark DataFrame in the canonical
    schema and the catalog (one row per item: small enough for the driver). ``keep_events``: also return the
    validated events, still cached; ``keep_ratings``: also the customer x item weights as MLlib's ALS input
    (:func:`training.spark.als.ratings`), cached (the caller unpersists both)."""
    from pyspark.sql import functions as F

    report = ValidationReport(source="trainer")
    if not pd.api.types.is_string_dtype(catalog["item_id"]):  # keep the loader's string dtype: it reaches the model
        catalog = catalog.assign(item_id=catalog["item_id"].astype(str))
    catalog_ids = spark.createDataFrame(pd.DataFrame({"item_id": catalog["item_id"].drop_duplicates()}),
                                        schema="item_id string")
    kept = prepare_events(events, catalog_ids, config, train_until, report, now)

    span = kept.agg(F.min("t_us").alias("start"), F.max("t_us").alias("end")).first()
    start_us, end_us = int(span["start"]), int(span["end"])
    age = _age_days(end_us)
    event_weight = F.create_map(*[F.lit(v) for pair in config.event_weights.items() for v in pair])[F.col("event_type")]
    is_purchase = F.col("event_type").isin(list(PURCHASE_TYPES))
    weighted = kept.select(
        "customer_id", "item_id", "session_id", "event_type", "store_id", "price", "quantity", "t_us",
        (event_weight.cast("double") * F.pow(F.lit(0.5), age / F.lit(config.recency_half_life_days))).alias("w"),
        (event_weight.cast("double") * F.pow(F.lit(0.5), age / F.lit(config.trend_half_life_days))).alias("tw"),
        is_purchase.alias("is_purchase"),
    ).cache()

    # per item: what _build_items reads from the events
    per_item = weighted.groupBy("item_id").agg(
        F.expr("percentile(price, 0.5)").alias("price"), F.sum("w").alias("popularity"),
        F.sum("tw").alias("trend"), F.countDistinct("customer_id").alias("n_customers"),
        F.min("t_us").alias("first_us"))
    first_buy = (weighted.filter("is_purchase").groupBy("customer_id", "item_id").agg(F.min("t_us").alias("t_us"))
                 .select("item_id", F.pow(F.lit(0.5), age / F.lit(config.trend_half_life_days)).alias("trial")))
    trial = first_buy.groupBy("item_id").agg(F.sum("trial").alias("trial_trend"))
    per_item_frame = per_item.join(trial, on="item_id", how="left").toPandas().set_index("item_id")
    items = items_frame(catalog, per_item_frame, end_us)
    parse_rate = size_parse_rate(items)
    group_of, _ = contiguous_ranges(items[list(GROUP_KEYS)])
    n_items = len(items)

    # integer codes: items in group order, customers in id order (the driver sorts the distinct ids)
    item_codes = spark.createDataFrame(pd.DataFrame({"item_id": items["item_id"].astype(str),
                                                     "i": np.arange(n_items, dtype=np.int64),
                                                     "g": group_of.astype(np.int64)}),
                                       schema="item_id string, i long, g long")
    customer_ids = np.sort(np.asarray([r[0] for r in weighted.select("customer_id").distinct().collect()],
                                      dtype=object).astype(str))
    customers = pd.Index(customer_ids)
    customer_codes = spark.createDataFrame(pd.DataFrame({"customer_id": customer_ids.astype(object),
                                                         "c": np.arange(len(customers), dtype=np.int64)}),
                                           schema="customer_id string, c long")
    coded = (weighted.join(F.broadcast(item_codes), on="item_id").join(customer_codes, on="customer_id")
             .select("c", "i", "g", F.col("session_id").alias("b"), "store_id", "event_type", "price", "quantity",
                     "t_us", "w", "tw", "is_purchase")
             .cache())
    weighted.unpersist()

    weight, count, recent = _profiles(coded, len(customers), n_items)
    ratings = None
    if keep_ratings:  # from the executors' aggregate, so that MLlib's input never passes through the driver
        ratings = als_ratings(coded.groupBy("c", "i").agg(F.sum("w").alias("w"))).cache()
        ratings.count()  # materialised while ``coded`` is still cached
    stores, store_items, home_store = _stores(coded, len(customers), n_items)
    customer_stats = _customer_stats(coded, len(customers), end_us)
    sales = _sales_evidence(coded, end_us, config.assortment.holdout_days)
    purchases = coded.filter("is_purchase")
    bought_instead = cooccurrence(purchases.select(F.col("c").alias("row"), "i", "g"), n_items,
                                  config.max_neighbours, conditional=True)
    switched_to, tried = switching(purchases, n_items, config.max_neighbours)
    browse = coded.filter(~F.col("is_purchase")).select(F.col("b").alias("row"), "i", "g")
    viewed_together = cooccurrence(browse, n_items, config.max_neighbours)
    type_counts = {r["event_type"]: int(r["count"]) for r in coded.groupBy("event_type").count().collect()}
    event_count = sum(type_counts.values())
    coded.unpersist()
    if not keep_events:
        kept.unpersist()
    return SparkAggregates(
        report=report, data_start=_timestamp(start_us), data_end=_timestamp(end_us), event_count=event_count,
        event_types=dict(sorted(type_counts.items(), key=lambda kv: (-kv[1], kv[0]))), items=items,
        size_parse_rate=parse_rate, customers=customers, customer_weight=weight, customer_count=count,
        customer_recent=recent, stores=stores, store_items=store_items, home_store=home_store,
        customer_stats=customer_stats, bought_instead=bought_instead, switched_to=switched_to, tried=tried,
        viewed_together=viewed_together, sales=sales,
        events=kept if keep_events else None, ratings=ratings)


def _timestamp(micros: int) -> pd.Timestamp:
    return pd.Timestamp(micros, unit="us").as_unit("ns")


def _collect(frame: SparkFrame) -> pd.DataFrame:
    return frame.toPandas()


def _profiles(coded: SparkFrame, n_customers: int, n_items: int
              ) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """``aggregates._profiles``: customer x item weight, purchase count and recent weight, one structure."""
    from pyspark.sql import functions as F

    agg = _collect(coded.groupBy("c", "i").agg(F.sum("w").alias("w"),
                                               F.sum(F.col("is_purchase").cast("int")).alias("p"),
                                               F.sum("tw").alias("r")))
    agg = agg.iloc[np.lexsort((agg["i"].to_numpy(), agg["c"].to_numpy()))]
    indptr = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(agg["c"].to_numpy(), minlength=n_customers), out=indptr[1:])
    indices = agg["i"].to_numpy(np.int32)
    return tuple(  # type: ignore[return-value]
        sp.csr_matrix((agg[column].to_numpy(np.float32), indices, indptr), shape=(n_customers, n_items))
        for column in ("w", "p", "r")
    )


def _stores(coded: SparkFrame, n_customers: int, n_items: int) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """``aggregates._stores``: store ids (sorted), store x item weight, each customer's most-visited store (most
    baskets; a tie goes to the first store id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    with_store = coded.filter(F.col("store_id").isNotNull())
    per_pair = _collect(with_store.groupBy("store_id", "i").agg(F.sum("w").alias("w")))
    stores = np.sort(per_pair["store_id"].unique().astype(str)) if len(per_pair) else np.empty(0, dtype=str)
    store_row = pd.Index(stores).get_indexer(per_pair["store_id"].astype(str))
    # the pandas code adds float32 weights; a float64 sum rounded once differs from it by float32 rounding only
    store_items = sp.csr_matrix((per_pair["w"].to_numpy(np.float32), (store_row, per_pair["i"].to_numpy())),
                                shape=(len(stores), n_items))
    store_items.sum_duplicates()
    store_items.sort_indices()
    home = np.full(n_customers, -1, dtype=np.int64)
    if len(stores):
        visits = with_store.select("c", "store_id", "b").distinct().groupBy("c", "store_id").count()
        best = Window.partitionBy("c").orderBy(F.col("count").desc(), F.col("store_id").asc())
        chosen = _collect(visits.withColumn("rank", F.row_number().over(best)).filter("rank = 1")
                          .select("c", "store_id"))
        home[chosen["c"].to_numpy()] = pd.Index(stores).get_indexer(chosen["store_id"].astype(str))
    return np.asarray(stores, dtype=object), store_items, home


def _sales_evidence(coded: SparkFrame, end_us: int, holdout_days: float) -> SalesEvidence:
    """``training.assortment.sales_evidence``: events by store, item and whole days of age, aggregated here
    (one row per store and item: small enough for the driver)."""
    from pyspark.sql import functions as F

    aged = coded.select("store_id", "i", "is_purchase", F.floor(_age_days(end_us)).cast("double").alias("age"))
    before = F.when(F.col("age") >= F.lit(holdout_days), F.col("age"))
    in_holdout = F.col("is_purchase") & (F.col("age") < F.lit(holdout_days))
    per_item = _collect(aged.groupBy("i").agg(F.min("age").alias("last_age"), F.min(before).alias("before_age")))
    per_store_item = _collect(
        aged.filter(F.col("store_id").isNotNull()).groupBy("store_id", "i").agg(
            F.min("age").alias("last_age"), F.min(before).alias("before_age"),
            F.sum(F.when(in_holdout, 1).otherwise(0)).cast("long").alias("holdout_lines")))
    return SalesEvidence(per_store_item.rename(columns={"i": "item"}).astype({"store_id": str}),
                         per_item.rename(columns={"i": "item"}))


def _customer_stats(coded: SparkFrame, n_customers: int, end_us: int) -> pd.DataFrame:
    """``aggregates._customer_stats``: recency, baskets and spend per customer, and the RFM segment."""
    from pyspark.sql import functions as F

    spend = F.coalesce(F.col("price"), F.lit(0.0)) * F.coalesce(F.col("quantity"), F.lit(1.0))
    per = _collect(coded.filter("is_purchase").groupBy("c").agg(
        F.max("t_us").alias("last_us"), F.countDistinct("b").alias("baskets"), F.sum(spend).alias("spend")))
    per = per.set_index("c").reindex(range(n_customers))
    recency = (((end_us - per["last_us"]) / MICROS_PER_SECOND) / SECONDS_PER_DAY).round(1)
    return with_segments(pd.DataFrame({"recency_days": recency.astype("float64"),
                                       "baskets": per["baskets"].fillna(0).astype("int64"),
                                       "spend": per["spend"].fillna(0.0).round(2).astype("float64")}))


def cooccurrence(lines: SparkFrame, n_items: int, max_neighbours: int, conditional: bool = False) -> sp.csr_matrix:
    """``neighbours.cooccurrence`` in Spark: ``lines`` has ``row`` (customer or session), ``i`` and ``g``.

    A basket is a (row, group); pairs come from joining baskets with themselves on (row, group), so only items of
    one group ever pair. Values in float32 steps as the pandas code computes them."""
    from pyspark.sql import functions as F

    basket = lines.select("row", "i", "g").distinct().cache()
    support = basket.groupBy("i").agg(F.count(F.lit(1)).cast("double").alias("support"))
    left = basket.select("row", "g", F.col("i").alias("a"))
    right = basket.select("row", "g", F.col("i").alias("b"))
    co = (left.join(right, on=["row", "g"]).filter(F.col("a") != F.col("b"))
          .groupBy("a", "b").agg(F.count(F.lit(1)).cast("double").alias("co")))
    co = (co.join(F.broadcast(support.withColumnRenamed("i", "a").withColumnRenamed("support", "sa")), on="a")
          .join(F.broadcast(support.withColumnRenamed("i", "b").withColumnRenamed("support", "sb")), on="b"))
    if conditional:
        denominator = F.col("sa")
    else:
        denominator = _f32(F.sqrt(_f32(F.col("sa") * F.col("sb"))))
    value = _f32(_f32(F.col("co") / denominator) * _f32(F.col("co") / _f32(F.col("co") + F.lit(2.0))))
    result = _top_per_row(co.select(F.col("a").alias("x"), F.col("b").alias("i"), value.alias("v")), n_items,
                          max_neighbours)
    basket.unpersist()
    return result


def switching(purchases: SparkFrame, n_items: int, max_neighbours: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``neighbours.switching`` in Spark: ``purchases`` has ``c`` (customer), ``b`` (basket), ``i`` and ``g``.
    The usual item of a (customer, group) is the one in the most baskets, a tie to the lower item index."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = purchases.select("c", "b", "i", "g").distinct().cache()
    per_item = frame.groupBy("c", "g", "i").agg(F.count(F.lit(1)).alias("n"))
    first = Window.partitionBy("c", "g").orderBy(F.col("n").desc(), F.col("i").asc())
    usual = (per_item.withColumn("rank", F.row_number().over(first)).filter((F.col("rank") == 1) & (F.col("n") >= 2))
             .select("c", "g", F.col("i").alias("x")).cache())
    bought = per_item.join(usual, on=["c", "g"]).filter(F.col("i") != F.col("x"))
    loyal = usual.groupBy("x").agg(F.count(F.lit(1)).alias("loyal"))
    trial_counts = bought.groupBy("x", "i").agg(F.count(F.lit(1)).alias("n")).join(loyal, on="x")
    trial = trial_counts.select("x", "i", _shrunk_share("n", "loyal").alias("v"))

    lines = frame.join(usual, on=["c", "g"])
    holds_x = lines.groupBy("c", "b", "g").agg(F.max((F.col("i") == F.col("x")).cast("int")).alias("holds_x"))
    switched = lines.join(holds_x.filter(F.col("holds_x") == 0), on=["c", "b", "g"])
    totals = switched.select("c", "b", "g", "x").distinct().groupBy("x").agg(F.count(F.lit(1)).alias("total"))
    switch_counts = switched.groupBy("x", "i").agg(F.count(F.lit(1)).alias("n")).join(totals, on="x")
    switch = switch_counts.select("x", "i", _shrunk_share("n", "total").alias("v"))
    result = _top_per_row(switch, n_items, max_neighbours), _top_per_row(trial, n_items, max_neighbours)
    usual.unpersist()
    frame.unpersist()
    return result


def _shrunk_share(count: str, total: str) -> Column:
    """``n / total * (n / (n + 2))`` in float64 (as pandas computes it), then float32 as the matrix stores it."""
    from pyspark.sql import functions as F

    n = F.col(count).cast("double")
    return _f32((n / F.col(total).cast("double")) * (n / (n + F.lit(2.0))))


def _top_per_row(pairs: SparkFrame, n_items: int, top: int) -> sp.csr_matrix:
    """``neighbours._top_per_row``: the ``top`` largest float32 values per row ``x``; a tie goes to the lower
    column ``i``. Only the kept pairs reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    best = Window.partitionBy("x").orderBy(F.col("v").desc(), F.col("i").asc())
    kept = _collect(pairs.withColumn("rank", F.row_number().over(best)).filter(F.col("rank") <= top)
                    .select("x", "i", "v"))
    rows, columns = kept["x"].to_numpy(np.int64), kept["i"].to_numpy(np.int64)
    result = sp.csr_matrix((kept["v"].to_numpy(np.float32), (rows, columns)), shape=(n_items, n_items),
                           dtype=np.float32)
    result.sort_indices()
    return result
