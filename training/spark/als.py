"""ALS item factors from Spark MLlib (``ALS(implicitPrefs=True)``), in the layout ``assembly.als_factors`` returns.

MLlib is not ``implicit`` with other defaults: it scales the regularisation of each row by its number of ratings
(ALS-WR) and takes the confidence as ``1 + alpha * r`` on the value it is given, so ``AlsConfig``'s
regularisation does not carry over. ``MLLIB_REG_PARAM`` and ``MLLIB_ALPHA`` are the values that match
``implicit``'s quality on The Complete Journey (``benchmarks/als_engines.py``, docs/spark.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.domain.config import TrainConfig
from training.assembly import unit_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

#: the ALS engines ``train_spark(als=...)`` chooses between: ``implicit`` on the driver, or MLlib
ALS_ENGINES = ("driver", "mllib")
#: MLlib's settings at the quality of ``implicit`` with ``AlsConfig``'s defaults (measured, docs/spark.md)
MLLIB_REG_PARAM = 0.1
MLLIB_ALPHA = 5.0


def ratings(pairs: SparkFrame) -> SparkFrame:
    """MLlib's (user, item, rating) rows from Spark's customer x item weights (``c``, ``i``, ``w``): the value
    ``assembly.als_factors`` gives ALS, log1p(4 w) of the float32 weight, so both engines fit one matrix."""
    from pyspark.sql import functions as F

    weight = F.col("w").cast("float").cast("double")
    return pairs.select(F.col("c").cast("int").alias("user"), F.col("i").cast("int").alias("item"),
                        F.log1p(weight * F.lit(4.0)).cast("float").alias("rating"))


def ratings_frame(spark: SparkSession, weight: sp.csr_matrix) -> SparkFrame:
    """:func:`ratings` of a customer x item matrix on the driver (the benchmark fits both engines on one)."""
    coo = weight.tocoo()
    pairs = pd.DataFrame({"c": coo.row.astype(np.int32), "i": coo.col.astype(np.int32),
                          "w": coo.data.astype(np.float32)})
    return ratings(spark.createDataFrame(pairs, schema="c int, i int, w float"))


def mllib_item_factors(ratings: SparkFrame, n_items: int, config: TrainConfig, reg_param: float = MLLIB_REG_PARAM,
                       alpha: float = MLLIB_ALPHA) -> np.ndarray:
    """Unit-length item factors (n_items x ``config.als.factors``, float32) from MLlib's implicit ALS; zero for
    items without ratings, as ``assembly.als_factors`` leaves them. ``ratings``: (user, item, rating) rows."""
    from pyspark.ml.recommendation import ALS

    als = ALS(rank=config.als.factors, maxIter=config.als.iterations, regParam=reg_param, alpha=alpha,
              implicitPrefs=True, userCol="user", itemCol="item", ratingCol="rating", seed=config.als.random_state)
    model = als.fit(ratings)
    rows = model.itemFactors.toPandas()
    factors = np.zeros((n_items, config.als.factors), dtype=np.float32)
    if len(rows):
        factors[rows["id"].to_numpy(np.int64)] = np.stack(rows["features"].to_numpy()).astype(np.float32)
    return unit_rows(factors)
