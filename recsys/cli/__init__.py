"""The ``recsys`` command line, the one layer above everything: it drives ``training`` and ``serving`` (and the
benchmarks of a source checkout), which sit on the core library; nothing below imports it (``lint-imports``).
One module per command group; this one builds the typer app from them."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.cli import bench, evaluate, experiments, export, keys, models, rules, serve, stock, train, validate
from recsys.cli.common import DEBUG, Commands

app = typer.Typer(help="Substitute-product recommendations: train, serve, evaluate, bench. Exit status: 0 done, "
                       "1 refused by the quality gate, 2 bad input or usage, 3 internal error.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=Commands)


@app.callback()
def options(ctx: typer.Context, debug: Annotated[bool, typer.Option(
        "--debug", help="on an internal error (exit 3), print its traceback too")] = False) -> None:
    ctx.meta[DEBUG] = debug


app.command()(validate.validate)
app.command()(train.train)
app.command()(train.retrain)
app.command("add-items")(train.add_items)
app.command()(evaluate.evaluate)
app.command()(bench.bench)
app.command()(export.export)
app.command()(serve.serve)
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(stock.app, name="stock")
app.add_typer(experiments.app, name="experiments")
app.add_typer(rules.app, name="rules")


def main() -> None:
    app(prog_name="recsys")
