"""ALS on the driver (``implicit``) against Spark MLlib's ``ALS(implicitPrefs=True)``: quality, time, memory.

Both fit the trainer's customer x item matrix of The Complete Journey before the evaluation's split (2017-10-08),
as the embeddings stage builds it (the model's ``customer_weight``, through ``log1p(4 w)``). ``implicit`` runs with
``AlsConfig``'s settings, through the trainer's own ``assembly.als_factors``; MLlib runs in local mode over a small
grid of regParam and alpha, since it scales both differently (match the quality, not the parameters).

Quality is what the engine takes from the factors: ALS cosine within the substitution group. Each factor set
ranks X's group for the evaluation's switch queries (``training.queries.build_queries`` on the split), as the
``implicit-in-group`` baseline does, and gets HR@3 and NDCG@10 on all queries and on new-to-customer ones.

Each engine fits in a fresh process. A fit's memory is the rise of the resident memory's peak over the memory before
it (the peak reset just before the fit): the Python process's, plus for Spark the driver JVM's. Run:
``python -m benchmarks.als_engines --model DIR --out FILE.json`` with ``DIR`` a
model trained with ``--train-until 2017-10-08`` (without ``--model``, one is trained first, without its ranker).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

SPLIT = "2017-10-08"
#: (regParam, alpha) tried for MLlib: regParam is per rating there (ALS-WR), alpha multiplies the log1p value
DEFAULT_GRID = ((0.01, 1.0), (0.1, 1.0), (1.0, 1.0), (0.01, 5.0), (0.1, 5.0))


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """A process's resident memory now (``rss``) and its peak (``peak``) in MB, from /proc (Linux)."""
    fields = {"VmRSS:": "rss", "VmHWM:": "peak"}
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0] + ":"
        if key in fields:
            found[fields[key]] = round(int(line.split()[1]) / 1024, 1)
    return found


def reset_peak(pid: int | str = "self") -> None:
    """Start a process's peak resident memory afresh from its current one, so that a fit's peak is its own and not
    the imports' (Linux: writing 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def jvm_pid(spark: Any) -> int:
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())


def fit_implicit(matrix: Path, out: Path) -> dict[str, Any]:
    """``implicit`` with the trainer's settings, through the trainer's function (a child process)."""
    from recsys.domain.config import TrainConfig
    from training.assembly import als_factors

    weight = sp.load_npz(matrix).tocsr()
    reset_peak()
    before = memory_mb()["rss"]
    start = time.perf_counter()
    factors, _ = als_factors(weight, TrainConfig(), show_progress=False)
    seconds = time.perf_counter() - start
    np.save(out / "implicit.npy", factors)
    peak = memory_mb()["peak"]
    return {"implicit": {"seconds": round(seconds, 2), "python_rss_before_mb": before, "python_peak_mb": peak,
                         "fit_mb": round(peak - before, 1)}}


def fit_mllib(matrix: Path, out: Path, grid: list[tuple[float, float]], master: str, driver_memory: str
              ) -> dict[str, Any]:
    """MLlib's implicit ALS for each (regParam, alpha), one local Spark session (a child process)."""
    from recsys.domain.config import TrainConfig
    from training.spark.als import mllib_item_factors, ratings_frame
    from training.spark.session import spark_session

    weight = sp.load_npz(matrix).tocsr()
    config = TrainConfig()
    spark = spark_session(master, app_name="als-engines", driver_memory=driver_memory)
    results: dict[str, Any] = {}
    try:
        ratings = ratings_frame(spark, weight).cache()
        ratings.count()
        jvm = jvm_pid(spark)
        for reg, alpha in grid:
            name = f"mllib reg={reg:g} alpha={alpha:g}"
            spark.sparkContext._jvm.java.lang.System.gc()  # each fit's peak from a collected heap
            reset_peak(jvm)
            reset_peak()
            before, jvm_before = memory_mb()["rss"], memory_mb(jvm)["rss"]
            start = time.perf_counter()
            factors = mllib_item_factors(ratings, weight.shape[1], config, reg_param=reg, alpha=alpha)
            seconds = time.perf_counter() - start
            np.save(out / f"{name}.npy", factors)
            peak, jvm_peak = memory_mb()["peak"], memory_mb(jvm)["peak"]
            results[name] = {"seconds": round(seconds, 2), "reg_param": reg, "alpha": alpha,
                             "python_rss_before_mb": before, "python_peak_mb": peak,
                             "jvm_rss_before_mb": jvm_before, "jvm_peak_mb": jvm_peak,
                             "fit_mb": round(peak - before + jvm_peak - jvm_before, 1)}
            print(name, results[name], file=sys.stderr, flush=True)
    finally:
        spark.stop()
    return results


