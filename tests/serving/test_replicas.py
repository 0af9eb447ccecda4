"""Many replicas on one PostgreSQL state, all real: a private cluster in a temporary directory on a free
loopback port (stopped by its PID), and three ``recsys serve`` processes sharing it and a models directory.

Run with ``make test-postgres`` (``pytest -m postgres``); the PostgreSQL server binaries must be installed."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recsys.model.artifact import CURRENT, MANIFEST
from recsys.state.store import open_state, read_decisions
from serving.process import free_port, start, stop, wait_ready

pytestmark = pytest.mark.postgres
TOKEN = "replicas-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """A private PostgreSQL cluster. As root, it runs as the ``postgres`` system user (the server refuses
    root); it is stopped by the postmaster's PID, never by name."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root, self.bin_dir = root, bin_dir
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://recsys@127.0.0.1:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: dict[str, object] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("as root, the cluster runs as the `postgres` user, which Debian's postgresql creates")
            os.chown(root, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        subprocess.run([str(bin_dir / "initdb"), "-D", str(self.data), "-U", "recsys", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, cwd=root, **self.user)  # type: ignore[arg-type]

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100"],
            cwd=self.root, stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"),
            **self.user)  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            assert self.process.poll() is None, (self.root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster by its PID, and wait for it to end."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries not found: `make test-postgres` installs them")
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))  # not under pytest's root-only tmp: the server reads it
    try:
        server = Cluster(root, bin_dir)
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory every replica reads, with the session model current and a second version beside it."""
    models = tmp_path_factory.mktemp("shared-models")
    shutil.copytree(model_dir, models / model_dir.name)
    (models / CURRENT).symlink_to(model_dir.name)
    return models


def _second_version(models: Path, version: str) -> Path:
    """A copy of the current model under another version (the manifest's checksums do not cover the manifest)."""
    current = (models / CURRENT).resolve()
    target = models / version
    shutil.copytree(current, target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["version"] = version
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target


def _replica_env(cluster: Cluster, models: Path) -> dict[str, str]:
    # every call carries the operator's token; these tests poll and load replicas faster than one caller's default
    # rate limit allows, and what they check is replication, not the limit. The cluster outlives one test, so each
    # test isolates its stock reports under store ids of its own, which the model has never seen: those are answered
    # by the chain-level rules instead of a 404
    return {"RECSYS_STATE_URL": cluster.url, "RECSYS_ADMIN_TOKEN": TOKEN, "RECSYS_MODELS_DIR": str(models),
            "RECSYS_RATE_LIMIT_PER_S": "0", "RECSYS_ALLOW_UNKNOWN_STORES": "true"}


def _start_replicas(stack: ExitStack, cluster: Cluster, models: Path, n: int
                    ) -> list[tuple[str, subprocess.Popen[bytes]]]:
    replicas = [start(models / CURRENT, _replica_env(cluster, models)) for _ in range(n)]  # load in parallel
    for _, process in replicas:
        stack.callback(stop, process)
    for base, _ in replicas:
        assert wait_ready(base, 120), f"replica {base} not ready"
    return replicas


@pytest.fixture(scope="module")
def replicas(cluster: Cluster, shared_models: Path) -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [base for base, _ in _start_replicas(stack, cluster, shared_models, 3)]


def _popular(models: Path, n: int) -> list[str]:
    items = pd.read_parquet(models / CURRENT / "items.parquet", columns=["item_id", "n_customers"])
    return items.sort_values("n_customers", ascending=False)["item_id"].head(n).astype(str).tolist()


def _offered(client: httpx.Client, base: str, item: str, store: str) -> list[str]:
    answer = client.post(f"{base}/v1/substitutes", json={"item_id": item, "store_id": store, "k": 5}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return [s["item_id"] for s in answer.json()["substitutes"]]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_stock_updates_through_one_replica_reach_the_others(replicas: list[str], shared_models: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = replicas
    items = [x for x in _popular(shared_models, 40)]
    delays_ms: list[float] = []
    with httpx.Client(timeout=10) as client:
        targets = []
        for x in items:
            offered = _offered(client, b, x, "prop-probe")
            if offered:
                targets.append((x, offered[0]))
        assert len(targets) >= 10
        for i in range(100):
            x, gone = targets[i % len(targets)]
            store = f"prop-{i}"
            assert gone in _offered(client, b, x, store) and gone in _offered(client, c, x, store)
            put = client.put(f"{a}/v1/inventory", headers=AUTH,
                             json={"updates": [{"item_id": gone, "store_id": store, "in_stock": False}]})
            assert put.status_code == 200 and put.json()["applied"] == 1
            acknowledged = time.perf_counter()
            pending = {b, c}
            deadline = acknowledged + 30
            while pending:
                pending = {r for r in pending if gone in _offered(client, r, x, store)}
                assert time.perf_counter() < deadline, f"update {i} never reached {pending}"
            delays_ms.append((time.perf_counter() - acknowledged) * 1e3)
            assert gone not in _offered(client, a, x, store)
    p50, p99 = statistics.median(delays_ms), _percentile(delays_ms, 0.99)
    with capsys.disabled():
        print(f"\nstaleness over {len(delays_ms)} updates, acknowledged on A until B and C stop offering the item: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(delays_ms):.1f} ms")


def test_feedback_posted_to_every_replica_is_read_by_training(replicas: list[str], cluster: Cluster,
                                                              shared_models: Path, train_args: list[str],
                                                              tmp_path: Path) -> None:
    (x,) = _popular(shared_models, 1)
    with httpx.Client(timeout=10, headers=AUTH) as client:
        ids, accepted = [], []
        for i, base in enumerate(replicas):
            # answered by one replica, decided through the next: every replica verifies the others' answer ids
            answer = client.post(f"{base}/v1/substitutes", json={"item_id": x, "customer_id": f"replica-{i}",
                                                                 "k": 5}).json()
            accepted.append(answer["substitutes"][i]["item_id"])
            response = client.post(f"{replicas[(i + 1) % len(replicas)]}/v1/feedback",
                                   json={"answer_id": answer["answer_id"], "accepted": accepted[-1]})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    assert len(set(ids)) == 3
    decisions = read_decisions(cluster.url)
    mine = decisions[decisions["customer_id"].str.startswith("replica-", na=False)]
    assert sorted(mine["substitute_id"]) == sorted(accepted) and mine["accepted"].all()
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "train", *train_args, "--feedback", cluster.url,
                             "--out", str(tmp_path / "models"), "--no-progress"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"feedback: {len(decisions):,} decisions from {cluster.url}" in result.stderr


@dataclass
class Load:
    """Steady query load (about ``rate`` requests/s in all) spread over ``bases``, on threads."""

    bases: list[str]
    items: list[str]
    rate: float = 200.0
    answers: dict[str, int] = field(default_factory=dict)  # model version -> count
    failures: dict[str, list[str]] = field(default_factory=dict)  # base -> failures
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        per_thread = self.rate / (2 * len(self.bases))
        for base in self.bases:
            for offset in range(2):
                thread = threading.Thread(target=self._shop, args=(base, per_thread, offset), daemon=True)
                thread.start()
                self.threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _shop(self, base: str, rate: float, offset: int) -> None:
        interval = 1 / rate
        with httpx.Client(base_url=base, timeout=10, headers=AUTH) as client:
            i = offset
            next_at = time.perf_counter()
            while not self.stop.is_set():
                item = self.items[i % len(self.items)]
                i += 2
                try:
                    response = client.post("/v1/substitutes", json={"item_id": item, "k": 5})
                    ok, detail = response.status_code == 200, f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                with self.lock:
                    if ok:
                        version = response.json()["model_version"]
                        self.answers[version] = self.answers.get(version, 0) + 1
                    else:
                        self.failures.setdefault(base, []).append(detail)
                next_at += interval
                self.stop.wait(max(0.0, next_at - time.perf_counter()))

    @property
    def answered(self) -> int:
        with self.lock:
            return sum(self.answers.values())


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> float:
    start_at = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start_at < timeout_s, "condition not met in time"
        time.sleep(0.05)
    return time.perf_counter() - start_at


def _seq(base: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("recsys_state_seq "):
            return float(line.split()[1])
    raise AssertionError("no recsys_state_seq in /metrics")


def test_database_outage_under_load(replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    """Reads never fail, writes while the database is down get 503, every acknowledged write is kept, and
    every replica catches up once the database is back."""
    items = _popular(shared_models, 50)
    acknowledged: dict[tuple[str, str], bool] = {}
    refused = 0
    write_failures: list[str] = []
    stop_writing = threading.Event()

    def writer(base: str, n: int) -> None:
        nonlocal refused
        with httpx.Client(timeout=30) as client:
            i = 0
            while not stop_writing.is_set():
                store, item = f"outage-{n}-{i}", items[i % len(items)]
                i += 1
                response = client.put(f"{base}/v1/inventory", headers=AUTH,
                                      json={"updates": [{"item_id": item, "store_id": store, "in_stock": False}]})
                if response.status_code == 200:
                    acknowledged[store, item] = False
                elif response.status_code == 503:
                    refused += 1
                else:
                    write_failures.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(0.05)

    with Load(replicas, items) as load:
        writers = [threading.Thread(target=writer, args=(base, n)) for n, base in enumerate(replicas)]
        for thread in writers:
            thread.start()
        time.sleep(1.5)
        cluster.stop()
        down_at = time.perf_counter()
        time.sleep(4)
        unready = [base for base in replicas if httpx.get(f"{base}/readyz", timeout=10).status_code != 200]
        states = {httpx.get(f"{base}/readyz", timeout=10).json()["state"] for base in replicas}
        cluster.start()
        down_s = time.perf_counter() - down_at
        time.sleep(3)
        stop_writing.set()
        for thread in writers:
            thread.join(timeout=60)
    assert load.failures == {}, "reads failed during the outage"
    assert load.answered > 100
    assert write_failures == []
    assert refused > 0, f"no write was refused in {down_s:.1f} s without the database"
    assert unready == [] and states == {"unreachable"}, "answers kept coming from memory, said so on /readyz"
    store = open_state(cluster.url)
    try:
        changes = store.stock.stock_since(-1)
        rows, high = changes.updates, changes.seq
    finally:
        store.close()
    kept = {(u.store_id, u.item_id): u.in_stock for u in rows}
    assert all(kept.get(key) is False for key in acknowledged), "an acknowledged write was lost"
    _wait_for(lambda: all(_seq(base) >= high for base in replicas), 30)
    with httpx.Client(timeout=10) as client:  # and each replica applies them: none offers an item it was told is gone
        for (store_id, item) in list(acknowledged)[-10:]:
            for base in replicas:
                answer = client.get(f"{base}/v1/items/{items[0]}/substitutes", params={"store_id": store_id},
                                    headers=AUTH)
                assert item not in [s["item_id"] for s in answer.json()["substitutes"]]


def test_rolling_promotion_under_load(replicas: list[str], cluster: Cluster, shared_models: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    old = (shared_models / CURRENT).resolve().name
    new = "29990101T000000000000Z"
    _second_version(shared_models, new)
    items = _popular(shared_models, 50)
    with Load(replicas, items) as load:
        time.sleep(1.0)
        promoted = subprocess.run([sys.executable, "-m", "recsys.cli", "models", "promote", new, "--models",
                                   str(shared_models), "--state", cluster.url], capture_output=True, text=True,
                                  timeout=120)
        assert promoted.returncode == 0, promoted.stderr
        seconds = _wait_for(lambda: all(httpx.get(f"{b}/readyz", timeout=10).json()["model_version"] == new
                                        for b in replicas), 10)
        time.sleep(1.0)
    assert load.failures == {}
    assert set(load.answers) == {old, new}
    assert (shared_models / CURRENT).resolve().name == new
    with capsys.disabled():
        print(f"\nrolling promotion: every replica served {new} {seconds:.1f} s after the pointer moved; "
              f"{load.answered} answers, 0 failed")


def test_a_replica_that_cannot_load_the_new_version_keeps_serving_and_says_so(
        replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    serving_now = httpx.get(f"{replicas[0]}/readyz").json()["model_version"]
    broken = "29990202T000000000000Z"
    _second_version(shared_models, broken)
    (shared_models / broken / "item_factors.npy").write_bytes(b"corrupt")
    store = open_state(cluster.url)
    try:
        store.set_model_pointer(broken)
        _wait_for(lambda: all(httpx.get(f"{b}/readyz").json()["model_error"] for b in replicas), 30)
        for base in replicas:
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["model_version"] == serving_now
            assert broken in ready.json()["model_error"] and ready.json()["wanted_version"] == broken
            assert f'recsys_model_load_failed{{version="{broken}"}} 1.0' in httpx.get(f"{base}/metrics").text
            assert httpx.get(f"{base}/v1/items/{_popular(shared_models, 1)[0]}/substitutes",
                             headers=AUTH).status_code == 200
    finally:
        store.set_model_pointer(serving_now)
        store.close()
    _wait_for(lambda: not any(httpx.get(f"{b}/readyz").json()["model_error"] for b in replicas), 30)


def test_sigkill_of_one_replica_under_load(replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    """A fourth replica takes writes and is killed: the others answer without an error, and its acknowledged
    write reaches them."""
    items = _popular(shared_models, 50)
    with ExitStack() as stack:
        ((doomed, process),) = _start_replicas(stack, cluster, shared_models, 1)
        with Load([*replicas, doomed], items) as load:
            time.sleep(1.0)
            with httpx.Client(timeout=10) as client:
                x = items[0]
                gone = _offered(client, replicas[0], x, "killed")[0]
                put = client.put(f"{doomed}/v1/inventory", headers=AUTH,
                                 json={"updates": [{"item_id": gone, "store_id": "killed", "in_stock": False}]})
                assert put.status_code == 200
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            time.sleep(2.0)
        assert {base: errors for base, errors in load.failures.items() if base != doomed} == {}
        assert load.failures.get(doomed), "the killed replica's own clients did see it go"
        with httpx.Client(timeout=10) as client:
            _wait_for(lambda: all(gone not in _offered(client, base, x, "killed") for base in replicas), 10)


def test_a_replica_started_while_the_database_is_down_is_ready_once_it_is_back(
        replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    cluster.stop()
    try:
        with ExitStack() as stack:
            base, process = start(shared_models / CURRENT, _replica_env(cluster, shared_models))
            stack.callback(stop, process)

            def loaded() -> bool:
                try:
                    return httpx.get(f"{base}/readyz", timeout=10).json()["model_version"] is not None
                except httpx.HTTPError:
                    return False

            _wait_for(loaded, 120)
            for _ in range(5):
                ready = httpx.get(f"{base}/readyz", timeout=10)
                assert ready.status_code == 503 and ready.json()["ready"] is False, ready.text
                assert ready.json()["state"] in ("unreachable", "unknown")
                time.sleep(0.2)
            cluster.start()
            _wait_for(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 30)
            assert httpx.get(f"{base}/readyz").json()["state"] == "reachable"
    finally:
        if cluster.process is None:
            cluster.start()


def test_a_reader_catching_up_during_concurrent_writes_misses_no_batch(cluster: Cluster) -> None:
    """Sequence numbers follow commit order: a reader that catches up while four writers commit batches of keys
    that are never written again ends with every key (a batch that committed after a later-numbered one was read
    would be skipped for good)."""
    from recsys import Inventory, StockUpdate

    writers = [open_state(cluster.url) for _ in range(4)]
    reader_state = open_state(cluster.url)
    reader = Inventory(reader_state.stock)
    stop_reading = threading.Event()

    def write(n: int) -> None:
        for i in range(60):
            writers[n].stock.save_stock([StockUpdate(f"k{n}-{i}-{j}", False, "concurrent") for j in range(3)])

    def read() -> None:
        while not stop_reading.is_set():
            reader.catch_up()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    follower = threading.Thread(target=read)
    follower.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop_reading.set()
    follower.join(timeout=60)
    reader.catch_up()
    try:
        expected = {f"k{n}-{i}-{j}" for n in range(4) for i in range(60) for j in range(3)}
        assert set(reader.out_of_stock("concurrent")[1]) == expected
    finally:
        for state in [*writers, reader_state]:
            state.close()


def test_a_key_made_and_revoked_with_the_cli_reaches_every_replica(replicas: list[str], cluster: Cluster,
                                                                   shared_models: Path) -> None:
    """`recsys keys create` on the shared state: every replica accepts the key; `recsys keys revoke`: every replica
    refuses it within 2 s (PostgreSQL announces the change; the polling interval is the fallback)."""
    (x,) = _popular(shared_models, 1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recsys.cli", "keys", *args, "--state", cluster.url],
                              capture_output=True, text=True, timeout=60)

    made = cli("create", "--name", "storefront-pg", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    with httpx.Client(timeout=10) as client:
        def status(base: str) -> int:
            return client.post(f"{base}/v1/substitutes", json={"item_id": x}, headers=key).status_code

        deadline = time.monotonic() + 10
        while any(status(base) != 200 for base in replicas):
            assert time.monotonic() < deadline, "a replica never accepted the new key"
            time.sleep(0.05)
        assert cli("revoke", "storefront-pg").returncode == 0
        revoked = time.monotonic()
        pending = set(replicas)
        while pending:
            pending = {base for base in pending if status(base) != 401}
            assert time.monotonic() - revoked < 2.0, f"still accepted after 2 s by {pending}"
            time.sleep(0.02)
    listed = cli("list", "--revoked")
    assert "storefront-pg" in listed.stderr and key["Authorization"].split()[-1] not in listed.stderr + listed.stdout


def test_snapshots_reach_another_reader_exactly(cluster: Cluster) -> None:
    """The SQLite catch-up tests of whole-store snapshots, on PostgreSQL: a reader ends with exactly the
    database's state (deleted rows included), also while two writers commit snapshots and updates concurrently."""
    from tests.core.test_stock_snapshot import catch_up_exactly, concurrent_reader_ends_exact

    run = uuid.uuid4().hex[:8]  # the cluster outlives one test: stores of their own
    catch_up_exactly(cluster.url, f"pg-exact-{run}-")
    concurrent_reader_ends_exact(cluster.url, f"pg-concurrent-{run}-")


def _model_store(models: Path) -> str:
    """A store the model knows (answers for it need no stock report first)."""
    return str(pd.read_parquet(models / CURRENT / "stores.parquet")["store_id"].iloc[-1])


def test_a_snapshot_acknowledged_by_a_replica_reaches_the_others_and_survives_its_sigkill(
        replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    """A fourth replica acknowledges a store's snapshot and is SIGKILLed at once: every other replica stops
    offering the item it lists out within 2 s, and the database holds the snapshot whole."""
    (x,) = _popular(shared_models, 1)
    store = _model_store(shared_models)
    with ExitStack() as stack, httpx.Client(timeout=10) as client:
        ((doomed, process),) = _start_replicas(stack, cluster, shared_models, 1)
        gone, kept = _offered(client, replicas[0], x, store)[:2]
        snapshot = {"store_id": store, "unlisted": "out_of_stock",
                    "items": [{"item_id": gone, "in_stock": False}, {"item_id": kept, "in_stock": True}]}
        put = client.put(f"{doomed}/v1/inventory/snapshot", headers=AUTH, json=snapshot)
        assert put.status_code == 200 and put.json()["applied"] == 2, put.text
        acknowledged = time.monotonic()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        pending = set(replicas)
        while pending:
            pending = {base for base in pending if gone in _offered(client, base, x, store)}
            assert time.monotonic() - acknowledged < 2.0, f"not seen within 2 s by {pending}"
    state = open_state(cluster.url)
    try:
        changes = state.stock.stock_since(-1)
    finally:
        state.close()
    assert {u.item_id: u.in_stock for u in changes.updates if u.store_id == store} == {gone: False, kept: True}
    assert [(m.store_id, m.unlisted_out) for m in changes.snapshots if m.store_id == store] == [(store, True)]


def test_a_snapshot_while_the_database_is_down_is_a_503_with_nothing_applied(
        replicas: list[str], cluster: Cluster, shared_models: Path) -> None:
    store = f"snapshot-outage-{uuid.uuid4().hex[:8]}"  # the cluster outlives one test: a store of its own
    snapshot = {"store_id": store, "unlisted": "out_of_stock",
                "items": [{"item_id": item, "in_stock": True} for item in _popular(shared_models, 5)]}
    cluster.stop()
    try:
        refused = httpx.put(f"{replicas[0]}/v1/inventory/snapshot", headers=AUTH, json=snapshot, timeout=30)
        assert refused.status_code == 503 and "not applied" in refused.json()["detail"], refused.text
    finally:
        cluster.start()
    state = open_state(cluster.url)
    try:
        changes = state.stock.stock_since(-1)
    finally:
        state.close()
    assert not any(u.store_id == store for u in changes.updates)
    assert not any(m.store_id == store for m in changes.snapshots)
    _wait_for(lambda: httpx.put(f"{replicas[0]}/v1/inventory/snapshot", headers=AUTH, json=snapshot,
                                timeout=30).status_code == 200, 30)  # the retry the 503 asks for


def test_a_rule_added_with_the_cli_reaches_every_replica_within_2_s(replicas: list[str], cluster: Cluster,
                                                                    shared_models: Path) -> None:
    """`recsys rules add` on the shared state: every replica applies it within 2 s (PostgreSQL announces the change);
    `recsys rules remove`: every replica stops applying it within 2 s."""
    (x,) = _popular(shared_models, 1)
    name = f"pin-{uuid.uuid4().hex[:8]}"  # the cluster outlives one test: a rule of its own

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recsys.cli", "rules", *args, "--state", cluster.url],
                              capture_output=True, text=True, timeout=60, input=stdin)

    with httpx.Client(timeout=10, headers=AUTH) as client:
        def first(base: str) -> tuple[str, list[str]]:
            answer = client.post(f"{base}/v1/substitutes", json={"item_id": x, "k": 5}).json()
            return answer["substitutes"][0]["item_id"], answer["rules_applied"]

        second = client.post(f"{replicas[0]}/v1/substitutes", json={"item_id": x, "k": 5}).json()["substitutes"][1]
        rule = {"name": name, "action": "pin", "scope": {"item_id": x}, "target": {"item_id": second["item_id"]}}
        assert cli("add", "-", stdin=json.dumps(rule)).returncode == 0
        added = time.monotonic()
        pending = set(replicas)
        while pending:
            pending = {base for base in pending if first(base) != (second["item_id"], [name])}
            assert time.monotonic() - added < 2.0, f"not applied after 2 s by {pending}"
            time.sleep(0.02)
        assert cli("remove", name).returncode == 0
        removed = time.monotonic()
        pending = set(replicas)
        while pending:
            pending = {base for base in pending if first(base)[1]}
            assert time.monotonic() - removed < 2.0, f"still applied after 2 s by {pending}"
            time.sleep(0.02)
