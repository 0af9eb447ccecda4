"""``recsys rules``: the merchandising rules every replica applies (add, list, remove), kept in the shared state."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recsys.cli.common import StateOption, console, fail, print_json, print_table, state_store

app = typer.Typer(help="Merchandising rules: add, list, remove (kept in the shared state; see docs/operations.md).",
                  no_args_is_help=True)


def _bodies(source: str) -> list[Any]:
    """The rules in a JSON file (or ``-``: standard input): one object or a list of them."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        loaded = json.loads(text)
    except OSError as exc:
        raise fail(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise fail(f"{source}: not JSON: {exc}") from exc
    return loaded if isinstance(loaded, list) else [loaded]


@app.command("add")
def rules_add(source: Annotated[str, typer.Argument(help="a JSON file of one rule or a list of rules; - for stdin")],
              state: StateOption = None) -> None:
    """Add rules (replacing those of the same names); every replica applies them within seconds. All are checked
    first: one invalid rule adds none."""
    from pydantic import ValidationError

    from recsys.cli.common import describe_validation_error
    from recsys.query.rules import Rule

    rules = []
    for position, body in enumerate(_bodies(source)):
        try:
            rules.append(Rule.model_validate(body))
        except ValidationError as exc:
            raise fail(f"{source}: rule {position + 1}: {describe_validation_error(exc)}") from exc
    with state_store(state, "rules") as store:
        for rule in rules:
            store.save_rule(rule.name, rule.model_dump_json(exclude_none=True))
    console.print(f"saved {len(rules)} rule(s): {', '.join(r.name for r in rules)}", highlight=False, soft_wrap=True)


@app.command("list")
def rules_list(state: StateOption = None,
               as_json: Annotated[bool, typer.Option("--json", help="the rules as one JSON list on stdout")] = False
               ) -> None:
    """Every rule, by name."""
    with state_store(state, "rules") as store:
        bodies = [json.loads(body) for body in store.rules()]
    if as_json:
        print_json(bodies)
        return
    table = Table(title="merchandising rules")
    for column in ("name", "action", "scope", "target", "amount", "starts", "ends"):
        table.add_column(column, no_wrap=True)
    for rule in bodies:
        table.add_row(rule["name"], rule["action"], json.dumps(rule.get("scope", {})), json.dumps(rule["target"]),
                      str(rule.get("amount", "")) if rule["action"] in ("boost", "bury") else "",
                      rule.get("starts", ""), rule.get("ends", ""))
    print_table(table, min_width=160)


@app.command("remove")
def rules_remove(name: Annotated[str, typer.Argument(help="the rule's name")], state: StateOption = None) -> None:
    """Remove a rule: every replica stops applying it within seconds."""
    with state_store(state, "rules") as store:
        if not store.remove_rule(name):
            raise fail(f"no rule named {name!r} (recsys rules list)")
    console.print(f"removed {name!r}", highlight=False)
