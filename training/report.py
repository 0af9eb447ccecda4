"""The model report: ``report.md`` with PNG plots, written into every model directory by ``recsys train``.

For a person deciding whether to trust tonight's model: data span and counts, size-parse rate, ALS and ranker
training loss, held-out hit rates against the baselines and against the previous model, coverage, how often
switches kept each catalog attribute, and a few example answers. Everything in it comes from the manifest and the
in-memory engine; nothing is recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.domain.schema import attribute_columns
from recsys.model.manifest import Manifest
from recsys.model.registry import headline
from recsys.query.engine import SubstituteEngine
from training.attributes import attribute_keeping

REPORT: Final[str] = "report.md"
LOSS_PLOT: Final[str] = "report-als-loss.png"
HOLDOUT_PLOT: Final[str] = "report-holdout.png"
COVERAGE_KS: Final[tuple[int, ...]] = (1, 3, 5, 10)
HEADLINE: Final[tuple[str, ...]] = ("HR@1", "HR@3", "HR@10", "NDCG@10", "MRR@10")


def coverage(engine: SubstituteEngine, sample: int = 2_000, seed: int = 0) -> dict[str, Any]:
    """Share of items (a seeded sample of those with events) that get at least k non-personal substitutes."""
    items = engine.model.items
    pool = items.loc[items["n_customers"] > 0, "item_id"].astype(str).to_numpy()
    if len(pool) == 0:
        return {"items_sampled": 0, **{f"at_least_{k}": 0.0 for k in COVERAGE_KS}}
    chosen = np.random.default_rng(seed).choice(pool, size=min(sample, len(pool)), replace=False)
    counts = np.asarray([len(engine.substitutes(i, k=max(COVERAGE_KS))) for i in chosen])
    return {"items_sampled": len(chosen), **{f"at_least_{k}": round(float((counts >= k).mean()), 4)
                                             for k in COVERAGE_KS}}


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _plot_loss(manifest: Manifest, path: Path) -> bool:
    losses = manifest.als_loss
    if not losses:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("ALS iteration")
    ax.set_ylabel("training loss")
    ax.set_title("implicit ALS training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _assortment_section(report: dict[str, Any] | None) -> list[str]:
    """What each store carries, as the model knows it: the file's size, or how far the inference from sales can
    be trusted at each level (see training.assortment)."""
    if not report:
        return []
    out = ["## What each store carries", ""]
    listed = report.get("listed")
    if listed:
        out += [f"From the assortment file: {listed['rows']:,} rows, {listed['stores']:,} stores, {listed['items']:,} "
                f"items of the catalog ({listed['unknown_items']:,} rows name items the catalog does not have). "
                "Other stores and the online channel use the inference below.", ""]
    stores, cover = report["stores"], report["coverage"]

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    out += [f"Inferred from sales: an item is likely carried where it had an event within {report['window_days']:g} "
            f"days. Measured on the last {report['holdout_days']:g} days (the share of each store's purchase lines "
            f"that the inference from the days before covered), store level is used where it reaches "
            f"{report['store_level_coverage']:.0%}: at {stores['store_level']:,} of {stores['with_sales']:,} stores "
            f"({stores['measured']:,} had enough purchases to measure); chain level elsewhere "
            f"({report['chain_items']:,} items likely carried somewhere in the chain).", "",
            _table(("level", "coverage (all measured stores' lines)", "median store"),
                   [("store", share(cover["store_level"]), share(cover["store_level_median"])),
                    ("chain", share(cover["chain_level"]), share(cover["chain_level_median"]))]), ""]
    if report["busiest_stores"]:
        out += ["The busiest stores:", "",
                _table(("store", "holdout lines", "store-level coverage", "chain-level coverage", "level used"),
                       [(s["store_id"], f"{s['holdout_lines']:,}", share(s["store_level"]), share(s["chain_level"]),
                         s["level"]) for s in report["busiest_stores"]]), ""]
    return out


def attributes_section(engine: SubstituteEngine) -> list[str]:
    """The catalog attributes' table: how often the switches the model learned kept each, against chance (see
    :func:`training.attributes.attribute_keeping`); nothing when the catalog has no attributes."""
    model = engine.model
    if not attribute_columns(model.items):
        return []
    pairs = model.switched_to.tocoo()
    table = attribute_keeping(model.items, pd.DataFrame({"x": pairs.row, "y": pairs.col}))
    rows = [(row.attribute, f"{row.switches:,}",
             *(("-", "-", "-") if not row.switches else (f"{row.kept:.1%}", f"{row.by_chance:.1%}",
                                                           "-" if np.isnan(row.lift) else f"{row.lift:.2f}")),
             row.categories or "-")
            for row in table.itertuples()]
    return ["## Catalog attributes kept by switches", "",
            f"Of the {len(pairs.row):,} switch pairs the model learned (a shopper's usual X missing from a basket that "
            "held Y of X's group), those whose X has a value of the attribute: the share whose Y has each of X's "
            "values (kept), the share expected if Y were any other item of X's group (by chance), their ratio "
            "(lift; above 1: shoppers keep it), and the categories where they keep it most above chance (kept vs "
            "chance, at least 20 switches). A request can ask to `keep` or `prefer` an attribute.", "",
            _table(("attribute", "switches", "kept", "by chance", "lift", "categories kept most"), rows), ""]


def _examples(engine: SubstituteEngine, n: int = 3, k: int = 5) -> list[str]:
    """Answers for the most popular item of ``n`` departments, and one personal answer."""
    items = engine.model.items
    popular = items[items["n_customers"] > 0].sort_values("n_customers", ascending=False)
    picks = popular.drop_duplicates("department").head(n)["item_id"].astype(str).tolist()
    sections = []
    for position, item_id in enumerate(picks):
        customer = None
        if position == 0:  # the customer who bought this item most often: how personal answers differ
            column = engine.model.customer_count[:, engine.index_of(item_id)].toarray().ravel()
            if column.max() > 0:
                customer = str(engine.model.customers[int(column.argmax())])
        answer = engine.substitutes(item_id, customer_id=customer, k=k)
        x = answer.item
        title = f"**{x.item_id}** {x.brand}, {x.product_type.lower()}, {x.package_size or '?'}, ${x.price}"
        title += f", for customer {customer}" if customer else " (non-personal)"
        rows = [(s.item_id, s.brand, s.package_size or "", s.price, f"{s.score:.2f}", "; ".join(s.reasons))
                for s in answer]
        sections.append(title + "\n\n" + (_table(("substitute", "brand", "size", "price", "score", "reasons"),
                                                 rows) if rows else "_no substitute above the score cut-off_"))
    return sections


def write(directory: Path, manifest: Manifest, engine: SubstituteEngine, previous: Manifest | None) -> None:
    """Write ``report.md`` and its plots into ``directory`` (the model being written)."""
    from training.evaluation import EvaluationResult, plot

    span, counts = manifest.data_span, manifest.counts
    rate = manifest.size_parse_rate
    out = [f"# Model {manifest.version}", "",
           f"Created {manifest.created_at}; data {span.start} .. {span.end}.", "", "## Data", "",
           _table(("what", "count"), [(k.replace("_", " "), f"{v:,}") for k, v in counts.items()
                                      if isinstance(v, int)]), "",
           f"Package sizes parsed: {'no sizes in data' if rate is None else f'{rate:.2%}'}.", ""]
    for source in manifest.sources:
        skipped = ", ".join(f"{k}: {v:,}" for k, v in source.skipped.items()) or "none"
        out.append(f"- {source.source}: {source.rows_read:,} rows read, {source.rows_used:,} used; "
                   f"skipped {skipped}")
    out += ["", "## Training", ""]
    if _plot_loss(manifest, directory / LOSS_PLOT):
        losses = manifest.als_loss
        out += [f"ALS loss {losses[0]:.5f} after iteration 1, {losses[-1]:.5f} after {len(losses)}.", "",
                f"![ALS loss]({LOSS_PLOT})", ""]
    ranker = manifest.ranker
    validation = ranker.validation
    out.append(f"Ranker: {ranker.source} weights"
               + (f", fitted on {validation['fitted_lists']:,} query lists from {validation['start'][:10]} "
                  f"(loss {validation['loss']})" if validation else "")
               + f"; score cut-off {ranker.min_score or 0:.3f}.")
    rerank = ranker.reranker
    if rerank is not None:
        out.append(f"Re-ranker: {rerank.trees} LightGBM lambdarank trees of {rerank.leaves} leaves over the "
                   f"linear shortlist; new-item bias {rerank.new_item_bias}"
                   + (" (worst HR@3 margin over the best baseline per bias tried: "
                      + ", ".join(f"{b}: {m:+.4f}" for b, m in rerank.bias_search.items()) + ")"
                      if rerank.bias_search else "") + ".")
    if ranker.familiar_shift is not None:
        out.append(f"Familiar intent: the scores of candidates the customer never bought shifted by "
                   f"{ranker.familiar_shift}"
                   + (" (all-queries HR@3 margin over history-then-popular per shift tried: "
                      + ", ".join(f"{b}: {m:+.4f}" for b, m in ranker.familiar_search.items()) + ")"
                      if ranker.familiar_search else "") + ".")
    stage_seconds = manifest.stage_seconds
    if stage_seconds:
        out += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stage_seconds.items()) + "."]

    metrics = manifest.metrics
    out += ["", "## Held-out hit rate", ""]
    if metrics:
        queries = metrics["queries"]
        out += [f"Switch queries from {metrics['split'][:10]} on (an inner model trained before that date; these "
                f"queries were not used to fit the ranker"
                + (", only to choose its new-item bias" if rerank is not None and rerank.bias_search else "") + "): "
                f"{queries['all']:,} queries, {queries['new_to_customer']:,} with an item new to the customer.", ""]
        header = ("method", *(f"{m}" for m in HEADLINE), "new HR@3", "new NDCG@10")
        rows = [(name, *(f"{v['all'][m]:.3f}" for m in HEADLINE), f"{v['new_to_customer']['HR@3']:.3f}",
                 f"{v['new_to_customer']['NDCG@10']:.3f}")
                for name, v in sorted(metrics["methods"].items(), key=lambda kv: -kv[1]["all"]["HR@3"])]
        out += [_table(header, rows), ""]
        result = EvaluationResult(split=metrics["split"], model_version=manifest.version,
                                  queries=queries, metrics=metrics["methods"])
        plot(result, directory / HOLDOUT_PLOT)
        out += [f"![held-out hit rate]({HOLDOUT_PLOT})", ""]
    else:
        out += ["No held-out metrics: the ranker was not fitted (disabled, or too little data).", ""]

    out += ["## Against the previous model", ""]
    previous_metrics = previous.metrics if previous is not None else None
    if previous is not None and previous_metrics and metrics:
        now, before = headline(metrics["methods"]), headline(previous_metrics["methods"])
        rows = [(name, f"{now[name]:.3f}", f"{before[name]:.3f}", f"{now[name] - before[name]:+.3f}") for name in now
                if name in before]
        out += [f"Previous: {previous.version} (data to {previous.data_span.end[:10]}). Each model on "
                "its own held-out weeks; `recsys retrain` compares both on the same weeks.", "",
                _table(("metric", "this model", "previous", "change"), rows), ""]
    else:
        out += ["No previous model with held-out metrics to compare with.", ""]

    cover = manifest.coverage or {}
    if cover.get("items_sampled"):
        out += ["## Coverage", "", f"Of {cover['items_sampled']:,} sampled items with events, the share that gets "
                "at least k substitutes (non-personal, everything in stock; fewer than k means the rest scored "
                "below the cut-off or the group is small):", "",
                _table([f"k = {k}" for k in COVERAGE_KS], [[f"{cover[f'at_least_{k}']:.1%}" for k in COVERAGE_KS]]),
                ""]
    out += _assortment_section(manifest.assortment)
    out += attributes_section(engine)
    out += ["## Example answers", ""]
    for section in _examples(engine):
        out += [section, ""]
    (directory / REPORT).write_text("\n".join(out))
