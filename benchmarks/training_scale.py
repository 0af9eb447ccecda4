"""The training cost curve: how time per stage, the trainer's peak memory, the model's size on disk and the
server's memory grow with the data.

Two kinds of growth:

- ``cj-xN``: The Complete Journey with every household copied N times under new customer and basket ids, so
  customers and events grow N-fold while the catalog stays (a chain with more households).
- ``items-1m``: a synthetic catalog of 1M items in substitution groups of log-normal size, with purchases spread
  over it by a Zipf law (a marketplace with a long tail: items grow).

Each point trains in a fresh process (peak RSS is per process), then ``recsys serve`` loads the model and its
resident memory is read. Run: ``python -m benchmarks.training_scale --points cj-x1,cj-x2 --out DIR``; the JSON,
the table and the plot go to ``DIR``. Nothing here is asserted in tests except the data builders' shapes.

Two ways in (``--via``): ``api`` hands the trainer the frame in Python (``training.pipeline.train``); ``cli``
writes the point as a retailer's parquet lake (a directory of monthly parts), its catalog as a parquet file and
a mapping TOML, then times ``recsys train --data LAKE --catalog CATALOG --mapping MAPPING`` in a child process, so
the loaders' own cost is in the curve; ``spark`` times ``recsys train --engine spark`` on the same lake, by default
against a Spark standalone cluster on loopback (a master and ``--spark-workers`` workers of 1 core each, started
from pyspark's own distribution and stopped by process id), so that the executors are JVMs of their own: the
resident memory of the driver (the ``recsys`` Python process and its JVM) and of each executor is sampled from
``/proc`` every half second. ``--spark-workers 0``: local mode, the executors inside the driver's JVM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recsys.domain.schema import Dataset

#: the stages the trainer reports (training.progress.STAGES; ``spark`` on the Spark engine), drawn in this order
STAGE_ORDER = ("spark", "validate", "catalog", "interactions", "embeddings", "neighbours", "feedback", "index",
               "ranker", "report", "write")


def replicate(dataset: Dataset, copies: int) -> Dataset:
    """Every household ``copies`` times: copy c > 0 gets ids ``<id>~c`` (customers and baskets); items, stores,
    times and prices stay, so each copy shops exactly like its original.

    The id columns come out categorical (an integer code per row, each id string stored once), as a reader of
    dictionary-encoded parquet gives them, so the input frame costs about 45 bytes an event instead of ~140."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    events = dataset.events
    columns: dict[str, object] = {}
    for name in events.columns:
        column = events[name]
        if name in ("customer_id", "session_id"):
            codes, uniques = pd.factorize(column)
            n = len(uniques)
            labels = pd.Index([f"{u}~{c}" if c else str(u) for c in range(copies) for u in uniques])
            columns[name] = pd.Categorical.from_codes(
                np.concatenate([codes + c * n for c in range(copies)]), categories=labels)
        elif name in ("item_id", "store_id", "event_type"):
            single = column.astype("category")
            columns[name] = pd.Categorical.from_codes(np.tile(single.cat.codes.to_numpy(), copies),
                                                      categories=single.cat.categories)
        else:
            columns[name] = np.tile(column.to_numpy(), copies)
    return Dataset(events=pd.DataFrame(columns), catalog=dataset.catalog, reports=dataset.reports)


