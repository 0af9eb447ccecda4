"""Loaders: The Complete Journey (default) and generic event logs (CSV/parquet), into :mod:`recsys.domain.schema`
frames.

One module per source: :mod:`~training.loaders.completejourney`, :mod:`~training.loaders.event_log` (event logs),
:mod:`~training.loaders.products` (the ``--catalog`` product file), on :mod:`~training.loaders.files` (finding and
reading files); :func:`load_dataset` puts the sources of one training together."""

from __future__ import annotations

from pathlib import Path

from recsys.domain.schema import Dataset
from training.loaders.completejourney import COMPLETEJOURNEY, load_completejourney
from training.loaders.event_log import read_event_log
from training.loaders.products import join_catalog, read_catalog, read_catalog_report
from training.mapping import CatalogColumns, ColumnMapping, DataMapping

__all__ = ["COMPLETEJOURNEY", "CatalogColumns", "ColumnMapping", "DataMapping", "load_completejourney",
           "load_dataset", "read_catalog", "read_event_log"]


def load_dataset(sources: list[str], households: int | None = None, known_event_types: set[str] | None = None,
                 mapping: DataMapping | ColumnMapping | None = None, catalog: str | Path | None = None) -> Dataset:
    """``completejourney`` or event-log sources (files, parquet directories, globs) combined into one dataset.

    ``mapping`` names the columns (a :class:`DataMapping`, or just the events' :class:`ColumnMapping`);
    ``catalog`` is a product file that describes the event logs' items: events for items missing from it are
    skipped (and counted), items only in it are cold-start items."""
    if not sources:
        sources = [COMPLETEJOURNEY]
    mapping = mapping if isinstance(mapping, DataMapping) else DataMapping(events=mapping or ColumnMapping())
    products, catalog_report = read_catalog_report(catalog, mapping.catalog) if catalog is not None else (None, None)
    parts = [
        load_completejourney(households=households, attributes=mapping.catalog.attributes) if source == COMPLETEJOURNEY
        else read_event_log(source, mapping.events, known_event_types=known_event_types)
        for source in sources
    ]
    if products is not None:
        parts = [part if source == COMPLETEJOURNEY else join_catalog(part, products)
                 for source, part in zip(sources, parts)]
        parts[0].reports.insert(0, catalog_report)
    return Dataset.combine(parts)
