"""Promises a storefront relies on, each tested by breaking things for real: killed processes, model swaps
under load, killed training, hostile bodies on a keep-alive connection."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recsys import SubstituteEngine
from recsys.model.artifact import CURRENT, MANIFEST, read_manifest
from recsys.state.feedback import FeedbackLog
from serving.app import TOO_DEEP
from serving.process import serving

pytestmark = pytest.mark.reliability
TOKEN = "reliability-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _serving(model: Path, state: Path, **env: str) -> AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    return serving(model, env={"RECSYS_STATE_PATH": str(state), "RECSYS_ADMIN_TOKEN": TOKEN, **env})


def _popular(model: Path, n: int = 1) -> list[str]:
    items = pd.read_parquet(model / "items.parquet", columns=["item_id", "n_customers"])
    return items.sort_values("n_customers", ascending=False)["item_id"].head(n).astype(str).tolist()


def test_acknowledged_inventory_and_feedback_survive_sigkill(model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    item = _popular(model_dir)[0]
    store = str(pd.read_parquet(model_dir / "stores.parquet")["store_id"].iloc[0])  # a store of the model's data
    with _serving(model_dir, state) as (base, process):
        top = httpx.post(f"{base}/v1/substitutes", json={"item_id": item, "store_id": store, "customer_id": "7",
                                                         "k": 1}, headers=AUTH).json()
        gone = top["substitutes"][0]["item_id"]
        update = {"updates": [{"item_id": gone, "store_id": store, "in_stock": False},
                              {"item_id": item, "store_id": store, "in_stock": False,
                               "restock_eta": "2026-12-24T07:00:00"}]}
        assert httpx.put(f"{base}/v1/inventory", json=update, headers=AUTH).json()["applied"] == 2
        feedback = {"answer_id": top["answer_id"], "rejected": [gone]}
        assert httpx.post(f"{base}/v1/feedback", json=feedback, headers=AUTH).status_code == 201
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    with _serving(model_dir, state) as (base, _):
        answer = httpx.post(f"{base}/v1/substitutes", json={"item_id": item, "store_id": store, "k": 5},
                            headers=AUTH).json()
        assert gone not in [s["item_id"] for s in answer["substitutes"]]
        assert answer["restock_eta"] == "2026-12-24T07:00:00"
    (kept,) = FeedbackLog(state).feedback()
    assert (kept.item_id, kept.rejected, kept.customer_id, kept.store_id) == (item, (gone,), "7", store)
    assert kept.answer_id == top["answer_id"] and kept.shown == (gone,)


def test_a_snapshot_acknowledged_by_a_killed_process_reaches_another_within_2_s(model_dir: Path,
                                                                               tmp_path: Path) -> None:
    """Two serving processes on one state file: a store's snapshot acknowledged by one, which is SIGKILLed at
    once, is read from the file by the other within 2 s (at the default 1 s polling interval), and by a process
    started afterwards."""
    state = tmp_path / "state.sqlite3"
    item = _popular(model_dir)[0]
    store = str(pd.read_parquet(model_dir / "stores.parquet")["store_id"].iloc[0])

    def offered(base: str) -> list[str]:
        answer = httpx.post(f"{base}/v1/substitutes", json={"item_id": item, "store_id": store, "k": 5},
                            headers=AUTH)
        assert answer.status_code == 200, answer.text
        return [s["item_id"] for s in answer.json()["substitutes"]]

    with _serving(model_dir, state) as (acknowledging, process), _serving(model_dir, state) as (other, _):
        gone, kept = offered(other)[:2]
        snapshot = {"store_id": store, "unlisted": "out_of_stock",
                    "items": [{"item_id": gone, "in_stock": False}, {"item_id": kept, "in_stock": True}]}
        answer = httpx.put(f"{acknowledging}/v1/inventory/snapshot", json=snapshot, headers=AUTH)
        assert answer.status_code == 200 and answer.json()["applied"] == 2
        acknowledged = time.monotonic()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        while gone in offered(other):
            assert time.monotonic() - acknowledged < 2.0, "the other process did not see the snapshot within 2 s"
            time.sleep(0.05)
    with _serving(model_dir, state) as (restarted, _):
        assert gone not in offered(restarted)


def test_reloads_under_load_drop_no_request(model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["version"] = "v-other"
    (other / MANIFEST).write_text(json.dumps(manifest))
    versions = {SubstituteEngine.load(model_dir).version, "v-other"}
    items = _popular(model_dir, 50)
    failures: list[str] = []
    seen: set[str] = set()
    answered = 0
    stop = threading.Event()

    def shopper(base: str) -> None:
        nonlocal answered
        with httpx.Client(base_url=base, timeout=10, headers=AUTH) as client:
            i = 0
            while not stop.is_set() and i < 5000:  # bounded
                response = client.post("/v1/substitutes", json={"item_id": items[i % len(items)], "k": 5})
                i += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                seen.add(response.json()["model_version"])
                answered += 1

    # the shoppers send as fast as answers come, over one caller's rate limit: what is tested is the reloads
    with _serving(model_dir, tmp_path / "state.sqlite3", RECSYS_RATE_LIMIT_PER_S="0") as (base, _):
        threads = [threading.Thread(target=shopper, args=(base,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        reloads = []
        for i in range(6):
            target = other if i % 2 == 0 else model_dir
            reloads.append(httpx.post(f"{base}/v1/admin/reload", json={"model_path": str(target)}, headers=AUTH,
                                      timeout=60))
            time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert all(r.status_code == 200 for r in reloads)
    assert failures == []
    assert answered > 100
    assert seen <= versions and len(seen) == 2


#: the trainer's progress lines after which it is killed: while it builds the model, while it fits the ranker, and
#: while it writes the model (the line that ends the report is the last before the write)
KILLED_AFTER = ("interactions done", "ranker: re-ranker", "report done")


def test_killed_training_never_replaces_the_current_model(model_dir: Path, train_args: list[str],
                                                          tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(model_dir, models / model_dir.name)
    (models / CURRENT).symlink_to(model_dir.name)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    killed_while_training = 0
    for stage in KILLED_AFTER:
        # progress goes to stderr as timestamped lines when it is not a terminal
        process = subprocess.Popen([sys.executable, "-m", "recsys.cli", "train", *train_args, "--out", str(models)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        lines = []
        with process.stderr:
            for line in process.stderr:
                lines.append(line)
                if stage in line:
                    break
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        assert lines and stage in lines[-1], f"the trainer ended before {stage!r}: {''.join(lines)[-2000:]}"
        current = (models / CURRENT).resolve()
        # complete and verified, whichever it is: the old model, or a new one whose write had finished (the
        # pointer moves in one rename after the write, so a kill in the process's last moments may follow it)
        read_manifest(current)
        killed_while_training += current.name == model_dir.name and process.returncode == -signal.SIGKILL
        complete = {p.name for p in models.iterdir() if (p / MANIFEST).is_file() and not p.is_symlink()}
        assert all(not p.name.startswith(".tmp") for p in models.iterdir() if p.name in complete)
        if (models / CURRENT).resolve().name != model_dir.name:  # training won the race: restore
            (models / CURRENT).unlink()
            (models / CURRENT).symlink_to(model_dir.name)
    assert killed_while_training >= 2, "the kills land while the model is being trained and written"


def test_hostile_nesting_leaves_the_keep_alive_connection_serving(model_dir: Path, tmp_path: Path) -> None:
    """A real server, one TCP connection: JSON nested too deep for json.loads (and nested just shallow enough to
    parse, in a field the 422 echoes back) on every endpoint that reads JSON is a 4xx, and the same connection
    then answers a valid query (an unhandled error would make the server close it)."""
    item = _popular(model_dir)[0]
    valid = json.dumps({"item_id": item, "k": 3}).encode()
    headers = {"content-type": "application/json", **AUTH}
    too_deep = [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000,
                b'{"item_id":"1","exclude":' + b"[" * 100_000 + b"]" * 100_000 + b"}"]
    # the depth at which json.loads gives up depends on the server's stack: cover the whole neighbourhood
    near_limit = [b'{"item_id":"1","surprise":' + b"[" * depth + b"]" * depth + b"}" for depth in range(700, 1101, 4)]
    with _serving(model_dir, tmp_path / "state.sqlite3") as (base, _):
        host, port = base.removeprefix("http://").split(":")
        paths = httpx.get(f"{base}/openapi.json").json()["paths"]
        endpoints = [(method.upper(), path) for path, operations in paths.items()
                     for method, operation in operations.items()
                     if "application/json" in operation.get("requestBody", {}).get("content", {})]
        assert len(endpoints) >= 5
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.connect()
        sock = connection.sock
        try:
            for method, path in endpoints:
                for body in too_deep + (near_limit if path == "/v1/substitutes" else near_limit[::10]):
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    detail = json.loads(response.read())["detail"]
                    assert response.status in (400, 422) and detail, (method, path, response.status)
                    if body in too_deep:
                        assert (response.status, detail) == (400, TOO_DEEP)
                    assert not response.will_close and connection.sock is sock, "the server closed the connection"
                    connection.request("POST", "/v1/substitutes", body=valid, headers=headers)
                    answer = connection.getresponse()
                    assert answer.status == 200 and json.loads(answer.read())["item"]["item_id"] == item
                    assert connection.sock is sock
        finally:
            connection.close()
