"""The trainer's data-heavy stages on Apache Spark (``recsys train --engine spark``; needs ``recsys[spark]``).

Spark computes what grows with the events (validation counts, weights, per-item and per-customer aggregates,
store x item, and the pair signals within substitution groups); the driver collects the results in exactly the
layout the single-machine trainer builds and runs what needs one machine (ALS, FAISS, the ranker, the report).
Nothing here imports pyspark at module level except the submodules that need it, so ``training`` loads without it.
"""
