"""``recsys validate``: the data, the catalog and the mapping checked as a training would check them, in seconds,
with the data report (rows read, used and skipped by reason, the span, the events per type, catalog coverage, the
size parse rate, the customers, stores and items). Bad input exits 2 with the line a training would fail with."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recsys.cli import summary
from recsys.cli.common import console, fail, print_json, print_table
from recsys.cli.train import AssortmentOption, CatalogOption, DataOption, MappingOption, _assortment, _training_inputs

if TYPE_CHECKING:
    from training.data_report import DataReport


def validate(
    data: DataOption = None,
    mapping: MappingOption = None,
    catalog: CatalogOption = None,
    assortment: AssortmentOption = None,
    config: Annotated[Path | None, typer.Option(
        help="TrainConfig as JSON: its event_weights say which event types a training uses")] = None,
    train_until: Annotated[datetime | None, typer.Option(help="leave out events after this time, as train does")
                           ] = None,
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as one JSON document on stdout")] = False,
) -> None:
    """Check the data as `recsys train` would read it, without training, and print the data report. Exit 0 usable,
    2 refused (one line says why, as train would say it)."""
    from recsys.domain.schema import DataValidationError
    from training.data_report import check_data

    started = time.perf_counter()
    train_config, dataset = _training_inputs(data, households, config, mapping, catalog)
    stores_carry = _assortment(assortment, mapping)
    try:
        report = check_data(dataset, train_config, train_until, stores_carry)
    except DataValidationError as exc:
        raise fail(escape(str(exc))) from exc
    seconds = round(time.perf_counter() - started, 3)
    warnings = summary.skipped_value_lines((source.source, source.skipped_values) for source in report.sources)
    for line in warnings:
        console.print(f"[bold yellow]warning:[/] {escape(line)}", soft_wrap=True, highlight=False)
    if as_json:
        print_json({**report.as_dict(), "warnings": warnings, "seconds": seconds})
    else:
        print_table(_table(report, seconds), stderr=False)


def _table(report: DataReport, seconds: float) -> Table:
    table = Table(title="data report", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for source in report.sources:
        table.add_row(f"rows: {source.source}", summary.rows_line(source.rows_read, source.rows_used, source.skipped))
    table.add_row("data span", f"{report.data_start} .. {report.data_end}")
    table.add_row("events", f"{report.events:,}")
    table.add_row("events per type", ", ".join(f"{name}: {n:,}" for name, n in report.event_types.items()))
    table.add_row("catalog coverage", f"{report.catalog_coverage:.3%}: {report.not_in_catalog:,} of "
                                      f"{report.valid_events:,} valid event rows name an item the catalog lacks")
    rate = report.size_parse_rate
    table.add_row("package sizes parsed", "no sizes in data" if rate is None else f"{rate:.2%}")
    table.add_row("customers", f"{report.customers:,}")
    table.add_row("stores", f"{report.stores:,}")
    table.add_row("items with events", f"{report.items_with_events:,}")
    table.add_row("catalog items", f"{report.catalog_items:,}")
    if report.assortment is not None:
        carried = report.assortment
        table.add_row("assortment file", f"{carried.rows:,} rows, {carried.stores:,} stores, "
                                         f"{carried.rows_in_catalog:,} rows name a catalog item")
    table.add_row("time", f"{seconds:.1f} s")
    return table