def in_group_ranker(engine: Any, factors: np.ndarray) -> Any:
    """X's group by ALS cosine, X left out, the lower index first on ties (``implicit-in-group``'s ranking)."""
    from training.evaluation import CUTOFF

    def rank(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        scores = factors[lo:hi] @ factors[x]
        members = np.arange(lo, hi)[np.lexsort((np.arange(lo, hi), -scores))]
        return members[members != x][:CUTOFF]

    return rank


def prepare_model(work: Path) -> Path:
    """A model of The Complete Journey trained before the split, without its ranker (only its matrix is used)."""
    from recsys.domain.config import TrainConfig
    from training.loaders import load_completejourney
    from training.pipeline import train

    config = TrainConfig()
    config = config.model_copy(update={"ranker": config.ranker.model_copy(update={"enabled": False})})
    result = train(load_completejourney(), config, out_dir=work / "models",
                   train_until=pd.Timestamp(SPLIT).to_pydatetime(), show_progress=False, with_report=False)
    return result.model_dir


def run_child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.als_engines", *args], check=True, stdout=subprocess.PIPE,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any]) -> str:
    lines = ["| engine, setting | HR@3 all | NDCG@10 all | HR@3 new | NDCG@10 new | HR@3 all minus implicit (95%) "
             "| fit s | fit's added peak MB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        margin = r.get("minus implicit, 95% interval", {}).get("HR@3")
        versus = f"{margin[0]:+.4f} ({margin[1]:+.4f}, {margin[2]:+.4f})" if margin else ""
        lines.append(f"| {name} | {r['HR@3']:.4f} | {r['NDCG@10']:.4f} | {r['HR@3 new']:.4f} | "
                     f"{r['NDCG@10 new']:.4f} | {versus} | {r['seconds']:.1f} | {r['fit_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model trained with --train-until 2017-10-08")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/als-engines.json"))
    parser.add_argument("--grid", default=",".join(f"{r:g}:{a:g}" for r, a in DEFAULT_GRID),
                        help="MLlib's regParam:alpha pairs, comma-separated")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--child", choices=("implicit", "mllib"), help=argparse.SUPPRESS)
    parser.add_argument("--matrix", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    grid = [(float(r), float(a)) for r, a in (pair.split(":") for pair in args.grid.split(","))]

    if args.child == "implicit":
        print(json.dumps(fit_implicit(args.matrix, args.work)))
        return
    if args.child == "mllib":
        print(json.dumps(fit_mllib(args.matrix, args.work, grid, args.master, args.driver_memory)))
        return

    from recsys.query.engine import SubstituteEngine
    from training.evaluation import margin_interval, score_queries
    from training.loaders import load_completejourney
    from training.queries import build_queries

    with tempfile.TemporaryDirectory(prefix="als-engines-") as tmp:
        work = Path(tmp)
        model_dir = args.model or prepare_model(work)
        engine = SubstituteEngine.load(model_dir)
        weight = engine.model.customer_weight
        sp.save_npz(work / "weight.npz", weight)
        common = ["--matrix", str(work / "weight.npz"), "--work", str(work)]
        fits = run_child(["--child", "implicit", *common])
        fits.update(run_child(["--child", "mllib", *common, "--grid", args.grid, "--master", args.master,
                               "--driver-memory", args.driver_memory]))

        queries = build_queries(load_completejourney().events, engine, pd.Timestamp(SPLIT))
        clusters = {"all": queries.customer, "new_to_customer": queries.customer[queries.new_mask]}
        results: dict[str, Any] = {}
        per_query: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for name, fit in fits.items():
            factors = np.load(work / f"{name}.npy")
            per_query[name] = score_queries(engine, {name: in_group_ranker(engine, factors)}, queries)[0][name]
            results[name] = {**fit, **{
                f"{metric}{suffix}": round(float(per_query[name][subset][metric].mean()), 4)
                for subset, suffix in (("all", ""), ("new_to_customer", " new")) for metric in ("HR@3", "NDCG@10")}}
            if name != "implicit":  # paired with implicit's answers to the same queries, customers resampled
                results[name]["minus implicit, 95% interval"] = {
                    f"{metric}{suffix}": [round(v, 4) for v in margin_interval(
                        per_query[name][subset][metric], per_query["implicit"][subset][metric], clusters[subset])]
                    for subset, suffix in (("all", ""), ("new_to_customer", " new")) for metric in ("HR@3", "NDCG@10")}
            print(name, results[name], file=sys.stderr, flush=True)
        nnz, (n_customers, n_items) = int(weight.nnz), weight.shape

    report = {
        "data": f"The Complete Journey before {SPLIT}", "split": SPLIT,
        "matrix": {"customers": n_customers, "items": n_items, "nnz": nnz,
                   "items_with_events": int((np.diff(weight.tocsc().indptr) > 0).sum())},
        "queries": {"all": len(queries), "new_to_customer": int(queries.n_new)},
        "master": args.master, "driver_memory": args.driver_memory, "cpus": os.cpu_count(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
