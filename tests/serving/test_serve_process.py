"""`recsys serve` as a real process on a free loopback port."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from recsys.state.keys import create_key
from recsys.state.store import open_state
from serving.process import children, serving


def test_serve_answers_over_loopback(model_dir: Path, tmp_path: Path) -> None:
    """Closed by default: a key made in the state before start-up opens reads, and nothing else."""
    state = tmp_path / "state.sqlite3"
    store = open_state(f"sqlite:///{state}")
    read = {"Authorization": f"Bearer {create_key(store, 'shop', frozenset({'read'}))}"}
    store.close()
    with serving(model_dir, env={"RECSYS_STATE_PATH": str(state)}) as (base, _):
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        items = pd.read_parquet(model_dir / "items.parquet")
        item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
        query = {"item_id": item_id, "k": 4}
        assert httpx.post(f"{base}/v1/substitutes", json=query).status_code == 401
        answer = httpx.post(f"{base}/v1/substitutes", json=query, headers=read).json()
        assert answer["item"]["item_id"] == item_id and 1 <= len(answer["substitutes"]) <= 4
        assert answer["answer_id"]
        assert httpx.get(f"{base}/v1/items/nope/substitutes", headers=read).status_code == 404
        stock = {"updates": [{"item_id": item_id, "store_id": "s", "in_stock": False}]}
        assert httpx.put(f"{base}/v1/inventory", json=stock, headers=read).status_code == 403


def test_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "serve", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a model directory" in result.stderr and "Traceback" not in result.stderr


def test_workers_share_the_state_file(model_dir: Path, tmp_path: Path) -> None:
    """Two worker processes on one port: an update acknowledged by either reaches both (through the shared
    SQLite file), so no fresh connection, whichever worker takes it, offers the item afterwards."""
    env = {"RECSYS_STATE_PATH": str(tmp_path / "state.sqlite3"), "RECSYS_ADMIN_TOKEN": "t"}
    auth = {"Authorization": "Bearer t"}
    with serving(model_dir, env=env, args=("--workers", "2"), timeout_s=180) as (base, process):
        workers = children(process.pid)
        assert len(workers) == 2
        items = pd.read_parquet(model_dir / "items.parquet")
        item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
        store = str(pd.read_parquet(model_dir / "stores.parquet")["store_id"].iloc[0])
        query = {"item_id": item_id, "store_id": store, "k": 3}
        gone = httpx.post(f"{base}/v1/substitutes", json=query, headers=auth).json()["substitutes"][0]["item_id"]
        put = httpx.put(f"{base}/v1/inventory", headers=auth,
                        json={"updates": [{"item_id": gone, "store_id": store, "in_stock": False}]})
        assert put.status_code == 200
        clean = 0
        for _ in range(2000):  # bounded: the other worker catches up within its polling interval
            answer = httpx.post(f"{base}/v1/substitutes", json=query, headers=auth).json()
            offered = [s["item_id"] for s in answer["substitutes"]]
            clean = clean + 1 if gone not in offered else 0
            if clean == 20:
                break
            time.sleep(0.01)
        assert clean == 20


def test_workers_refuse_a_memory_only_state(model_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "serve", "--model", str(model_dir), "--workers", "2"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "RECSYS_STATE_PATH": ""})
    assert result.returncode == 2 and "--workers needs a shared state" in result.stderr
    bad = subprocess.run([sys.executable, "-m", "recsys.cli", "serve", "--model", str(model_dir), "--state",
                          "mysql://x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected sqlite:///path or postgresql://" in bad.stderr
    assert "Traceback" not in result.stderr + bad.stderr
