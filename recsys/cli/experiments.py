"""``recsys experiments``: online experiments between two models or two intents, kept in the shared state where every
replica reads them (start, list, report, stop), and the promotion of a treatment that won through the model
registry and the state's model pointer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from recsys.cli.common import (
    ExitStatus,
    StateOption,
    console,
    fail,
    print_json,
    print_table,
    service_settings,
    state_store,
)

if TYPE_CHECKING:
    from recsys.state.experiments import ExperimentError
    from recsys.state.store import StateStore

app = typer.Typer(help="Online experiments between models or intents: start, list, report, stop (--promote).",
                  no_args_is_help=True)
ModelsOption = Annotated[Path | None, typer.Option(
    "--models", help="the models directory the replicas load versions from; default: the server's "
                     "(RECSYS_MODELS_DIR, else the parent of RECSYS_MODEL_PATH)")]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON document on stdout instead of the table")]
#: the option that sets each field an experiment error names
_OPTIONS = {"name": "NAME", "treatment": "--treatment", "control": "--control", "share": "--share",
            "stores": "--stores", "starts_at": "--starts-at", "stops_at": "--stops-at"}


def _refused(exc: ExperimentError) -> typer.Exit:
    """An invalid experiment as one line naming the option (exit 2)."""
    option = _OPTIONS.get(exc.field, exc.field)
    return fail(f"{option}{str(exc).removeprefix(exc.field)}")


def _moment(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail(f"{option}: {text!r} is not an ISO 8601 time (2026-12-01T08:00:00Z)") from exc


def _models(models: Path | None) -> Path:
    return models if models is not None else service_settings().models_directory()


@app.command("start")
def experiments_start(
    name: Annotated[str, typer.Argument(help="1 to 64 letters, digits, '.', '_' or '-'; never reused")],
    treatment: Annotated[str, typer.Option("--treatment", help="a model version, or intent=NAME")],
    share: Annotated[float, typer.Option("--share", help="the share of shoppers in treatment, > 0 and < 1")],
    control: Annotated[str, typer.Option(
        "--control", help="current (what every replica serves), a model version, or intent=NAME")] = "current",
    stores: Annotated[str | None, typer.Option(
        "--stores", help="comma-separated store ids where it runs (the online channel is 'online'); default: all")
    ] = None,
    starts_at: Annotated[str | None, typer.Option("--starts-at", help="ISO 8601; default: now")] = None,
    stops_at: Annotated[str | None, typer.Option("--stops-at", help="ISO 8601; default: until stopped")] = None,
    models: ModelsOption = None,
    state: StateOption = None,
) -> None:
    """Start an experiment: every replica following the state serves it within its polling interval."""
    from recsys.state.experiments import ExperimentError, model_in, new_experiment, start_experiment

    now = datetime.now(UTC)
    store_ids = [s.strip() for s in stores.split(",")] if stores is not None else []
    try:
        experiment = new_experiment(name, treatment, share, control=control, stores=store_ids,
                                    starts_at=_moment("--starts-at", starts_at),
                                    stops_at=_moment("--stops-at", stops_at),
                                    model_exists=model_in(_models(models)), now=now)
    except ExperimentError as exc:
        raise _refused(exc) from exc
    with state_store(state, "experiments") as shared:
        try:
            start_experiment(shared.experiments, experiment, now)
        except ExperimentError as exc:
            raise _refused(exc) from exc
    where = ", ".join(experiment.stores) if experiment.stores else "every store"
    console.print(f"experiment {name!r}: {experiment.share:.0%} of shoppers get {experiment.treatment}, the others "
                  f"{experiment.control}, at {where}, from {experiment.starts_at}"
                  f"{f' to {experiment.stops_at}' if experiment.stops_at else ''}", highlight=False, soft_wrap=True)


@app.command("list")
def experiments_list(as_json: JsonOption = False, state: StateOption = None) -> None:
    """Every experiment with its arms, share, stores, times and status."""
    now = datetime.now(UTC)
    with state_store(state, "experiments") as shared:
        experiments = shared.experiments.experiments()
    if as_json:
        print_json([experiment.to_json(now) for experiment in experiments])
        return
    table = Table(title="experiments")
    for column in ("name", "status", "control", "treatment", "share", "stores", "starts", "ends"):
        table.add_column(column, no_wrap=True)
    for experiment in experiments:
        ends = experiment.ends_at()
        table.add_row(experiment.name, experiment.status(now), experiment.control, experiment.treatment,
                      f"{experiment.share:g}", ",".join(experiment.stores) or "all", experiment.starts_at,
                      ends.isoformat() if ends is not None else "")
    print_table(table, stderr=False, min_width=160)


def _measure(shared: StateStore, name: str) -> dict[str, Any]:
    from recsys.state.answers import SECRET_NAME, AnswerSigner
    from recsys.state.experiments import ExperimentError, find, report

    now = datetime.now(UTC)
    try:
        experiment = find(shared.experiments, name)
    except ExperimentError as exc:
        raise _refused(exc) from exc
    signer = AnswerSigner(shared.shared_secret(SECRET_NAME))
    measured = report(experiment, shared.experiments.answers(name), shared.feedback.experiment_feedback(name),
                      signer, now, orders=shared.experiments.orders(name))
    return measured.to_json(now)


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f"{bounds[0]:.4f} .. {bounds[1]:.4f}"


@app.command("report")
def experiments_report(name: Annotated[str, typer.Argument(help="the experiment")], as_json: JsonOption = False,
                       state: StateOption = None) -> None:
    """An experiment's numbers per arm, their 95% intervals, and the sequential test's decision (the same as
    GET /v1/experiments/NAME): valid however often it is read."""
    with state_store(state, "experiments") as shared:
        result = _measure(shared, name)
    if as_json:
        print_json(result)
        return
    arms = result["arms"]
    table = Table(title=f"experiment {name} ({result['status']}): {result['control']} vs {result['treatment']}")
    table.add_column("")
    for arm in arms:
        table.add_column(arm, justify="right")
    rows: list[tuple[str, Any]] = [
        ("answers", lambda a: f"{a['answers']:,}"), ("decided", lambda a: f"{a['decided']:,}"),
        ("accepted", lambda a: f"{a['accepted']:,}"), ("acceptance", lambda a: _rate(a["acceptance"])),
        ("95% interval", lambda a: _interval(a["ci95"])),
        ("first-position acceptance", lambda a: _rate(a["first_acceptance"])),
        ("accepted price difference", lambda a: "" if a["accepted_price_difference"] is None
         else f"{a['accepted_price_difference']:+.2f}"),
        ("orders", lambda a: f"{a['orders']:,}"), ("orders decided", lambda a: f"{a['orders_decided']:,}"),
        ("orders substituted", lambda a: f"{a['orders_substituted']:,}"),
        ("order substitution rate", lambda a: _rate(a["order_substitution_rate"])),
        ("order 95% interval", lambda a: _interval(a["order_substitution_ci95"]))]
    for label, show in rows:
        table.add_row(label, *(show(arms[arm]) for arm in arms))
    print_table(table, stderr=False)
    difference = result["difference"]
    interval = result["difference_ci95"]
    typer.echo(f"decision: {result['decision']} (always-valid p = {result['p_value']:.4g}, alpha {result['alpha']}"
               + (f"; difference {difference:+.4f}" if difference is not None else "")
               + (f", 95% always-valid interval {interval[0]:+.4f} .. {interval[1]:+.4f}" if interval else "")
               + (f"; decided after {result['decided_after']:,} decisions" if result["decided_after"] else "") + ")")


@app.command("stop")
def experiments_stop(
    name: Annotated[str, typer.Argument(help="the experiment")],
    promote: Annotated[bool, typer.Option(
        "--promote", help="and, when the decision is 'treatment better' on a model version, promote it: "
                          "models/current and the state's model pointer (every replica loads it)")] = False,
    models: ModelsOption = None,
    state: StateOption = None,
) -> None:
    """End an experiment (every replica within its polling interval); its report stays. With --promote, refused
    (exit 1, nothing changed) unless the treatment, a model version, is decided better."""
    from recsys.model.artifact import ArtifactError
    from recsys.model.registry import promote as promote_version
    from recsys.state.experiments import ExperimentError, find

    with state_store(state, "experiments") as shared:
        try:
            experiment = find(shared.experiments, name)
        except ExperimentError as exc:
            raise _refused(exc) from exc
        if experiment.stopped_at is not None and not promote:
            raise fail(f"experiment {name!r} was stopped at {experiment.stopped_at}")
        version = experiment.treatment_arm.version
        if promote:
            if version is None:
                raise fail(f"--promote: the treatment is {experiment.treatment}, not a model version: nothing to "
                           "promote")
            decision = _measure(shared, name)["decision"]
            if decision != "treatment better":
                raise fail(f"refused: the decision is {decision!r}, so {version} is not promoted and the experiment "
                           f"keeps running (stop it without --promote to end it anyway)", ExitStatus.refused)
            directory = _models(models)
            try:
                promote_version(directory, version)
            except ArtifactError as exc:
                raise fail(str(exc)) from exc
            typer.echo(f"current -> {version}")
            shared.set_model_pointer(version)  # every replica follows
            typer.echo(f"replicas -> {version}")
        if experiment.stopped_at is None:
            shared.experiments.stop_experiment(name, datetime.now(UTC).isoformat(timespec="seconds"))
    console.print(f"experiment {name!r} stopped", highlight=False)
