"""`recsys serve` as a real process on a free loopback port."""

import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from serving.process import serving

pytestmark = pytest.mark.realdata


def test_serve_answers_over_loopback(model_dir: Path, tmp_path: Path) -> None:
    with serving(model_dir, env={"RECSYS_STATE_PATH": str(tmp_path / "state.sqlite3")}) as (base, _):
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        items = pd.read_parquet(model_dir / "items.parquet")
        item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
        answer = httpx.post(f"{base}/v1/substitutes", json={"item_id": item_id, "k": 4}).json()
        assert answer["item"]["item_id"] == item_id and 1 <= len(answer["substitutes"]) <= 4
        assert httpx.get(f"{base}/v1/items/nope/substitutes").status_code == 404


def test_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "serve", "--model", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a model directory" in result.stderr and "Traceback" not in result.stderr
