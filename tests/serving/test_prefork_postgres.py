"""`recsys serve --workers 2` on a PostgreSQL state: the pre-fork parent reads the model pointer through a
connection pool it closes before forking, and each worker follows the pointer on its own."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_prefork import _alive, _query, _read_key, _stopped, _wait_for
from test_replicas import _second_version, cluster  # noqa: F401  (the private PostgreSQL cluster fixture)

from recsys.model.artifact import CURRENT
from serving.process import children, serving

pytestmark = pytest.mark.postgres


def test_forked_workers_follow_the_model_pointer(cluster, model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(model_dir, models / model_dir.name)
    (models / CURRENT).symlink_to(model_dir.name)
    env = {"RECSYS_STATE_URL": cluster.url, "RECSYS_MODELS_DIR": str(models)}
    read = _read_key(cluster.url)
    query = _query(model_dir)
    with serving(models / CURRENT, env=env, args=("--workers", "2"), timeout_s=180) as (base, process):
        workers = children(process.pid)
        assert len(workers) == 2
        new = "29990101T000000000000Z"
        _second_version(models, new)
        promoted = subprocess.run([sys.executable, "-m", "recsys.cli", "models", "promote", new, "--models",
                                   str(models), "--state", cluster.url], capture_output=True, text=True,
                                  timeout=120)
        assert promoted.returncode == 0, promoted.stderr
        for worker in workers:  # each worker, the other one stopped, moves to the new version by itself
            other = next(w for w in workers if w != worker)
            with _stopped(other):
                assert _wait_for(lambda: httpx.get(f"{base}/readyz", timeout=30).json()["model_version"] == new)
                answer = httpx.post(f"{base}/v1/substitutes", json=query, headers=read, timeout=30).json()
                assert answer["model_version"] == new
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers))
