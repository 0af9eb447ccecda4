"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis): valid and invalid generated requests, no 5xx,
invalid ones rejected with a 4xx, responses that match the schema; and hostile bodies on every operation that
reads JSON."""

import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.app import create_app
from serving.responses import TOO_DEEP
from serving.settings import Settings

pytestmark = pytest.mark.reliability
TOKEN = "fuzz-token"
#: generated requests per operation and mode: the edit-test loop's share, and CI's (the slow tier)
QUICK_CASES = 12
CASES_PER_OPERATION = 60


def _signed_for(app: Any, body: dict[str, Any]) -> str:
    """An answer id the service really signed, for an answer that showed the ids ``body`` decides on: what makes a
    generated feedback valid beyond its schema (a made-up answer_id is refused with 422, as it should be)."""
    shown = [x for x in (body.get("accepted"), *(body.get("rejected") or [])) if isinstance(x, str)]
    return str(app.state.service.signer.sign("fuzz", "fuzzed-item", None, None, shown, time.time()))


@pytest.mark.parametrize("cases", [pytest.param(QUICK_CASES, id="quick"),
                                   pytest.param(CASES_PER_OPERATION, id="thorough", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_survives_generated_requests(model_dir: Path, tmp_path: Path, mode: GenerationMode, cases: int) -> None:
    """Valid and invalid generated requests (one test each, so that two workers share them) on every operation:
    a few per operation in the default suite, many in the slow tier (CI runs both)."""
    app = create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3"))
    with TestClient(app):  # runs the lifespan: the model is loaded before the first case
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7
        ran = 0

        for operation in operations:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=cases, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                nonlocal ran
                ran += 1
                if mode is GenerationMode.POSITIVE and case.path == "/v1/feedback" and isinstance(case.body, dict):
                    case.body["answer_id"] = _signed_for(app, case.body)
                if mode is GenerationMode.POSITIVE and case.path == "/v1/inventory/snapshot" \
                        and isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
                    # each item once (a repeated id is refused with 422 naming it, as it should be)
                    case.body["items"] = list({item["item_id"]: item for item in case.body["items"]}.values())
                if mode is GenerationMode.POSITIVE and case.path == "/v1/admin/experiments" \
                        and isinstance(case.body, dict):
                    # an experiment the service can run: a generated version or intent does not exist, nor does a
                    # stop before the start make sense (each refused with 422 naming it, as it should be)
                    case.body.update(treatment="intent=discover", control="current")
                    case.body.pop("stops_at", None)
                if mode is GenerationMode.POSITIVE and case.path == "/v1/admin/rules" and isinstance(case.body, dict):
                    # a rule the service can apply: a target that names an item (a pin needs one), no end before
                    # its start (each refused with 422 naming the field, as it should be)
                    target = case.body.get("target")
                    case.body["target"] = {**(target if isinstance(target, dict) else {}), "item_id": "fuzzed-item"}
                    case.body.pop("ends", None)
                headers = {"Authorization": f"Bearer {TOKEN}"}
                if mode is GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {}):
                    headers = {}  # the case leaves the required key out on purpose: a 401 is the right answer
                case.call_and_validate(headers=headers)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
        # operations without parameters have only a few distinct cases (and no invalid one)
        assert ran >= 2 * cases


def test_every_json_operation_refuses_deep_nesting_with_a_4xx(model_dir: Path, tmp_path: Path) -> None:
    """Every operation whose schema takes a JSON body (so endpoints added later are covered too): bodies nested
    deeper than json.loads can parse are a 400 naming the problem, not a 500; the schema documents the 400."""
    app = create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3"))
    bodies = [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000,
              b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b'{"item_id":"1","k":' + b"[" * 50_000 + b"}"]
    headers = {"content-type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
        operations = [(method, path, operation) for path, item in paths.items()
                      for method, operation in item.items()
                      if "application/json" in operation.get("requestBody", {}).get("content", {})]
        assert {(method, path) for method, path, _ in operations} >= {
            ("post", "/v1/substitutes"), ("post", "/v1/substitutes/batch"), ("post", "/v1/feedback"),
            ("put", "/v1/inventory"), ("post", "/v1/admin/reload")}
        for method, path, operation in operations:
            assert "400" in operation["responses"], f"{method} {path} does not document its 400"
            for body in bodies:
                response = client.request(method, path, content=body, headers=headers)
                assert (response.status_code, response.json()) == (400, {"detail": TOO_DEEP}), (method, path)
