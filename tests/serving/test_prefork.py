"""`recsys serve --workers N`, the pre-fork server: one model load shared by forked workers (real processes)."""

import gc
import os
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd

from recsys import Inventory, StockUpdate, SubstituteEngine
from recsys.state.keys import create_key
from recsys.state.store import open_state
from serving.process import children, memory, proc_stat, serving


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped, is not)."""
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def _wait_for(condition: object, attempts: int = 600) -> bool:
    """Poll ``condition()`` up to ``attempts`` times, 0.1 s apart (bounded, nothing timed)."""
    for _ in range(attempts):
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the duration: it accepts no connection, so the other worker takes every one."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _read_key(url: str) -> dict[str, str]:
    """The headers of a new API key with the read scope, made in the state at ``url`` (before the server starts:
    every forked worker must know it)."""
    state = open_state(url)
    try:
        return {"Authorization": f"Bearer {create_key(state, 'prefork-test', frozenset({'read'}))}"}
    finally:
        state.close()


def _query(model_dir: Path) -> dict[str, object]:
    items = pd.read_parquet(model_dir / "items.parquet")
    return {"item_id": str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0]), "k": 3}


def test_workers_share_the_model_and_stop_together(model_dir: Path, tmp_path: Path) -> None:
    """Two forked workers: each answers (the other one stopped), each shares most of its memory with the parent
    and its sibling, one killed is replaced, and SIGTERM to the parent ends every process."""
    env = {"RECSYS_STATE_PATH": str(tmp_path / "state.sqlite3")}
    read = _read_key(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    query = _query(model_dir)
    with serving(model_dir, env=env, args=("--workers", "2"), timeout_s=180) as (base, process):
        workers = children(process.pid)
        assert len(workers) == 2
        for worker in workers:  # each one answers on a fresh connection while the other is stopped
            other = next(w for w in workers if w != worker)
            with _stopped(other):
                answer = httpx.post(f"{base}/v1/substitutes", json=query, headers=read, timeout=30)
                assert answer.status_code == 200 and answer.json()["substitutes"]
        # memory shape, not size: the model, the compiled kernels and the libraries are the parent's pages,
        # shared copy-on-write, so most of what each worker has resident is shared (a worker that loaded its own
        # engine had three times more private than shared memory, and PSS three quarters of its RSS)
        for worker in workers:
            used = memory(worker)
            assert used["private"] < 0.25 * used["rss"], used
            assert used["pss"] < 0.5 * used["rss"], used
        os.kill(workers[0], signal.SIGKILL)  # a worker that dies is replaced by a fresh fork
        # one reading of the children per check: two could see the killed worker still dying, then not yet its
        # replacement
        assert _wait_for(lambda: len(now := children(process.pid)) == 2 and workers[0] not in now)
        assert len(set(children(process.pid)) - set(workers)) == 1
        with _stopped(workers[1]):  # so the replacement answers
            assert _wait_for(lambda: httpx.get(f"{base}/readyz", timeout=30).status_code == 200)
            assert httpx.post(f"{base}/v1/substitutes", json=query, headers=read, timeout=30).status_code == 200
        everyone = children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert _wait_for(lambda: not any(_alive(pid) for pid in everyone))


def test_workers_refuse_a_taken_port(model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "recsys.cli", "serve", "--model", str(model_dir), "--workers", "2", "--port",
             str(port)], capture_output=True, text=True, timeout=120,
            env={**os.environ, "RECSYS_STATE_PATH": str(tmp_path / "state.sqlite3")})
    assert result.returncode == 2 and "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_preloaded_engine_reads_the_inventory_it_is_given(model_dir: Path) -> None:
    """The pre-fork parent loads the engine with a placeholder inventory; a worker points it at its own."""
    placeholder, own = Inventory(), Inventory()
    engine = SubstituteEngine.load(model_dir, placeholder)
    query = _query(model_dir)
    first = engine.substitutes(str(query["item_id"]), k=3).substitutes[0].item_id
    # stock the old inventory knew (and the masks cached from it) is gone with it
    placeholder.apply([StockUpdate(item_id=first, store_id="online", in_stock=False)])
    assert first not in [s.item_id for s in engine.substitutes(str(query["item_id"]), k=3).substitutes]
    engine.use_inventory(own)
    assert engine.substitutes(str(query["item_id"]), k=3).substitutes[0].item_id == first
    gc.collect()
    # nothing but this test's frame holds the placeholder any more, however deep in the engine
    assert [h for h in gc.get_referrers(placeholder) if not isinstance(h, types.FrameType)] == []
    own.apply([StockUpdate(item_id=first, store_id="online", in_stock=False)])
    assert first not in [s.item_id for s in engine.substitutes(str(query["item_id"]), k=3).substitutes]
