"""The ranker stage of training: fit the ranker on the last ``validation_weeks`` of the data, with an inner model
trained before them, choose the re-ranker's new-item bias and the familiar intent's shift on held-out validation
queries, and measure the result against the baselines (the manifest's held-out metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from recsys.domain.config import RankerConfig, TrainConfig
from recsys.domain.schema import DataValidationError
from recsys.domain.types import Intent
from recsys.model.data import RERANKER_FILE
from recsys.model.manifest import RankerSection, RerankerSection
from recsys.model.registry import INTENT_METHODS
from recsys.query.engine import SubstituteEngine
from recsys.query.ranking import DEFAULT_WEIGHTS
from training import evaluation
from training.assembly import InnerFit, RankerOutcome
from training.queries import Queries, build_queries
from training.ranker_fit import FAMILIAR_SHIFTS, NEW_ITEM_BIASES, collect, fit, fit_reranker


def learn_ranker(catalog: pd.DataFrame, events: pd.DataFrame, config: TrainConfig, fit_inner: InnerFit,
                 data_end: pd.Timestamp | None = None, step: Callable[[str], None] = lambda message: None
                 ) -> RankerOutcome:
    """Fit the ranker on the last ``validation_weeks`` of the data (an inner model trained before them).

    ``events``: the events the validation queries and the baselines are built from: all the events (the pandas
    engine), or a sample of the customers' events with the end of the full data as ``data_end`` (Spark).
    ``fit_inner`` fits the inner model, in memory, on all the engine's events before the validation start.

    Returns the manifest's ``ranker`` section, the re-ranker's model text ("" when none) and the held-out
    metrics: a seeded share of the sampled validation queries is kept out of the fit, topped up with unsampled
    ones to ``selection_queries``, and answered by the fitted ranker, the default weights and the baselines.
    The new-item bias is chosen on those same queries, so their metrics are a little optimistic for that one
    number; ``recsys evaluate`` is the unbiased measure. ``step`` is told each step as it starts (the stage's
    progress: most of a training's time is spent here).
    """
    ranker = config.ranker
    default = RankerSection(weights=dict(DEFAULT_WEIGHTS), source="default", min_score=config.min_score)
    if not ranker.enabled:  # chosen, not a fallback: the summary says so without a warning
        return default.model_copy(update={"note": "ranker.enabled is false in the config"}), "", None
    data_end = pd.Timestamp(events["timestamp"].max()) if data_end is None else pd.Timestamp(data_end)
    validation_start = data_end - pd.Timedelta(weeks=ranker.validation_weeks)
    inner_config = config.model_copy(update={"ranker": ranker.model_copy(update={"enabled": False})})

    step(f"inner model: training on the events before {validation_start.date()}")
    try:
        inner = fit_inner(inner_config, validation_start.to_pydatetime())
    except DataValidationError:
        return default.model_copy(update={"note": "no events before the validation period"}), "", None
    engine = inner.engine()
    step("validation queries: building")
    queries, unsampled = build_queries(customer_sample(events, ranker.max_customers, ranker.seed), engine,
                                       validation_start, per_basket=True).partition(ranker.max_queries, ranker.seed)
    if len(queries) < ranker.min_queries:
        return default.model_copy(update={"note": f"only {len(queries):,} validation queries, fewer than "
                                                  f"ranker.min_queries ({ranker.min_queries})"}), "", None
    fit_queries, held_out = queries.split(ranker.holdout_share, ranker.seed)
    # the bias choice compares margins of a few tenths of a point: it needs more queries than the held-out
    # share, and the validation queries the fit did not sample cost nothing to add
    held_out = held_out + unsampled.sample(max(ranker.selection_queries - len(held_out), 0), ranker.seed)
    xs, customers, relevant = fit_queries.x, fit_queries.customer, list(fit_queries.relevant)
    if ranker.new_item_emphasis:
        has_new = fit_queries.new_mask
        xs = np.concatenate([xs, xs[has_new]])
        customers = np.concatenate([customers, customers[has_new]])
        relevant += [n for n, keep in zip(fit_queries.new, has_new, strict=True) if keep]
    step(f"linear weights: features of {len(fit_queries):,} validation queries, then the fit")
    features, labels, starts = collect(engine, xs, customers, relevant)
    fitted = fit(features, labels, starts, l2=ranker.l2)
    section = fitted.ranker.model_copy(update={"source": "learned", "min_score": fitted.min_score})
    methods = evaluation.make_methods(engine, events, validation_start, ranker.seed) if len(held_out) else {}
    ours_names = set(INTENT_METHODS.values())
    step(f"baselines: {len(held_out):,} held-out queries")
    baselines = evaluation.score(engine, {name: rank for name, rank in methods.items() if name not in ours_names},
                                 held_out)[0] if methods else {}
    default_metrics = (evaluation.score(engine, {"default-weights": methods["ours"]}, held_out)[0]
                       if methods else {})  # the inner engine ranks with the default weights
    reranker_text = ""
    if ranker.gbdt_trees > 0:
        step(f"re-ranker: {ranker.gbdt_trees} trees of {ranker.gbdt_leaves} leaves")
        reranker_text, fixed = fit_reranker(features, labels, starts, ranker)
        step("re-ranker: choosing the new-item bias")
        bias, tried = _choose_new_item_bias(engine, section, reranker_text, fixed=fixed, held_out=held_out,
                                            baselines=baselines, config=ranker)
        section.reranker = RerankerSection(file=RERANKER_FILE, trees=ranker.gbdt_trees, leaves=ranker.gbdt_leaves,
                                           new_item_bias=bias, fixed_weights=fixed, bias_search=tried)
    metrics = None
    if methods:
        engine.set_ranker(section, reranker_text)  # "ours" = the fitted ranker
        step("familiar intent: choosing its shift")
        section.familiar_shift, section.familiar_search = _choose_familiar_shift(engine, held_out, baselines)
        engine.set_ranker(section, reranker_text)
        step("held-out metrics")
        ours, _ = evaluation.score(engine, evaluation.intent_rankers(engine), held_out)
        metrics = {"split": validation_start.isoformat(),
                   "queries": {"all": len(held_out), "new_to_customer": held_out.n_new},
                   "methods": {**ours, **baselines, **default_metrics}}
    section.validation = {"start": validation_start.isoformat(), "queries": len(fit_queries),
                          "fitted_lists": fitted.queries, "candidates": fitted.candidates,
                          "loss": round(fitted.loss, 5)}
    return section, reranker_text, metrics


def sampled_customers(n_customers: int, n: int, seed: int) -> np.ndarray | None:
    """Positions of a seeded sample of ``n`` among ``n_customers`` customers in id order (None: no more than ``n``,
    take them all). Every engine draws the ranker's validation customers here, so they draw the same ones."""
    if n_customers <= n:
        return None
    return np.random.default_rng(seed).choice(n_customers, size=n, replace=False)


def customer_sample(events: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The events of a seeded sample of ``n`` customers (all of them when there are no more than ``n``): the
    ranker needs a fixed number of validation queries, and building them costs time and memory in proportion to
    the events they are built from."""
    codes = events["customer_id"].cat.codes.to_numpy()
    present = np.unique(codes)  # the customers with events, in id order (the categories are sorted)
    positions = sampled_customers(len(present), n, seed)
    if positions is None:
        return events
    return events[np.isin(codes, present[positions])]


def _choose_new_item_bias(engine: SubstituteEngine, section: RankerSection, reranker_text: str, *,
                          fixed: dict[str, float], held_out: Queries, baselines: dict[str, Any],
                          config: RankerConfig) -> tuple[float, dict[str, float]]:
    """The configured new-item bias, else the one of NEW_ITEM_BIASES whose smaller HR@3 margin over the best
    baseline, on all and on new-to-customer held-out validation queries, is largest (0 without held-out
    queries); and the margin of each bias tried. The bias trades "what they buy" against "something new"."""
    if config.new_item_bias is not None or not baselines or not held_out.n_new:
        return (config.new_item_bias or 0.0), {}
    best_baseline = {subset: max(m[subset]["HR@3"] for m in baselines.values()) for subset in evaluation.SUBSETS}
    tried = {}
    for bias in NEW_ITEM_BIASES:
        engine.set_ranker(section.model_copy(update={"reranker": RerankerSection(new_item_bias=bias,
                                                                                 fixed_weights=fixed)}),
                          reranker_text)
        ours = evaluation.score(engine, {"ours": evaluation.engine_ranker(engine)}, held_out)[0]["ours"]
        tried[str(bias)] = round(min(ours[s]["HR@3"] - best_baseline[s] for s in evaluation.SUBSETS), 5)
    return float(max(tried, key=lambda b: tried[b])), tried


def _choose_familiar_shift(engine: SubstituteEngine, held_out: Queries, baselines: dict[str, Any]
                           ) -> tuple[float | None, dict[str, float]]:
    """The familiar intent's shift of FAMILIAR_SHIFTS with the largest all-queries HR@3 margin over
    history-then-popular on the held-out validation queries (None, the build's default, without them); and
    the margin of each shift tried. The ranker is fitted and its new-item bias chosen already."""
    specialist = evaluation.INTENT_SPECIALISTS[Intent.familiar]
    if not len(held_out) or specialist.baseline not in baselines:
        return None, {}
    best_baseline = baselines[specialist.baseline][specialist.subset]["HR@3"]
    scorer, tried = engine.scorer, {}
    for shift in FAMILIAR_SHIFTS:
        engine.scorers[Intent.familiar] = scorer.shifted(shift)
        familiar = evaluation.engine_ranker(engine, Intent.familiar)
        ours = evaluation.score(engine, {"familiar": familiar}, held_out)[0]["familiar"]
        tried[str(shift)] = round(ours[specialist.subset]["HR@3"] - best_baseline, 5)
    return float(max(tried, key=lambda shift: tried[shift])), tried
