"""The SparkSession the trainer uses: UTC session time, Arrow transfers, a small shuffle for local runs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(master: str | None = None, app_name: str = "recsys-train", driver_memory: str | None = None,
                  shuffle_partitions: int | None = None) -> SparkSession:
    """The active session, or a new one. ``master`` None: whatever spark-submit set (else ``local[*]``).

    Timestamps are read and compared in UTC, as the single-machine trainer treats its naive timestamps, so an
    event's age does not move with the driver's time zone or a daylight-saving change."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
    if shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    session = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "true")
               .getOrCreate())
    session.conf.set("spark.sql.session.timeZone", "UTC")
    running_on = session.sparkContext.master
    if running_on.startswith("local") and not session.sparkContext.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's default of 200 shuffle partitions is for clusters: on a few local cores each of the trainer's
        # many small shuffles would spend most of its time scheduling near-empty tasks
        session.conf.set("spark.sql.shuffle.partitions", str(4 * _local_cores(running_on)))
    return session


def _local_cores(master: str) -> int:
    """The cores of a ``local``, ``local[4]`` or ``local[*]`` master."""
    inside = master[len("local["):-1] if master.startswith("local[") and master.endswith("]") else "1"
    count = inside.split(",")[0].strip()
    if count == "*":
        return os.cpu_count() or 1
    return max(int(count), 1) if count.isdigit() else 1