def synthetic_catalog(n_items: int = 1_000_000, n_customers: int = 50_000, n_events: int = 6_000_000,
                      seed: int = 0) -> Dataset:
    """``n_items`` items in groups of log-normal size (median ~40), brands and sizes per item, and
    ``n_events`` purchases: customers shop in a few groups each, items drawn by a Zipf law within a group."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(1, rng.lognormal(mean=3.7, sigma=1.0, size=n_items // 20).astype(np.int64))
    sizes = sizes[np.cumsum(sizes) <= n_items]
    sizes = np.append(sizes, n_items - sizes.sum()) if sizes.sum() < n_items else sizes
    n_groups = len(sizes)
    group = np.repeat(np.arange(n_groups), sizes)
    item_ids = pd.Series(np.arange(n_items)).map("i{}".format)
    units = rng.choice(["OZ", "LB", "CT", "ML"], size=n_items)
    amount = np.round(rng.lognormal(2.5, 0.6, size=n_items), 1)
    catalog = pd.DataFrame({
        "item_id": item_ids.astype(str),
        "brand": pd.Series(rng.integers(0, 5_000, n_items)).map("brand {}".format).astype(str),
        "manufacturer": pd.Series(rng.integers(0, 2_000, n_items)).map("mfr {}".format).astype(str),
        "private_label": rng.random(n_items) < 0.15,
        "department": pd.Series(group // 400).map("dept {}".format).astype(str),
        "category": pd.Series(group // 20).map("cat {}".format).astype(str),
        "product_type": pd.Series(group).map("type {}".format).astype(str),
        "package_size": (pd.Series(amount).astype(str) + " " + units).astype(str),
    })
    # events: a customer picks a group (popular groups more often), then an item of it by a Zipf law
    group_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_pick = rng.zipf(1.1, size=n_events) % n_groups
    within = (rng.zipf(1.6, size=n_events) - 1) % sizes[group_pick]
    item = group_start[group_pick] + within
    customer = rng.integers(0, n_customers, n_events)
    day = rng.integers(0, 365, n_events)
    basket = customer.astype(np.int64) * 400 + day  # one basket per customer and day
    timestamps = pd.Timestamp("2017-01-01") + pd.to_timedelta(day * 86400 + rng.integers(0, 86400, n_events), "s")
    events = pd.DataFrame({
        "customer_id": pd.Series(customer).map("c{}".format).astype(str),
        "item_id": item_ids.to_numpy()[item],
        "session_id": pd.Series(basket).map("b{}".format).astype(str),
        "event_type": "purchase",
        "timestamp": timestamps.astype("datetime64[ns]"),
        "quantity": 1.0,
        "price": np.round(amount[item] * 0.2 + 1.0, 2),
        "store_id": pd.Series(customer % 300).map("s{}".format).astype(str),
    })
    for name in ("customer_id", "item_id", "session_id", "event_type", "store_id"):  # compact, as replicate's
        events[name] = events[name].astype(str).astype("category")
    return Dataset(events=events, catalog=catalog, reports=[])


def load_point(point: str) -> Dataset:
    from training.loaders import load_completejourney

    if point.startswith("cj-x"):
        return replicate(load_completejourney(), int(point.removeprefix("cj-x")))
    if point == "items-1m":
        return synthetic_catalog()
    raise ValueError(f"unknown point {point!r}: cj-xN or items-1m")




#: the lake's retailer-like column for each canonical events column (the Complete Journey's events are all
#: purchases: the lake has no event type column, so every row reads as a purchase)
LAKE_EVENT_COLUMNS = {"customer_id": "loyalty_card", "item_id": "sku", "session_id": "basket_id",
                      "timestamp": "sold_at", "quantity": "units", "price": "unit_price", "store_id": "store_no"}
#: the catalog file's column for each canonical catalog column
LAKE_CATALOG_COLUMNS = {"item_id": "sku", "brand": "brand_name", "manufacturer": "maker", "private_label": "own_brand",
                        "department": "dept", "category": "category", "product_type": "subcategory",
                        "package_size": "pack_size"}


def write_lake(dataset: Dataset, directory: Path, timestamp_unit: Literal["ns", "us"] = "ns") -> dict[str, Path]:
    """``dataset`` as a retailer would hand it over: ``events/month=YYYY-MM/part-0.parquet`` (ids as plain text,
    which parquet stores dictionary-encoded, as Spark or pyarrow would write them), ``catalog.parquet`` and
    ``mapping.toml`` naming their columns. Returns the three paths. ``timestamp_unit`` "us": microsecond
    timestamps, as Spark writes them and the only kind it reads (pyarrow's default, nanoseconds, it refuses)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if set(dataset.events["event_type"].astype(str).unique()) != {"purchase"}:
        raise ValueError("write_lake writes purchases only: the lake has no event type column")
    paths = {"events": directory / "events", "catalog": directory / "catalog.parquet",
             "mapping": directory / "mapping.toml"}
    paths["events"].mkdir(parents=True, exist_ok=True)
    events = dataset.events[list(LAKE_EVENT_COLUMNS)]
    months = events["timestamp"].to_numpy().astype("datetime64[M]")
    for month in np.unique(months):
        part = events[months == month]
        # each part's ids only (a categorical carries every id of the whole frame)
        part = part.assign(**{name: part[name].cat.remove_unused_categories() for name in part.columns
                              if isinstance(part[name].dtype, pd.CategoricalDtype)})
        table = pa.Table.from_pandas(part.rename(columns=LAKE_EVENT_COLUMNS), preserve_index=False)
        text = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                          for f in table.schema])
        folder = paths["events"] / f"month={np.datetime_as_string(month, unit='M')}"
        folder.mkdir(exist_ok=True)
        pq.write_table(table.cast(text), folder / "part-0.parquet",
                       coerce_timestamps=None if timestamp_unit == "ns" else timestamp_unit)
    catalog = dataset.catalog[list(LAKE_CATALOG_COLUMNS)].rename(columns=LAKE_CATALOG_COLUMNS)
    catalog.to_parquet(paths["catalog"], index=False)
    lines = ["[events]", *(f'{key} = "{column}"' for key, column in LAKE_EVENT_COLUMNS.items()),
             "", "[catalog]", *(f'{key} = "{column}"' for key, column in LAKE_CATALOG_COLUMNS.items())]
    paths["mapping"].write_text("\n".join(lines) + "\n")
    return paths


