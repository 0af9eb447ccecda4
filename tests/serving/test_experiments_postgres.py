"""Online experiments on a PostgreSQL state (marker ``postgres``, ``make test-postgres``): the store itself (names
never reused, stops, answer and order counters added by two processes, a database from before the order counters
opened, feedback by experiment), and two replicas in this process
sharing the database: an experiment started on one is served by the other within 2 s, each shopper in the same
arm on both, the answers of both counted, and a stop followed as fast."""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_replicas import cluster  # noqa: F401  (the private PostgreSQL cluster fixture)

from recsys.model.artifact import CURRENT
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.experiments import CONTROL, TREATMENT, ExperimentError, new_experiment, start_experiment
from recsys.state.feedback import Feedback
from recsys.state.store import open_state
from serving.app import create_app
from serving.settings import Settings

pytestmark = pytest.mark.postgres
TOKEN = "experiments-token"


def test_the_experiment_store_on_postgresql(cluster) -> None:  # noqa: F811
    first, second = open_state(cluster.url), open_state(cluster.url)
    now = datetime.now(UTC)
    name = f"e-{uuid.uuid4().hex[:8]}"
    experiment = new_experiment(name, "intent=discover", 0.3, stores=[name], model_exists=lambda _: False, now=now)
    start_experiment(first.experiments, experiment, now)
    assert experiment in second.experiments.experiments()
    with pytest.raises(ExperimentError) as taken:
        second.experiments.add_experiment(experiment)
    assert taken.value.conflict and taken.value.field == "name"
    first.experiments.add_answers({(name, CONTROL): 2, (name, TREATMENT): 1})
    second.experiments.add_answers({(name, CONTROL): 5}, {(name, CONTROL): 2})
    second.experiments.add_answers({}, {(name, TREATMENT): 1})
    assert first.experiments.answers(name) == {CONTROL: 7, TREATMENT: 1}
    assert first.experiments.orders(name) == {CONTROL: 2, TREATMENT: 1}
    signer = AnswerSigner(first.shared_secret(SECRET_NAME))
    answer_id = signer.sign("v", "x", "7", name, ["a"], time.time(), name, TREATMENT)
    first.feedback.record(Feedback("x", shown=("a",), accepted="a", customer_id="7", store_id=name, model_version="v",
                                   answer_id=answer_id, experiment=name, arm=TREATMENT))
    first.feedback.record(Feedback("x", shown=("a",), accepted="a", answer_id=f"{answer_id}-other"))
    assert [f.arm for f in second.feedback.experiment_feedback(name)] == [TREATMENT]
    assert second.experiments.stop_experiment(name, now.isoformat()) and not first.experiments.stop_experiment(
        name, now.isoformat())
    with first.transaction() as connection:  # back to schema 5 as it was before whole orders were counted
        connection.execute("ALTER TABLE recsys_experiment_answers DROP COLUMN orders")
    reopened = open_state(cluster.url)  # opens it, and adds the column: no order counted so far
    assert reopened.experiments.answers(name) == {CONTROL: 7, TREATMENT: 1}
    assert reopened.experiments.orders(name) == {CONTROL: 0, TREATMENT: 0}
    reopened.close()
    first.close()
    second.close()


def test_an_experiment_reaches_the_other_replica_within_2_s(cluster, model_dir: Path, tmp_path: Path  # noqa: F811
                                                             ) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(model_dir, models / model_dir.name)
    (models / CURRENT).symlink_to(model_dir.name)
    settings = Settings(model_path=models / CURRENT, admin_token=TOKEN, state_url=cluster.url, state_poll_s=1.0,
                        rate_limit_per_s=0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings), headers=auth) as first, \
            TestClient(create_app(settings), headers=auth) as second:
        engine = first.app.state.service.engine
        item = str(engine.model.items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
        customers = [str(c) for c in engine.model.customers[:20]]
        name = f"pg-{uuid.uuid4().hex[:8]}"
        store = f"only-{name}"  # its own store: no clash with another test's experiment on this cluster
        started = first.post("/v1/admin/experiments", json={"name": name, "treatment": "intent=familiar",
                                                            "share": 0.5, "stores": [store, "online"]})
        assert started.status_code == 201, started.text
        acknowledged = time.monotonic()
        while second.post("/v1/substitutes", json={"item_id": item, "customer_id": customers[0]}
                          ).json()["experiment"] != name:
            assert time.monotonic() - acknowledged < 2.0, "the other replica did not serve the experiment within 2 s"
            time.sleep(0.05)
        arms = {}
        for customer in customers:
            answers = [replica.post("/v1/substitutes", json={"item_id": item, "customer_id": customer}).json()
                       for replica in (first, second)]
            assert answers[0]["arm"] == answers[1]["arm"], customer
            arms[customer] = answers[0]["arm"]
        deadline = time.monotonic() + 5
        while sum(first.get(f"/v1/experiments/{name}").json()["arms"][arm]["answers"] for arm in (CONTROL, TREATMENT)
                  ) < 2 * len(customers):
            assert time.monotonic() < deadline, "the replicas' answers did not reach the shared counters"
            time.sleep(0.1)
        stopped = first.post(f"/v1/admin/experiments/{name}/stop")
        assert stopped.status_code == 200
        acknowledged = time.monotonic()
        while second.post("/v1/substitutes", json={"item_id": item, "customer_id": customers[0]}
                          ).json()["experiment"] is not None:
            assert time.monotonic() - acknowledged < 2.0, "the other replica still served it 2 s after the stop"
            time.sleep(0.05)
