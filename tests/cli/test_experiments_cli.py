"""`recsys experiments`: start, list, report and stop an experiment in the shared state; an invalid one exits 2
naming the option; `stop --promote` promotes a model-version treatment only on a "treatment better" decision
(exit 1, nothing changed, otherwise), through the registry and the state's model pointer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from recsys.cli import app
from recsys.model.artifact import CURRENT
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.experiments import CONTROL, TREATMENT
from recsys.state.feedback import Feedback
from recsys.state.store import open_state
from tests.serving.test_experiments import SECOND, models_with_a_second_version


def _experiments(*args: str) -> Result:
    """``recsys experiments ARGS`` in this process, standard output and error apart."""
    return CliRunner().invoke(app, ["experiments", *args])


@pytest.fixture()
def models(model_dir: Path, tmp_path: Path) -> Path:
    return models_with_a_second_version(model_dir, tmp_path / "models")


def _decide(state_url: str, name: str, rates: dict[str, float], per_arm: int, seed: int = 0) -> None:
    """``per_arm`` signed answers per arm in ``name``, each decided: accepted with its arm's rate."""
    state = open_state(state_url)
    signer = AnswerSigner(state.shared_secret(SECRET_NAME))
    rng = np.random.default_rng(seed)
    arms = rng.permutation([CONTROL] * per_arm + [TREATMENT] * per_arm)
    for i, arm in enumerate(arms):
        shown = ("a", "b")
        answer_id = signer.sign("v", "x", str(i), "online", list(shown), time.time(), name, str(arm))
        taken = {"accepted": "a"} if rng.random() < rates[str(arm)] else {"rejected": shown}
        state.feedback.record(Feedback("x", shown=shown, customer_id=str(i), store_id="online", model_version="v",
                                       answer_id=answer_id, experiment=name, arm=str(arm), **taken))  # type: ignore[arg-type]
    state.experiments.add_answers({(name, CONTROL): per_arm, (name, TREATMENT): per_arm})
    state.close()