def recsys_command() -> list[str]:
    """The ``recsys`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "recsys"
    return [str(script)] if script.exists() else [sys.executable, "-m", "recsys.cli"]


def train_point_cli(point: str, out: Path) -> dict[str, object]:
    """Write the point as a parquet lake, train it with ``recsys train`` in a child process and describe the run:
    the child's wall time and peak RSS (its own rusage, from ``wait4``), the model's manifest for the rest."""
    from recsys.model.artifact import read_manifest

    dataset = load_point(point)
    events = len(dataset.events)
    shutil.rmtree(out, ignore_errors=True)
    paths = write_lake(dataset, out / "lake")
    del dataset  # the parent holds no data while the child trains
    lake_bytes = sum(f.stat().st_size for f in paths["events"].rglob("*.parquet"))
    command = [*recsys_command(), "train", "--data", str(paths["events"]), "--catalog", str(paths["catalog"]),
               "--mapping", str(paths["mapping"]), "--out", str(out / "models"), "--no-progress", "--json"]
    start = time.perf_counter()
    with (out / "stdout.json").open("w") as stdout, (out / "stderr.log").open("w") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                 env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest of all children
        child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"recsys train exited {child.returncode}: "
                           + (out / "stderr.log").read_text().strip()[-3000:])
    summary = json.loads((out / "stdout.json").read_text())
    model_dir = Path(summary["model_dir"])
    manifest = read_manifest(model_dir, verify=False)
    model_bytes = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
    train_s = float(summary["stage_seconds"]["total"])
    return {"point": point, "via": "cli", "events": events, "customers": manifest.counts["customers"],
            "items": manifest.counts["items"], "load_s": round(wall_s - train_s, 1), "wall_s": round(wall_s, 1),
            "train_s": train_s, "stage_seconds": summary["stage_seconds"],
            "stage_peak_rss_mb": manifest.stage_peak_rss_mb,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "model_mb": round(model_bytes / 2**20, 1),
            "lake_mb": round(lake_bytes / 2**20, 1), "model_dir": str(model_dir)}


#: where the benchmark's Spark cluster and its drivers listen: loopback only
LOOPBACK = "127.0.0.1"
#: seconds the master and its workers get to start and register (JVM start-up on 2 busy cores)
CLUSTER_STARTUP_S = 120
#: how often the process tree's resident memory is read
SAMPLE_EVERY_S = 0.5
#: what marks a JVM as a Spark executor in its command line
EXECUTOR_CLASS = "CoarseGrainedExecutorBackend"


@dataclass(frozen=True)
class SparkSetup:
    """How ``--via spark`` runs: ``workers`` standalone workers of 1 core and ``executor_memory`` each (0: local
    mode, ``local[2]``), and the driver JVM's ``driver_memory`` (``recsys train --driver-memory``)."""

    workers: int = 2
    driver_memory: str = "6g"
    executor_memory: str = "3g"
    shuffle_partitions: int = 8
    max_result_size: str = "4g"


