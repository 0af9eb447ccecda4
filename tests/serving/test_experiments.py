"""Online experiments over HTTP, with two apps sharing one SQLite state file as two replicas: a shopper in one arm
on both and after a restart, an experiment started on one replica served by the other within 2 s and stopped the
same way, the arms' models and intents really answering, feedback counted once per answer and in its arm, the
answers per arm counted by both replicas, whole orders (batch answers) counted per arm with their substitution rate
and an order id no client can change, answers outside any experiment unchanged but for two null fields, and every
invalid experiment a 4xx naming its field."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsys.cli import app as cli
from recsys.model.artifact import CURRENT, MANIFEST
from recsys.state.experiments import assign, treatment_threshold, unit_of
from recsys.state.keys import create_key
from serving.app import create_app
from serving.settings import Settings

TOKEN = "experiments-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SECOND = "29990101T000000000000Z"
T = TypeVar("T")


def _eventually(check: Callable[[], T], within_s: float, what: str) -> T:
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not within {within_s} s"
        time.sleep(0.05)


def models_with_a_second_version(model_dir: Path, models: Path) -> Path:
    """``models`` holding the session model as current and a copy of it under the version SECOND beside it."""
    models.mkdir(exist_ok=True)
    shutil.copytree(model_dir, models / model_dir.name)
    (models / CURRENT).symlink_to(model_dir.name)
    shutil.copytree(model_dir, models / SECOND)
    manifest = json.loads((models / SECOND / MANIFEST).read_text())
    manifest["version"] = SECOND
    (models / SECOND / MANIFEST).write_text(json.dumps(manifest))
    return models


@pytest.fixture(scope="module")
def models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_with_a_second_version(model_dir, tmp_path_factory.mktemp("experiment-models"))


def _replica(models: Path, state: Path) -> TestClient:
    return TestClient(create_app(Settings(model_path=models / CURRENT, admin_token=TOKEN, state_path=state,
                                          state_poll_s=0.2, rate_limit_per_s=0)), headers=ADMIN)


@pytest.fixture()
def replicas(models: Path, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    state = tmp_path / "state.sqlite3"
    with _replica(models, state) as first, _replica(models, state) as second:
        yield first, second


def _popular(client: TestClient) -> str:
    engine = client.app.state.service.engine
    return str(engine.model.items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])


def _customers(client: TestClient, n: int) -> list[str]:
    return [str(c) for c in client.app.state.service.engine.model.customers[:n]]


def _ask(client: TestClient, item: str, **query: Any) -> dict[str, Any]:
    response = client.post("/v1/substitutes", json={"item_id": item, "k": 5, **query})
    assert response.status_code == 200, response.text
    return response.json()


def _start(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/admin/experiments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _fields(answer_id: str) -> list[Any]:
    payload = answer_id.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_outside_any_experiment_answers_are_as_before_with_two_nulls(replicas: tuple[TestClient, TestClient]
                                                                     ) -> None:
    first, _ = replicas
    item = _popular(first)
    answer = _ask(first, item, customer_id=_customers(first, 1)[0])
    assert list(answer)[-3:] == ["answer_id", "experiment", "arm"]
    assert answer["experiment"] is None and answer["arm"] is None
    assert len(_fields(answer["answer_id"])) == 7, "the answer id of an answer outside experiments is unchanged"
    assert first.get("/v1/experiments").json() == []


def test_a_shopper_keeps_one_arm_on_every_replica_and_after_a_restart(models: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with _replica(models, state) as first, _replica(models, state) as second:
        item = _popular(first)
        customers = _customers(first, 40)
        started = _start(first, name="discover-vs-balanced", treatment="intent=discover", share=0.5)
        assert started["status"] == "running" and started["control"] == "current" and started["stores"] == []
        # the other replica serves it within 2 s of the acknowledgement
        _eventually(lambda: _ask(second, item, customer_id=customers[0])["experiment"], 2.0,
                    "the experiment on the other replica")
        threshold = treatment_threshold(0.5)
        expected = {c: assign("discover-vs-balanced", str(unit_of(c, None)), threshold) for c in customers}
        assert set(expected.values()) == {"control", "treatment"}
        for customer in customers:
            answers = [_ask(replica, item, customer_id=customer, intent="familiar") for replica in (first, second)]
            for answer in answers:
                assert (answer["experiment"], answer["arm"]) == ("discover-vs-balanced", expected[customer])
                # the treatment's intent overrides the request's; the control answers as asked
                assert answer["intent"] == ("discover" if expected[customer] == "treatment" else "familiar")
                assert _fields(answer["answer_id"])[7:] == ["discover-vs-balanced", expected[customer]]
        sessions = {f"basket-{i}": _ask(first, item, session_id=f"basket-{i}")["arm"] for i in range(20)}
        assert sessions == {s: assign("discover-vs-balanced", f"session:{s}", threshold) for s in sessions}
        anonymous = _ask(first, item)
        assert anonymous["experiment"] is None and anonymous["arm"] is None, "no customer, no session: not counted"
    with _replica(models, state) as restarted:  # a fresh process on the same state
        _eventually(lambda: restarted.app.state.service.experiments.active, 2.0, "the experiment after a restart")
        for customer in customers[:10]:
            assert _ask(restarted, item, customer_id=customer)["arm"] == expected[customer]


def test_feedback_counts_once_in_its_arm_and_every_answer_is_counted(replicas: tuple[TestClient, TestClient]
                                                                     ) -> None:
    first, second = replicas
    item = _popular(first)
    _start(first, name="familiar-test", treatment="intent=familiar", share=0.5)
    _eventually(lambda: second.app.state.service.experiments.active, 2.0, "the experiment on the other replica")
    served = {"control": 0, "treatment": 0}
    decided = {"control": [0, 0], "treatment": [0, 0]}  # decisions, acceptances
    for i, customer in enumerate(_customers(first, 30)):
        replica = (first, second)[i % 2]
        answer = _ask(replica, item, customer_id=customer)
        served[answer["arm"]] += 1
        if not answer["substitutes"] or i % 3 == 0:
            continue  # not every answer gets feedback
        shown = [s["item_id"] for s in answer["substitutes"]]
        decision = {"accepted": shown[0]} if i % 2 else {"rejected": shown[:1]}
        # feedback may reach the other replica, and a client may retry it
        for target in (second, first):
            response = target.post("/v1/feedback", json={"answer_id": answer["answer_id"], **decision})
            assert response.status_code in (200, 201), response.text
        decided[answer["arm"]][0] += 1
        decided[answer["arm"]][1] += "accepted" in decision
    batch = first.post("/v1/substitutes/batch", json={"items": [item], "customer_id": _customers(first, 1)[0]})
    line = batch.json()["lines"][0]
    assert line["experiment"] == "familiar-test" and line["arm"] in served
    served[line["arm"]] += 1

    def counted() -> dict[str, Any] | None:
        report = first.get("/v1/experiments/familiar-test").json()
        return report if {arm: report["arms"][arm]["answers"] for arm in served} == served else None

    report = _eventually(counted, 2.0, "every answer in the shared counters")  # each replica adds its count
    for arm, (n, accepted) in decided.items():
        numbers = report["arms"][arm]
        assert (numbers["decided"], numbers["accepted"], numbers["first_accepted"]) == (n, accepted, accepted)
        assert numbers["acceptance"] == (accepted / n if n else None)
    assert report["decision"] == "no decision yet" and 0 < report["p_value"] <= 1
    assert second.get("/v1/experiments/familiar-test").json()["arms"] == report["arms"], "the same on every replica"
    state_url = first.app.state.service.store.url
    printed = CliRunner().invoke(cli, ["experiments", "report", "familiar-test", "--json", "--state", state_url])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == report, "the command line says the same"


def _with_fields(answer_id: str, fields: list[Any]) -> str:
    """``answer_id`` with its payload replaced by ``fields`` and its signature kept: what a client could forge."""
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{payload}.{answer_id.split('.')[1]}"


def test_whole_orders_are_counted_per_arm_with_their_substitution_rate(replicas: tuple[TestClient, TestClient]
                                                                       ) -> None:
    first, second = replicas
    engine = first.app.state.service.engine
    items = [str(i) for i in engine.model.items.sort_values("n_customers", ascending=False)["item_id"].iloc[:4]]
    _start(first, name="whole-orders", treatment="intent=familiar", share=0.5)
    _eventually(lambda: second.app.state.service.experiments.active, 2.0, "the experiment on the other replica")
    served = {"control": 0, "treatment": 0}
    answered = {"control": 0, "treatment": 0}  # answers: each batch line is one
    # per arm, per order sent: whether each line that got feedback took a shown substitute
    decided: dict[str, dict[int, list[bool]]] = {"control": {}, "treatment": {}}
    order_ids = set()
    decided_line = None
    for i, customer in enumerate(_customers(first, 24)):
        replica = (first, second)[i % 2]
        response = replica.post("/v1/substitutes/batch", json={"items": items, "customer_id": customer, "k": 3})
        assert response.status_code == 200, response.text
        lines = response.json()["lines"]
        arm = lines[0]["arm"]
        assert {(line["experiment"], line["arm"]) for line in lines} == {("whole-orders", arm)}, "one order, one arm"
        signed_orders = {_fields(line["answer_id"])[9] for line in lines}
        assert len(signed_orders) == 1, "every line of an order signs the same order id"
        order_ids |= signed_orders
        served[arm] += 1
        answered[arm] += len(lines)
        if i % 4 == 3:
            continue  # an order nobody decided: served, not decided
        for j, line in enumerate(lines):
            shown = [s["item_id"] for s in line["substitutes"]]
            if not shown or (i + j) % 3 == 2:
                continue  # a line without feedback does not count against its order
            decision = {"rejected": shown} if (i + j) % 5 == 0 else {"accepted": shown[-1]}
            for target in (second, first):  # a retry on another replica: still one decision
                posted = target.post("/v1/feedback", json={"answer_id": line["answer_id"], **decision})
                assert posted.status_code in (200, 201), posted.text
            decided[arm].setdefault(i, []).append("accepted" in decision)
            decided_line = line
    assert len(order_ids) == sum(served.values()), "each order its own id"
    assert all(decided.values()) and any(not all(took) for arm in decided.values() for took in arm.values()), \
        "both arms have decided orders, and some order had a line refused"
    # a line answered on its own, decided: an answer, but no order
    single = _ask(first, items[0], customer_id=_customers(first, 1)[0])
    assert single["experiment"] == "whole-orders" and len(_fields(single["answer_id"])) == 9
    answered[single["arm"]] += 1
    accepted = first.post("/v1/feedback", json={"answer_id": single["answer_id"],
                                                "accepted": single["substitutes"][0]["item_id"]})
    assert accepted.status_code == 201, accepted.text
    # an order id changed, or taken away, under the line's signature: refused, counted nowhere
    assert decided_line is not None
    fields = _fields(decided_line["answer_id"])
    shown = [s["item_id"] for s in decided_line["substitutes"]]
    for forged in (fields[:9] + ["0" * 16], fields[:9]):
        refused = first.post("/v1/feedback", json={"answer_id": _with_fields(decided_line["answer_id"], forged),
                                                   "rejected": shown})
        assert refused.status_code == 422 and "does not verify" in refused.json()["detail"], refused.text
    anonymous = first.post("/v1/substitutes/batch", json={"items": items}).json()["lines"]
    assert all(len(_fields(line["answer_id"])) == 7 for line in anonymous), "outside the experiment: no order"

    def counted() -> dict[str, Any] | None:
        report = first.get("/v1/experiments/whole-orders").json()
        counts = {arm: (report["arms"][arm]["orders"], report["arms"][arm]["answers"]) for arm in served}
        return report if counts == {arm: (served[arm], answered[arm]) for arm in served} else None

    report = _eventually(counted, 2.0, "every order and answer in the shared counters")  # each replica adds its own
    for arm, orders in decided.items():
        numbers = report["arms"][arm]
        substituted = sum(all(took) for took in orders.values())
        assert (numbers["orders_decided"], numbers["orders_substituted"]) == (len(orders), substituted)
        assert numbers["order_substitution_rate"] == pytest.approx(substituted / len(orders))
        lo, hi = numbers["order_substitution_ci95"]
        assert lo <= substituted / len(orders) <= hi
        assert numbers["decided"] == sum(map(len, orders.values())) + (arm == single["arm"])
    state_url = first.app.state.service.store.url
    printed = CliRunner().invoke(cli, ["experiments", "report", "whole-orders", "--json", "--state", state_url])
    assert printed.exit_code == 0 and json.loads(printed.stdout)["arms"] == report["arms"], "the command line too"


def test_a_model_version_arm_is_answered_by_that_model_loaded_beside_the_current(
        replicas: tuple[TestClient, TestClient]) -> None:
    first, second = replicas
    item = _popular(first)
    current = first.app.state.service.engine.version
    rss_before = _rss_mb()
    _start(first, name="new-model", treatment=SECOND, share=0.5, stores=["online"])
    customers = _customers(first, 20)
    threshold = treatment_threshold(0.5)
    treated = [c for c in customers if assign("new-model", f"customer:{c}", threshold) == "treatment"]
    for replica in (first, second):  # each loads the second model off the request path, then serves it
        answer = _eventually(lambda replica=replica: (a := _ask(replica, item, customer_id=treated[0]))["arm"] and a,
                             60.0, "the treatment model loaded")
        assert answer["model_version"] == SECOND
        assert replica.get("/readyz").json()["experiment_error"] is None
    print(f"\nRSS of this test process (two apps) before the experiment {rss_before:.0f} MB, "
          f"with each app's second model {_rss_mb():.0f} MB")
    for customer in customers:
        answer = _ask(second, item, customer_id=customer)
        assert answer["model_version"] == (SECOND if customer in treated else current)
    elsewhere = first.post("/v1/substitutes", json={"item_id": item, "customer_id": treated[0],
                                                    "store_id": _a_store(first)}).json()
    assert elsewhere["experiment"] is None and elsewhere["model_version"] == current, "only at its stores"
    stopped = first.post("/v1/admin/experiments/new-model/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "ended"
    _eventually(lambda: _ask(second, item, customer_id=treated[0])["experiment"] is None, 2.0,
                "the stop on the other replica")
    assert _ask(second, item, customer_id=treated[0])["model_version"] == current
    _eventually(lambda: not second.app.state.service.experiments.engines(), 2.0, "the second model let go")
    again = first.post("/v1/admin/experiments/new-model/stop")
    assert again.status_code == 409 and "stopped" in again.json()["detail"]
    assert first.post("/v1/admin/experiments/nope/stop").status_code == 404
    assert first.get("/v1/experiments/nope").status_code == 404
    listed = first.get("/v1/experiments").json()
    assert [(e["name"], e["status"]) for e in listed] == [("new-model", "ended")]


def _a_store(client: TestClient) -> str:
    return str(client.app.state.service.engine.model.stores[0])


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"name": "x", "treatment": "intent=discover", "share": 0}, 422, "share"),
    ({"name": "x", "treatment": "intent=discover", "share": 1}, 422, "share"),
    ({"name": "x", "treatment": "v-unknown", "share": 0.2}, 422, "treatment"),
    ({"name": "x", "treatment": "intent=cheapest", "share": 0.2}, 422, "treatment"),
    ({"name": "x", "treatment": "intent=discover", "control": "nope", "share": 0.2}, 422, "control"),
    ({"name": "x y", "treatment": "intent=discover", "share": 0.2}, 422, "name"),
    ({"name": "x", "treatment": "intent=discover", "share": 0.2, "stops_at": "2001-01-01T00:00:00Z"}, 422,
     "stops_at"),
    ({"name": "first", "treatment": "intent=familiar", "share": 0.3}, 409, "name"),
    ({"name": "x", "treatment": "intent=familiar", "share": 0.3}, 409, "stores"),
])
def test_an_invalid_experiment_is_a_4xx_naming_the_field(replicas: tuple[TestClient, TestClient],
                                                          body: dict[str, Any], status: int, field: str) -> None:
    first, _ = replicas
    _start(first, name="first", treatment="intent=discover", share=0.2)
    response = first.post("/v1/admin/experiments", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    named = detail.startswith(f"{field}:") if isinstance(detail, str) else field in detail[0]["loc"]
    assert named, detail
    assert [e["name"] for e in first.get("/v1/experiments").json()] == ["first"], "nothing else started"


def test_experiments_need_an_admin_key(replicas: tuple[TestClient, TestClient]) -> None:
    first, _ = replicas
    service = first.app.state.service
    read = {"Authorization": f"Bearer {create_key(service.store, 'shop', frozenset({'read', 'write'}))}"}
    service.refresh_access()
    calls = [("POST", "/v1/admin/experiments", {"name": "x", "treatment": "intent=discover", "share": 0.5}),
             ("GET", "/v1/experiments", None), ("GET", "/v1/experiments/x", None),
             ("POST", "/v1/admin/experiments/x/stop", None)]
    for method, path, body in calls:
        assert first.request(method, path, json=body, headers=read).status_code == 403, path
    assert first.request("GET", "/v1/experiments", headers=ADMIN).status_code == 200


def test_a_treatment_model_that_does_not_verify_is_reported_and_its_requests_not_counted(
        replicas: tuple[TestClient, TestClient], models: Path) -> None:
    first, _ = replicas
    broken = "29990202T000000000000Z"
    if not (models / broken).exists():
        shutil.copytree(models / SECOND, models / broken)
        manifest = json.loads((models / broken / MANIFEST).read_text())
        manifest["version"] = broken
        (models / broken / MANIFEST).write_text(json.dumps(manifest))
        damaged = next(path for path in sorted((models / broken).iterdir()) if path.suffix == ".npy")
        data = damaged.read_bytes()  # its last bytes inverted (zeroing them changes nothing where they are 0 already)
        damaged.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))  # the checksum no longer matches
    item = _popular(first)
    current = first.app.state.service.engine.version
    _start(first, name="broken-model", treatment=broken, share=0.5)
    error = _eventually(lambda: first.get("/readyz").json()["experiment_error"], 30.0, "the failed load reported")
    assert broken in error and "checksum" in error and str(models) not in error
    assert first.get("/readyz").status_code == 200, "still ready: the current model serves"
    for customer in _customers(first, 10):
        answer = _ask(first, item, customer_id=customer)
        if answer["arm"] is None:  # treatment's shoppers, answered as if there were no experiment, not counted
            assert answer["experiment"] is None and answer["model_version"] == current
        else:
            assert answer["arm"] == "control" and answer["model_version"] == current
