"""What an operator sees of the service and what it shows to others: the access log's lines and request ids,
/docs and /metrics that can be turned off, and a model pointer that names no directory outside the models
directory, reported in /readyz without the host's directories."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from recsys.model.artifact import MANIFEST, ArtifactError
from recsys.state.store import SqliteState
from serving.app import create_app
from serving.metrics import Metrics, ObservabilityMiddleware
from serving.settings import Settings
from serving.sync import INVALID_POINTER, shown_error, without_directories

WAIT_S = 30  # only a bound on a broken test


@pytest.fixture()
def modelless(tmp_path: Path) -> Iterator[TestClient]:
    """The app without a model and without a state: enough for the endpoints that need neither."""
    with TestClient(create_app(Settings(model_path=tmp_path / "none", state_path=None))) as client:
        yield client


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "recsys.access"]


def test_every_answer_carries_a_request_id_and_the_log_line_has_it(modelless: TestClient,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="recsys.access"):
        generated = modelless.get("/healthz").headers["x-request-id"]
        kept = modelless.get("/healthz", headers={"X-Request-ID": "lb-7f3a:01.x_y-z"}).headers["x-request-id"]
        malformed = ["has blank", "a" * 129, "quote\"", "{\"json\": 1}", ""]
        replaced = [modelless.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
                    for bad in malformed]
        modelless.get("/no/such/path")
    assert re.fullmatch("[0-9a-f]{16}", generated)
    assert kept == "lb-7f3a:01.x_y-z"
    assert all(re.fullmatch("[0-9a-f]{16}", r) for r in replaced) and len({generated, *replaced}) == 6
    lines = _access_lines(caplog)
    assert [line["request_id"] for line in lines[:7]] == [generated, kept, *replaced]
    assert lines[-1]["endpoint"] == "unmatched" and lines[-1]["status"] == 404
    assert "x-request-id" in modelless.get("/no/such/path").headers  # errors too


def test_the_access_line_has_a_utc_timestamp_and_no_secret(modelless: TestClient,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    before = time.time()
    with caplog.at_level(logging.INFO, logger="recsys.access"):
        modelless.get("/healthz?token=query-secret", headers={"Authorization": "Bearer header-secret",
                                                                "X-Api-Key": "key-secret"})
    (line,) = _access_lines(caplog)
    (record,) = [r for r in caplog.records if r.name == "recsys.access"]
    assert list(line) == ["ts", "event", "request_id", "key", "method", "endpoint", "status", "ms"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["ts"]))
    logged = time.mktime(time.strptime(str(line["ts"])[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 1 <= logged <= time.time() + 1
    assert line["key"] is None and line["endpoint"] == "/healthz" and line["status"] == 200
    for secret in ("query-secret", "header-secret", "key-secret", "token"):
        assert secret not in record.getMessage()


def test_the_access_line_names_the_key_that_called(caplog: pytest.LogCaptureFixture) -> None:
    """The authentication stores the key's name as ``request.state.caller``: the line has the name only."""
    app = FastAPI()
    app.add_middleware(ObservabilityMiddleware, metrics=Metrics(), max_body_bytes=1024)

    @app.get("/who")
    async def who(request: Request) -> dict[str, str]:
        request.state.caller = 'picking-app "nord" é'  # escaped as JSON
        return {}

    @app.get("/anonymous")
    async def anonymous() -> dict[str, str]:
        return {}

    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="recsys.access"):
        client.get("/who", headers={"Authorization": "Bearer the-key-itself"})
        client.get("/anonymous")
        too_large = client.post("/who", content=b"x" * 2048)  # refused before the app: still an id
    assert too_large.status_code == 413 and re.fullmatch("[0-9a-f]{16}", too_large.headers["x-request-id"])
    lines = _access_lines(caplog)
    assert [(line["endpoint"], line["key"]) for line in lines] == [
        ("/who", 'picking-app "nord" é'), ("/anonymous", None), ("unmatched", None)]
    assert lines[2]["request_id"] == too_large.headers["x-request-id"]
    assert not any("the-key-itself" in r.getMessage() for r in caplog.records)


