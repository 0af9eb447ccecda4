"""The ``recsys`` command line, the one layer above everything: it drives ``training`` and ``serving`` (and the
benchmarks of a source checkout), which sit on the core library; nothing below imports it (``lint-imports``).
One module per command group; this one builds the typer app from them."""

from __future__ import annotations

import typer

from recsys.cli import bench, evaluate, export, keys, models, serve, train

app = typer.Typer(help="Substitute-product recommendations: train, serve, evaluate, bench.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command()(train.train)
app.command()(train.retrain)
app.command("add-items")(train.add_items)
app.command()(evaluate.evaluate)
app.command()(bench.bench)
app.command()(export.export)
app.command()(serve.serve)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")


def main() -> None:
    app(prog_name="recsys")
