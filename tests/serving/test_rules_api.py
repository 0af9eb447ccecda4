"""Merchandising rules through HTTP and the command line: the admin scope, every replica within 2 s, a 4xx or exit
2 naming the field of an invalid rule."""

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsys.cli import app as cli
from recsys.state.keys import create_key
from serving.app import create_app
from serving.settings import Settings

TOKEN = "rules-operator-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PATH = "/v1/admin/rules"


def _app(model_dir: Path, state: Path) -> TestClient:
    return TestClient(create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=state,
                                          state_poll_s=0.1)), headers=ADMIN)


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with _app(model_dir, tmp_path / "state.sqlite3") as test_client:
        yield test_client


def _query_and_brand(client: TestClient) -> tuple[str, str, str]:
    """A popular item, its category and the brand its substitutes show most."""
    engine = client.app.state.service.engine
    items = engine.model.items
    item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    answer = client.post("/v1/substitutes", json={"item_id": item_id, "k": 10}).json()
    (brand, _), = Counter(s["brand"] for s in answer["substitutes"]).most_common(1)
    return item_id, answer["item"]["category"], brand


def _brands(client: TestClient, item_id: str) -> tuple[set[str], list[str]]:
    answer = client.post("/v1/substitutes", json={"item_id": item_id, "k": 10}).json()
    return {s["brand"] for s in answer["substitutes"]}, answer["rules_applied"]


def test_rules_need_the_admin_scope_and_change_answers_at_once(client: TestClient) -> None:
    item_id, category, brand = _query_and_brand(client)
    rule = {"name": "no-brand", "action": "block", "scope": {"category": category}, "target": {"brand": brand}}
    service = client.app.state.service
    reader = create_key(service.store, "storefront", frozenset({"read"}))
    service.refresh_access()
    refused = client.post(PATH, json=rule, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and "'admin'" in refused.json()["detail"]
    assert client.post(PATH, json=rule).json() == {"name": "no-brand", "created": True}
    brands, applied = _brands(client, item_id)
    assert brand not in brands and applied == ["no-brand"]
    again = client.post(PATH, json={**rule, "target": {"brand": "nobody's"}})
    assert again.status_code == 200 and again.json() == {"name": "no-brand", "created": False}
    assert brand in _brands(client, item_id)[0], "replaced: the brand is back"
    listed = client.get(PATH).json()
    assert [r["name"] for r in listed] == ["no-brand"] and listed[0]["target"] == {"brand": "nobody's"}
    assert client.delete(f"{PATH}/no-brand").status_code == 204
    assert client.delete(f"{PATH}/no-brand").status_code == 404
    assert client.get(PATH).json() == [] and _brands(client, item_id)[1] == []


@pytest.mark.parametrize(("rule", "field"), [
    ({"name": "x", "action": "boost", "target": {}}, "target"),
    ({"name": "x", "action": "pin", "target": {"brand": "b"}}, "item_id"),
    ({"name": "x", "action": "boost", "target": {"brand": "b"}, "amount": 5}, "amount"),
    ({"name": "x", "action": "explode", "target": {"brand": "b"}}, "action"),
    ({"name": "x", "action": "block", "target": {"brand": "b"}, "ends": "yesterday"}, "ends"),
])
def test_an_invalid_rule_is_a_422_naming_the_field(client: TestClient, rule: dict[str, object], field: str) -> None:
    response = client.post(PATH, json=rule)
    assert response.status_code == 422 and field in response.text
    assert client.get(PATH).json() == []


def test_a_rule_added_on_one_replica_applies_on_another_within_2_s(model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with _app(model_dir, state) as first, _app(model_dir, state) as second:
        item_id, category, brand = _query_and_brand(second)
        rule = {"name": "elsewhere", "action": "block", "scope": {"category": category}, "target": {"brand": brand}}
        assert first.post(PATH, json=rule).status_code == 201
        added = time.monotonic()
        while brand in _brands(second, item_id)[0]:
            assert time.monotonic() - added < 2.0, "the other replica did not apply the rule within 2 s"
            time.sleep(0.05)
        assert first.delete(f"{PATH}/elsewhere").status_code == 204
        removed = time.monotonic()
        while brand not in _brands(second, item_id)[0]:
            assert time.monotonic() - removed < 2.0, "the other replica kept the removed rule"
            time.sleep(0.05)


def test_the_command_line_adds_lists_and_removes_rules(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    rules = [{"name": "own-label", "action": "boost", "target": {"private_label": True}, "amount": 0.2},
             {"name": "pin-1", "action": "pin", "scope": {"store_id": "330"}, "target": {"item_id": "1"}}]
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    runner = CliRunner()
    added = runner.invoke(cli, ["rules", "add", str(tmp_path / "rules.json"), "--state", state])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["rules", "list", "--state", state, "--json"])
    assert [r["name"] for r in json.loads(listed.stdout)] == ["own-label", "pin-1"]
    bad = [{"name": "fine", "action": "block", "target": {"brand": "b"}},
           {"name": "broken", "action": "boost", "target": {"brand": "b"}, "amount": -1}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    refused = runner.invoke(cli, ["rules", "add", str(tmp_path / "bad.json"), "--state", state])
    assert refused.exit_code == 2 and "rule 2" in refused.output and "amount" in refused.output
    removed = runner.invoke(cli, ["rules", "remove", "own-label", "--state", state])
    assert removed.exit_code == 0
    listed = runner.invoke(cli, ["rules", "list", "--state", state, "--json"])
    assert [r["name"] for r in json.loads(listed.stdout)] == ["pin-1"], "one invalid rule added none"
    assert runner.invoke(cli, ["rules", "remove", "own-label", "--state", state]).exit_code == 2
