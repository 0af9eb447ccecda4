"""The Spark suite's session (marker ``spark``): one for the whole run, made by the trainer's own
``training.spark.session.spark_session``, so that the tests run Spark as ``recsys train --engine spark`` runs it in
local mode: on loopback only, with no UI."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one SparkSession of the test run: local[2], 2 GB, a small shuffle, bound to 127.0.0.1, no UI."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.fail("pyspark is not installed: pip install -e '.[spark]' (make test-spark does)")
    from training.spark.session import spark_session

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support", category=FutureWarning)
    session = spark_session("local[2]", app_name="recsys-tests", driver_memory="2g", shuffle_partitions=8)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
