"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis): valid and invalid generated requests, no 5xx,
invalid ones rejected with a 4xx, responses that match the schema."""

import itertools
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serving.app import create_app
from serving.settings import Settings

pytestmark = [pytest.mark.realdata, pytest.mark.reliability]
TOKEN = "fuzz-token"
CASES_PER_OPERATION = 40


def test_api_survives_generated_requests(model_dir: Path, tmp_path: Path) -> None:
    app = create_app(Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3"))
    with TestClient(app):  # runs the lifespan: the model is loaded before the first case
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7
        ran = 0

        for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                nonlocal ran
                ran += 1
                case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
        assert ran >= 4 * CASES_PER_OPERATION  # operations without parameters have only a few distinct cases