@dataclass
class SparkCluster:
    """A running standalone cluster (:func:`spark_cluster`): its master's URLs, its daemons and the workers'
    work directories (where each application's executors write)."""

    master_url: str
    web_url: str
    worker_dirs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def state(self) -> dict[str, Any]:
        """The master's JSON view: its workers and applications."""
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            state: dict[str, Any] = json.loads(response.read())
        return state


def _without_spark_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYSPARK", "SPARK"))}
    env.pop("PYTHONPATH", None)
    return env


@contextmanager
def spark_cluster(root: Path, workers: int, executor_memory: str) -> Iterator[SparkCluster]:
    """A standalone master and ``workers`` workers (1 core, ``executor_memory`` each) from pyspark's own
    distribution, on free loopback ports with private log, work, local and conf directories under ``root``; each
    daemon is stopped by its process id at the end (SIGTERM, a worker then kills its executors; SIGKILL after 20 s).
    The cluster of tests/training/test_spark_cluster.py too."""
    import pyspark

    from serving.process import free_port

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    master_port, master_web = free_port(), free_port()
    cluster = SparkCluster(f"spark://{LOOPBACK}:{master_port}", f"http://{LOOPBACK}:{master_web}",
                           [root / f"worker-{index}" / "work" for index in range(workers)])

    def start(name: str, *arguments: str) -> None:
        home = root / name
        env = _without_spark_env()
        for variable, folder in (("SPARK_LOG_DIR", "logs"), ("SPARK_WORKER_DIR", "work"),
                                 ("SPARK_LOCAL_DIRS", "local"), ("SPARK_CONF_DIR", "conf")):
            (home / folder).mkdir(parents=True, exist_ok=True)
            env[variable] = str(home / folder)
        env.update(SPARK_HOME=str(spark_home), SPARK_LOCAL_IP=LOOPBACK, SPARK_DAEMON_MEMORY="256m",
                   SPARK_NO_DAEMONIZE="1")
        with (home / "logs" / "stdout.log").open("wb") as log:
            cluster.processes.append(subprocess.Popen([spark_class, *arguments], env=env, cwd=home, stdout=log,
                                                      stderr=subprocess.STDOUT, start_new_session=True))

    shutil.rmtree(root, ignore_errors=True)
    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", LOOPBACK, "--port", str(master_port),
              "--webui-port", str(master_web))
        for index in range(workers):
            start(f"worker-{index}", "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host",
                  LOOPBACK, "--port", str(free_port()), "--webui-port", str(free_port()), "--cores", "1",
                  "--memory", executor_memory, "--work-dir", str(cluster.worker_dirs[index]))
        deadline = time.monotonic() + CLUSTER_STARTUP_S
        while True:
            try:
                alive = [w for w in cluster.state().get("workers", []) if w.get("state") == "ALIVE"]
            except OSError:
                alive = []
            if len(alive) == workers:
                break
            if any(process.poll() is not None for process in cluster.processes) or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark cluster did not start ({len(alive)} of {workers} workers); logs in "
                                   f"{root}")
            time.sleep(1)
        yield cluster
    finally:
        for process in reversed(cluster.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(cluster.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _proc_table() -> dict[int, tuple[int, str]]:
    """Every process's parent id and command line, from ``/proc``."""
    from serving.process import proc_stat

    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(proc_stat(entry.name)[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        table[int(entry.name)] = (parent, command)
    return table


def _descendants(roots: list[int], table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """A process's resident memory now and its peak (``VmRSS``, ``VmHWM``), in KB; zeros once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.startswith(("VmRSS:", "VmHWM:"))}
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


class TreeSampler:
    """Reads, every ``SAMPLE_EVERY_S`` in a thread, the resident memory of a ``recsys`` driver (its Python process
    ``driver_pid`` and the JVM it starts) and of the executor JVMs the cluster's workers (``worker_pids``) start.
    Each process's peak is its kernel high-water mark (``VmHWM``, last read before it exits); the peaks of sums
    are of RSS read at the same moment."""

    def __init__(self, driver_pid: int, worker_pids: list[int]) -> None:
        self.driver_pid, self.worker_pids = driver_pid, worker_pids
        self.peak_kb: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self.command: dict[int, str] = {}
        self.driver_sum_kb = self.executor_sum_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_EVERY_S)

    def sample(self) -> None:
        table = _proc_table()
        members = {self.driver_pid: "python"}
        for pid in _descendants([self.driver_pid], table):
            if "java" in table[pid][1].split(" ")[0]:
                members[pid] = "driver_jvm"
        for pid in _descendants(self.worker_pids, table):
            if EXECUTOR_CLASS in table[pid][1]:
                members[pid] = "executor"
        driver = executors = 0
        for pid, kind in members.items():
            rss, hwm = _memory_kb(pid)
            if not hwm:
                continue
            self.kind[pid] = kind
            self.command.setdefault(pid, table.get(pid, (0, ""))[1])
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), hwm)
            if kind == "executor":
                executors += rss
            else:
                driver += rss
        self.driver_sum_kb = max(self.driver_sum_kb, driver)
        self.executor_sum_kb = max(self.executor_sum_kb, executors)

    def summary(self) -> dict[str, object]:
        """Peaks in MB: the Python driver, its JVM, their sum; the largest executor and the executors' sum."""
        def mb(kb: int) -> float:
            return round(kb / 1024, 1)

        def heap(pid: int) -> str | None:
            flags = [part for part in self.command.get(pid, "").split() if part.startswith("-Xmx")]
            return flags[-1].removeprefix("-Xmx") if flags else None

        jvms = [pid for pid, kind in self.kind.items() if kind == "driver_jvm"]
        executors = [pid for pid, kind in self.kind.items() if kind == "executor"]
        jvms.sort(key=lambda pid: -self.peak_kb[pid])  # the driver's JVM first (Spark's launcher is a short one)
        return {"driver_python_peak_rss_mb": mb(self.peak_kb.get(self.driver_pid, 0)),
                "driver_jvm_peak_rss_mb": mb(max((self.peak_kb[p] for p in jvms), default=0)),
                "driver_peak_rss_mb": mb(self.driver_sum_kb),
                "driver_jvm_xmx": heap(jvms[0]) if jvms else None,
                "executors": len(executors),
                "executor_peak_rss_mb": mb(max((self.peak_kb[p] for p in executors), default=0)) or None,
                "executors_sum_peak_rss_mb": mb(self.executor_sum_kb) or None,
                "executor_xmx": heap(executors[0]) if executors else None}


def train_point_spark(point: str, out: Path, setup: SparkSetup, cluster: SparkCluster | None) -> dict[str, object]:
    """Write the point as a parquet lake and train it with ``recsys train --engine spark`` in a child process, on
    ``cluster`` (None: local mode, ``local[2]``), sampling the driver's and the executors' memory (``TreeSampler``).
    The row: wall time, the summary's stage seconds (``spark`` is validate, catalog, interactions and neighbours
    together), the peaks in MB, and the settings; no server RSS (``recsys serve`` loads the same files as for
    ``--via cli``)."""
    from recsys.model.artifact import read_manifest

    dataset = load_point(point)
    events = len(dataset.events)
    shutil.rmtree(out, ignore_errors=True)
    paths = write_lake(dataset, out / "lake", timestamp_unit="us")
    del dataset  # the parent holds no data while the child trains
    lake_bytes = sum(f.stat().st_size for f in paths["events"].rglob("*.parquet"))
    master = cluster.master_url if cluster else "local[2]"
    command = [*recsys_command(), "train", "--engine", "spark", "--spark-master", master,
               "--driver-memory", setup.driver_memory, "--data", str(paths["events"]), "--catalog",
               str(paths["catalog"]), "--mapping", str(paths["mapping"]), "--out", str(out / "models"),
               "--no-progress", "--json"]
    env = _without_spark_env() | {"OPENBLAS_NUM_THREADS": "1", "SPARK_LOCAL_IP": LOOPBACK}
    if cluster:  # a cluster session keeps Spark's defaults: no UI, small shuffles, the executors' size
        submit = ["--conf", "spark.ui.enabled=false", "--conf", f"spark.executor.memory={setup.executor_memory}",
                  "--conf", "spark.executor.cores=1",
                  "--conf", f"spark.sql.shuffle.partitions={setup.shuffle_partitions}",
                  "--conf", f"spark.driver.maxResultSize={setup.max_result_size}", "pyspark-shell"]
        env["PYSPARK_SUBMIT_ARGS"] = " ".join(submit)
    start = time.perf_counter()
    with (out / "stdout.json").open("w") as stdout, (out / "stderr.log").open("w") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=out)
        with TreeSampler(child.pid, cluster.pids if cluster else []) as sampler:
            while child.poll() is None:  # the sampler reads /proc while the child runs: reap it only after
                time.sleep(0.1)
            sampler.sample()
    wall_s = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"recsys train --engine spark exited {child.returncode}: "
                           + (out / "stderr.log").read_text().strip()[-3000:])
    text = (out / "stdout.json").read_text()
    summary = json.loads(text[text.index("{"):])
    model_dir = Path(summary["model_dir"])
    manifest = read_manifest(model_dir, verify=False)
    model_bytes = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
    train_s = float(summary["stage_seconds"]["total"])
    return {"point": point, "via": "spark", "master": "standalone" if cluster else master,
            "workers": setup.workers if cluster else 0, "driver_memory": setup.driver_memory,
            "executor_memory": setup.executor_memory if cluster else None,
            "shuffle_partitions": setup.shuffle_partitions if cluster else 8,
            "events": events, "customers": manifest.counts["customers"], "items": manifest.counts["items"],
            "engine": manifest.engine, "load_s": round(wall_s - train_s, 1), "wall_s": round(wall_s, 1),
            "train_s": train_s, "stage_seconds": summary["stage_seconds"],
            "stage_peak_rss_mb": manifest.stage_peak_rss_mb, **sampler.summary(),
            "model_mb": round(model_bytes / 2**20, 1), "lake_mb": round(lake_bytes / 2**20, 1),
            "model_dir": str(model_dir)}


def run_spark(points: list[str], out: Path, setup: SparkSetup) -> list[dict[str, object]]:
    """Every point through ``train_point_spark``, on one cluster started for them all (or in local mode); the rows
    go to ``DIR/training_scale_spark.json`` and a table to ``training_scale_spark.md`` as each point ends."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    with (spark_cluster(out / "spark-cluster", setup.workers, setup.executor_memory) if setup.workers
          else _no_cluster()) as cluster:
        for point in points:
            print(f"training {point} on Spark ({cluster.master_url if cluster else 'local[2]'}) ...", flush=True)
            try:
                row = train_point_spark(point, out / "spark" / point, setup, cluster)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                row = {"point": point, "via": "spark", "error": str(exc).splitlines()[-1:]}
            rows.append(row)
            (out / "training_scale_spark.json").write_text(json.dumps(rows, indent=2))
            if "error" not in row:
                print(_spark_row_text(row), flush=True)
    write_spark_table(rows, out / "training_scale_spark.md")
    return rows


@contextmanager
def _no_cluster() -> Iterator[SparkCluster | None]:
    yield None


def _spark_row_text(row: dict[str, object]) -> str:
    stages = row["stage_seconds"]
    assert isinstance(stages, dict)

    def gb(key: str) -> str:
        value = row.get(key)
        return f"{float(value) / 1024:.2f}" if isinstance(value, int | float) else "-"

    return (f"| {row['point']} | {row['events']:,} | {row['wall_s']:.0f} | {stages.get('spark', 0):.0f} | "
            f"{stages.get('ranker', 0):.0f} | {gb('driver_python_peak_rss_mb')} + {gb('driver_jvm_peak_rss_mb')} "
            f"(sum {gb('driver_peak_rss_mb')}) | {gb('executor_peak_rss_mb')} "
            f"(sum {gb('executors_sum_peak_rss_mb')}) |")


def write_spark_table(rows: list[dict[str, object]], path: Path) -> None:
    lines = ["| point | events | wall s | spark stage s | ranker s | driver peak RSS GB: python + JVM | "
             "executor peak RSS GB |", "|---|---|---|---|---|---|---|"]
    lines += [_spark_row_text(r) for r in rows if "error" not in r]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def train_point(point: str, out: Path) -> dict[str, object]:
    """Train one point in this process (called in a fresh child per point) and describe the run."""
    from training.pipeline import train

    start = time.perf_counter()
    dataset = load_point(point)
    load_s = time.perf_counter() - start
    result = train(dataset, out_dir=out, show_progress=False, with_report=False)
    model_bytes = sum(f.stat().st_size for f in result.model_dir.rglob("*") if f.is_file())
    return {"point": point, "via": "api", "events": int(len(dataset.events)),
            "customers": result.manifest.counts["customers"], "items": result.manifest.counts["items"],
            "load_s": round(load_s, 1), "train_s": result.stage_seconds["total"], "stage_seconds": result.stage_seconds,
            "stage_peak_rss_mb": result.manifest.stage_peak_rss_mb,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "model_mb": round(model_bytes / 2**20, 1), "model_dir": str(result.model_dir)}


def server_rss_mb(model_dir: Path) -> float:
    """``recsys serve``'s resident memory once it answers ``/readyz`` on this model."""
    from serving.process import memory, serving

    with serving(model_dir, env={"RECSYS_STATE_PATH": ""}, timeout_s=600) as (_, process):
        time.sleep(1.0)
        return round(memory(process.pid)["rss"] / 2**20, 1)


def run(points: list[str], out: Path, via: Literal["api", "cli"] = "api") -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for point in points:
        print(f"training {point} through the {via} ...", flush=True)
        if via == "cli":
            try:
                row = train_point_cli(point, out / "cli" / point)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                rows.append({"point": point, "via": via, "error": str(exc).splitlines()[-1:]})
                continue
            row["server_rss_mb"] = server_rss_mb(Path(str(row["model_dir"])))
            rows.append(row)
            print(_row_text(row), flush=True)
            (out / "training_scale.json").write_text(json.dumps(rows, indent=2))
            continue
        child = subprocess.run([sys.executable, "-m", "benchmarks.training_scale", "--train-one", point,
                                "--out", str(out / "models" / point)],
                               capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            rows.append({"point": point, "error": child.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        row["server_rss_mb"] = server_rss_mb(Path(str(row["model_dir"])))
        rows.append(row)
        print(_row_text(row), flush=True)
        (out / "training_scale.json").write_text(json.dumps(rows, indent=2))
    write_table(rows, out / "training_scale.md")
    plot(rows, out / "training_scale.png")
    return rows


def _label(row: dict[str, object]) -> str:
    """The point's name, with ``(cli)`` when it was trained through the command line."""
    return f"{row['point']} (cli)" if row.get("via") == "cli" else str(row["point"])


def _row_text(row: dict[str, object]) -> str:
    stages = row["stage_seconds"]
    assert isinstance(stages, dict)
    return (f"| {_label(row)} | {row['events']:,} | {row['customers']:,} | {row['items']:,} | "
            f"{row['train_s']:.0f} | {stages.get('ranker', 0):.0f} | {row['peak_rss_mb'] / 1024:.1f} | "
            f"{row['model_mb']:.0f} | {row['server_rss_mb']:.0f} |")


def write_table(rows: list[dict[str, object]], path: Path) -> None:
    lines = ["| point | events | customers | items | train s | ranker s | peak RSS GB | model MB | server RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row_text(r) for r in rows if "error" not in r]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """Stacked seconds per stage and peak RSS against events, one bar per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    if not rows:
        return
    labels = [_label(r) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = np.zeros(len(rows))
    # points measured while other jobs ran on the machine are hatched: their times are upper bounds
    hatch = ["" if r.get("quiet_machine", True) else "//" for r in rows]
    for stage in STAGE_ORDER:
        seconds = np.array([float(r["stage_seconds"].get(stage, 0.0)) for r in rows])  # type: ignore[union-attr]
        if seconds.sum() > 0:
            left.bar(labels, seconds, bottom=bottom, label=stage, hatch=hatch)
            bottom += seconds
    left.set_ylabel("training seconds (2 cores)")
    left.set_title("time per stage")
    left.legend(fontsize=8, ncol=2)
    # a replicated series is a line; other points (the 1M-item catalog) stand alone
    for series, marker in (("cj-x", "-"), ("items", "")):
        part = [r for r in rows if str(r["point"]).startswith(series)]
        if not part:
            continue
        events = np.array([float(r["events"]) for r in part]) / 1e6  # type: ignore[arg-type]
        for key, style, label in (("peak_rss_mb", "o", "trainer peak RSS"), ("server_rss_mb", "s", "server RSS"),
                                  ("model_mb", "^", "model on disk")):
            right.plot(events, [float(r[key]) / 1024 for r in part], style + marker,  # type: ignore[arg-type]
                       color={"peak_rss_mb": "C0", "server_rss_mb": "C1", "model_mb": "C2"}[key],
                       label=label if series == "cj-x" else None)
        for x, r in zip(events, part, strict=True):
            right.annotate(_label(r), (x, float(r["peak_rss_mb"]) / 1024),  # type: ignore[arg-type]
                           textcoords="offset points", xytext=(4, 4), fontsize=8)
    right.set_xlabel("events (millions)")
    right.set_ylabel("GB")
    right.set_title("memory and model size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="cj-x1,cj-x2,cj-x4,cj-x8,cj-x16,cj-x32,items-1m")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_scale"))
    parser.add_argument("--via", choices=("api", "cli", "spark"), default="api",
                        help="api: the frame handed to the trainer in Python; cli: `recsys train` on a parquet lake; "
                             "spark: `recsys train --engine spark` on the same lake")
    defaults = SparkSetup()
    parser.add_argument("--spark-workers", type=int, default=defaults.workers,
                        help="with --via spark: standalone workers of 1 core on loopback (0: local mode, local[2])")
    parser.add_argument("--driver-memory", default=defaults.driver_memory, help="with --via spark: the driver JVM's")
    parser.add_argument("--executor-memory", default=defaults.executor_memory,
                        help="with --via spark: each executor's (and its worker's)")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        print(json.dumps(train_point(args.train_one, args.out)))
        return
    if args.via == "spark":
        run_spark(args.points.split(","), args.out, SparkSetup(args.spark_workers, args.driver_memory,
                                                              args.executor_memory))
        return
    run(args.points.split(","), args.out, args.via)


if __name__ == "__main__":
    main()
