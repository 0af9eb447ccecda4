"""``recsys train``'s summary beyond the counts: which ranker the model uses and why, its held-out metrics, and a
warning line for every fallback the training took (the hand-set weights instead of learned ones, metrics that could
not be measured, rows skipped for event names nobody mapped), for people (table rows, warning lines on stderr) or
for scripts (one JSON document on stdout, ``--json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from recsys.cli.common import console, print_json, print_table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from recsys.model.manifest import Manifest
    from training.pipeline import TrainResult


def ranker_choice(manifest: Manifest) -> tuple[str, str]:
    """The ranker in use, ``learned`` or ``default`` (the hand-set weights), and why."""
    ranker = manifest.ranker
    if ranker.source == "learned":
        validation = ranker.validation or {}
        reranker = ranker.reranker
        trees = f" and a re-ranker of {reranker.trees} trees" if reranker is not None and reranker.trees else ""
        return "learned", (f"linear weights{trees} fitted on {validation.get('queries', 0):,} validation queries "
                           f"from {str(validation.get('start', '?'))[:10]}")
    return "default", f"hand-set weights: {ranker.note or 'no learned ranker'}"


def held_out(manifest: Manifest) -> dict[str, Any] | None:
    """The held-out validation metrics the training measured (the headline ones), None when it measured none."""
    from recsys.model.registry import headline_metrics

    if not manifest.metrics:
        return None
    return {"split": manifest.metrics.get("split"), "queries": manifest.metrics.get("queries", {}),
            "metrics": headline_metrics(manifest)}


def fallbacks(manifest: Manifest) -> list[str]:
    """One line for every fallback the training took, each saying what it did instead."""
    lines = []
    ranker = manifest.ranker
    if ranker.source != "learned" and manifest.config.ranker.enabled:
        lines.append(f"the ranker fell back to the hand-set default weights: {ranker.note or 'no reason recorded'}")
    if ranker.source == "learned" and not manifest.metrics:
        lines.append("no held-out validation queries: the model's quality was not measured, and the new-item bias "
                     "and the familiar intent's shift were left at their defaults")
    elif ranker.source == "learned":
        reranker = ranker.reranker
        if reranker is not None and reranker.trees and not reranker.bias_search \
                and manifest.config.ranker.new_item_bias is None:
            lines.append(f"the re-ranker's new-item bias was not chosen (no held-out new-to-customer queries): "
                         f"{reranker.new_item_bias:g}")
        if ranker.familiar_shift is None:
            lines.append("the familiar intent's shift was not chosen on held-out queries: the build's default")
    return lines + skipped_value_lines((source.source, source.skipped_values) for source in manifest.sources)


def skipped_value_lines(sources: Iterable[tuple[str, Mapping[str, Mapping[str, int]]]]) -> list[str]:
    """One line per source and skip reason that names its values (an event name nobody mapped), with their
    counts and what to do about them; ``sources``: (source, skipped values by reason)."""
    lines = []
    for source, skipped_values in sources:
        for reason, values in skipped_values.items():
            shown = ", ".join(f"{value!r}: {count:,}" for value, count in values.items())
            lines.append(f"{source}: rows skipped, {reason}: {shown}{_REMEDIES.get(reason, '')}")
    return lines


def rows_line(rows_read: int, rows_used: int, skipped: Mapping[str, int]) -> str:
    """A source's rows in one table cell: read, used, and skipped by reason."""
    reasons = ", ".join(f"{reason}: {count:,}" for reason, count in skipped.items()) or "none"
    return f"{rows_read:,} read, {rows_used:,} used; skipped {reasons}"


#: what a user does about the values a skip reason names
_REMEDIES = {"event type not in the mapping": " (map them under [events.types] of the --mapping file to use them)",
             "unknown event type": " (give them a weight in the --config's event_weights to use them)"}


def ranker_rows(table: Table, manifest: Manifest) -> None:
    """The summary table's rows on the ranker and its held-out metrics."""
    kind, why = ranker_choice(manifest)
    table.add_row("ranker", f"{kind}: {why}")
    measured = held_out(manifest)
    if measured is None:
        table.add_row("held-out metrics", "none measured")
        return
    queries = measured["queries"]
    table.add_row("held-out queries", f"{queries.get('all', 0):,} ({queries.get('new_to_customer', 0):,} new to "
                                      f"the customer) from {str(measured['split'])[:10]}")
    for name, value in measured["metrics"].items():
        table.add_row(f"held-out {name}", f"{value:.4f}")


def document(result: TrainResult, *, current: bool) -> dict[str, Any]:
    """The summary as one JSON-ready document: what ``recsys train --json`` prints."""
    from recsys.model.artifact import directory_size

    manifest = result.manifest
    kind, why = ranker_choice(manifest)
    return {
        "model_dir": str(result.model_dir), "version": manifest.version, "current": current,
        "data_span": manifest.data_span.model_dump(), "sources": [s.model_dump() for s in manifest.sources],
        "counts": manifest.counts, "size_parse_rate": manifest.size_parse_rate,
        "ranker": {"source": kind, "why": why, "validation": manifest.ranker.validation},
        "held_out": held_out(manifest), "warnings": fallbacks(manifest),
        "stage_seconds": result.stage_seconds, "model_size_bytes": directory_size(result.model_dir),
    }


def warn(manifest: Manifest) -> None:
    """A warning line on stderr for each fallback the training of ``manifest`` took."""
    for line in fallbacks(manifest):
        console.print(f"[bold yellow]warning:[/] {escape(line)}", soft_wrap=True, highlight=False)


def show_candidate(manifest: Manifest) -> None:
    """``recsys retrain``'s word on its candidate before the gate: its ranker and why, and its fallbacks."""
    kind, why = ranker_choice(manifest)
    console.print(f"candidate {manifest.version}: ranker {kind}: {why}", soft_wrap=True, highlight=False,
                  markup=False)
    warn(manifest)


def show(result: TrainResult, table: Callable[[TrainResult], Table], *, as_json: bool, current: bool) -> None:
    """A finished training, told: the summary (``table`` on stderr, or the JSON document alone on stdout), a warning
    line for each fallback (stderr), whether ``current`` moved, and the model's path as the last line of stdout."""
    summary = table(result)
    ranker_rows(summary, result.manifest)
    if not as_json:
        print_table(summary)
    warn(result.manifest)
    if not current:
        console.print(f"not promoted (--no-promote): `current` is unchanged; make it current with `recsys models "
                      f"promote {result.manifest.version}`", soft_wrap=True, highlight=False, markup=False)
    if as_json:
        print_json(document(result, current=current))
    else:
        typer.echo(str(result.model_dir))