def test_start_list_report_stop(models: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    started = _experiments("start", "familiar-first", "--treatment", "intent=familiar", "--share", "0.2",
                           "--stores", "330,online", "--models", str(models), "--state", state)
    assert started.exit_code == 0, started.output
    assert "20% of shoppers get intent=familiar" in started.stderr
    listed = json.loads(_experiments("list", "--json", "--state", state).stdout)
    assert [(e["name"], e["status"], e["stores"], e["share"]) for e in listed] == \
        [("familiar-first", "running", ["330", "online"], 0.2)]
    table = _experiments("list", "--state", state)
    assert table.exit_code == 0 and "familiar-first" in table.stdout and "intent=familiar" in table.stdout
    _decide(state, "familiar-first", {CONTROL: 0.4, TREATMENT: 0.4}, 60)
    report = json.loads(_experiments("report", "familiar-first", "--json", "--state", state).stdout)
    assert report["arms"][CONTROL]["answers"] == report["arms"][TREATMENT]["answers"] == 60
    assert report["arms"][CONTROL]["decided"] == 60 and report["decision"] == "no decision yet"
    lo, hi = report["arms"][TREATMENT]["ci95"]
    assert lo < report["arms"][TREATMENT]["acceptance"] < hi
    shown = _experiments("report", "familiar-first", "--state", state)
    assert shown.exit_code == 0 and "acceptance" in shown.stdout and "decision: no decision yet" in shown.stdout
    stopped = _experiments("stop", "familiar-first", "--state", state)
    assert stopped.exit_code == 0, stopped.output
    assert json.loads(_experiments("list", "--json", "--state", state).stdout)[0]["status"] == "ended"
    again = _experiments("stop", "familiar-first", "--state", state)
    assert again.exit_code == 2 and "was stopped at" in again.stderr


def test_report_shows_whole_orders_and_their_substitution_rate(models: Path, tmp_path: Path) -> None:
    state_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    assert _experiments("start", "orders", "--treatment", "intent=familiar", "--share", "0.5", "--models",
                        str(models), "--state", state_url).exit_code == 0
    state = open_state(state_url)
    signer = AnswerSigner(state.shared_secret(SECRET_NAME))
    rng = np.random.default_rng(3)
    substituted = {CONTROL: 0, TREATMENT: 0}
    orders = {CONTROL: 12, TREATMENT: 9}
    for arm, n in orders.items():
        for order in range(n):  # 3 lines each, every line decided: accepted with 80%
            took = rng.random(3) < 0.8
            substituted[arm] += bool(took.all())
            for line, accepted in enumerate(took):
                customer = f"{arm}-{order}"
                answer_id = signer.sign("v", f"x{line}", customer, "online", ["a", "b"], time.time(), "orders", arm,
                                        f"{arm}-order-{order}")
                decision = {"accepted": "a"} if accepted else {"rejected": ("a", "b")}
                state.feedback.record(Feedback(f"x{line}", shown=("a", "b"), customer_id=customer, store_id="online",
                                               model_version="v", answer_id=answer_id, experiment="orders", arm=arm,
                                               order_id=f"{arm}-order-{order}", **decision))  # type: ignore[arg-type]
    state.experiments.add_answers({("orders", arm): 3 * n for arm, n in orders.items()},
                                  {("orders", arm): n for arm, n in orders.items()})
    state.close()
    measured = json.loads(_experiments("report", "orders", "--json", "--state", state_url).stdout)
    table = _experiments("report", "orders", "--state", state_url)
    assert table.exit_code == 0, table.output
    rate_row = next(line for line in table.stdout.splitlines() if "order substitution rate" in line)
    for arm, n in orders.items():
        numbers = measured["arms"][arm]
        assert (numbers["orders"], numbers["orders_decided"], numbers["orders_substituted"]) == \
            (n, n, substituted[arm])
        assert numbers["order_substitution_rate"] == pytest.approx(substituted[arm] / n)
        assert f"{substituted[arm] / n:.4f}" in rate_row
    assert "order 95% interval" in table.stdout


def test_an_invalid_experiment_exits_2_naming_the_option(models: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    base = ["--models", str(models), "--state", state]
    assert _experiments("start", "taken", "--treatment", "intent=discover", "--share", "0.5", *base).exit_code == 0
    cases = [
        (["x", "--treatment", "intent=discover", "--share", "0"], "--share:"),
        (["x", "--treatment", "intent=discover", "--share", "1"], "--share:"),
        (["x", "--treatment", "v-unknown", "--share", "0.2"], "--treatment: no model version 'v-unknown'"),
        (["x", "--treatment", "intent=cheapest", "--share", "0.2"], "--treatment: unknown intent 'cheapest'"),
        (["x", "--treatment", "intent=discover", "--control", "../v", "--share", "0.2"], "--control:"),
        (["x", "--treatment", SECOND, "--share", "0.2", "--stops-at", "yesterday"], "--stops-at:"),
        (["x y", "--treatment", SECOND, "--share", "0.2"], "NAME:"),
        (["taken", "--treatment", "intent=familiar", "--share", "0.2", "--stores", "s9"], "NAME: an experiment named"),
        (["other", "--treatment", SECOND, "--share", "0.2"], "--stores: experiment 'taken' runs"),
    ]
    for args, message in cases:
        result = _experiments("start", *args, *base)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, (args, result.stderr)
    for command in (["report", "nope"], ["stop", "nope"]):
        missing = _experiments(*command, "--state", state)
        assert missing.exit_code == 2 and "no experiment named 'nope'" in missing.stderr
    assert [e["name"] for e in json.loads(_experiments("list", "--json", "--state", state).stdout)] == ["taken"]


def test_stop_promote_only_a_model_treatment_decided_better(models: Path, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    base = ["--models", str(models), "--state", state]
    current = (models / CURRENT).resolve().name
    assert _experiments("start", "by-intent", "--treatment", "intent=discover", "--share", "0.5", "--stores", "a",
                        *base).exit_code == 0
    intent = _experiments("stop", "by-intent", "--promote", *base)
    assert intent.exit_code == 2 and "not a model version" in intent.stderr
    assert _experiments("start", "by-model", "--treatment", SECOND, "--share", "0.5", "--stores", "b",
                        *base).exit_code == 0
    _decide(state, "by-model", {CONTROL: 0.4, TREATMENT: 0.4}, 50)
    undecided = _experiments("stop", "by-model", "--promote", *base)
    assert undecided.exit_code == 1 and "refused: the decision is 'no decision yet'" in undecided.stderr
    assert (models / CURRENT).resolve().name == current, "nothing promoted"
    listed = {e["name"]: e["status"] for e in json.loads(_experiments("list", "--json", "--state", state).stdout)}
    assert listed == {"by-intent": "running", "by-model": "running"}, "nothing stopped"
    _decide(state, "by-model", {CONTROL: 0.3, TREATMENT: 0.6}, 400, seed=1)
    report = json.loads(_experiments("report", "by-model", "--json", "--state", state).stdout)
    assert report["decision"] == "treatment better", report
    promoted = _experiments("stop", "by-model", "--promote", *base)
    assert promoted.exit_code == 0, promoted.output
    assert f"current -> {SECOND}" in promoted.stdout and f"replicas -> {SECOND}" in promoted.stdout
    assert (models / CURRENT).resolve().name == SECOND
    shared = open_state(state)
    assert shared.model_pointer() == SECOND
    shared.close()
    listed = {e["name"]: e["status"] for e in json.loads(_experiments("list", "--json", "--state", state).stdout)}
    assert listed["by-model"] == "ended"
