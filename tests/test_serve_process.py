"""`recsys serve` as a real process on a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.realdata


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_over_loopback(model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "RECSYS_STATE_PATH": str(tmp_path / "state.sqlite3")}
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", "serve", "--model", str(model_dir), "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("server never became ready")
        item = httpx.get(f"{base}/readyz").json()
        assert item["ready"] is True
        import pandas as pd

        items = pd.read_parquet(model_dir / "items.parquet")
        item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
        answer = httpx.post(f"{base}/v1/substitutes", json={"item_id": item_id, "k": 4}).json()
        assert answer["item"]["item_id"] == item_id and 1 <= len(answer["substitutes"]) <= 4
        assert httpx.get(f"{base}/v1/items/nope/substitutes").status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def test_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "serve", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a model directory" in result.stderr and "Traceback" not in result.stderr