def test_docs_and_metrics_can_be_turned_off(tmp_path: Path, modelless: TestClient) -> None:
    described = ("/docs", "/redoc", "/openapi.json")
    assert [modelless.get(path).status_code for path in (*described, "/metrics")] == [200] * 4
    settings = Settings(model_path=tmp_path / "none", state_path=None, docs=False, metrics=False)
    with TestClient(create_app(settings)) as client:
        assert [client.get(path).status_code for path in (*described, "/metrics")] == [404] * 4
        assert client.get("/healthz").status_code == 200
    with TestClient(create_app(Settings(model_path=tmp_path / "none", state_path=None, docs=False))) as client:
        assert client.get("/metrics").status_code == 200 and client.get("/docs").status_code == 404
    with TestClient(create_app(Settings(model_path=tmp_path / "none", state_path=None, metrics=False))) as client:
        assert client.get("/metrics").status_code == 404 and "/metrics" not in client.get("/openapi.json").json()[
            "paths"]


def test_errors_are_shown_without_directories() -> None:
    assert without_directories("/srv/models/20261124T081502Z: not a model directory (no manifest.json)") == (
        "20261124T081502Z: not a model directory (no manifest.json)")
    assert without_directories("[Errno 2] No such file or directory: '/srv/models/v2/item_factors.npy'") == (
        "[Errno 2] No such file or directory: 'item_factors.npy'")
    assert without_directories("models/v2/items.parquet: checksum mismatch") == "items.parquet: checksum mismatch"
    assert shown_error(ArtifactError("/a/b/v2: format version 9")) == "v2: format version 9"
    assert shown_error(OSError(28, "No space left on device", "/srv/models/v2")) == (
        "OSError: [Errno 28] No space left on device: 'v2'")
    assert len(shown_error(RuntimeError("x" * 10_000))) < 400


def _wait_for(condition: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_pointer_that_names_a_path_loads_nothing(model_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A pointer outside the models directory (here a real model beside it) is refused at start and while
    serving: the replica keeps its model and says so; a pointer to a version that cannot load is reported with
    its name, not its directory."""
    models = tmp_path / "srv" / "models"
    models.mkdir(parents=True)
    elsewhere = tmp_path / "srv" / "elsewhere"
    shutil.copytree(model_dir, elsewhere)
    manifest = json.loads((elsewhere / MANIFEST).read_text())
    manifest["version"] = "elsewhere"
    (elsewhere / MANIFEST).write_text(json.dumps(manifest))
    state_file = tmp_path / "state.sqlite3"
    SqliteState(state_file).close()  # the schema
    with sqlite3.connect(state_file) as connection:  # as a hand-made or older writer could have left it
        connection.execute("INSERT INTO model_pointer (id, version) VALUES (1, '../elsewhere')")
    settings = Settings(model_path=model_dir, state_url=f"sqlite:///{state_file}", models_dir=models,
                        state_poll_s=0.05)
    with caplog.at_level(logging.INFO, logger="recsys.serving"), TestClient(create_app(settings)) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        served = service.engine.version
        assert served != "elsewhere"
        _wait_for(lambda: client.get("/readyz").json().get("model_error"))
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == served
        assert ready.json()["wanted_version"] is None
        assert "not a plain version name" in ready.json()["model_error"]
        assert f'recsys_model_load_failed{{version="{INVALID_POINTER}"}} 1.0' in client.get("/metrics").text
        assert any("../elsewhere" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

        service.store.set_model_pointer("v-missing")  # a plain name, but no such model
        _wait_for(lambda: "v-missing" in (client.get("/readyz").json()["model_error"] or ""))
        body = client.get("/readyz").json()
        assert body["wanted_version"] == "v-missing" and body["model_version"] == served
        assert str(tmp_path) not in json.dumps(body) and "/srv" not in body["model_error"]
        assert "not a model directory" in body["model_error"]
        assert any(str(models / "v-missing") in r.getMessage() for r in caplog.records
                   if r.levelno == logging.ERROR)  # the full error is in the log

        service.store.set_model_pointer(served)
        _wait_for(lambda: client.get("/readyz").json()["model_error"] is None)
    assert service.engine.version == served
