"""Online experiments replayed against a running ``recsys serve``: how many answers an experiment needs before its
sequential test decides, and an A/A run that must not decide.

The shoppers are The Complete Journey's held-out switch queries (``training.queries.build_queries``: a customer's
usual item X, and the items Y they really bought instead after the split), sent to the server in an experiment, in
a seeded random order, again and again until ``--answers``. A simulated shopper accepts the first shown substitute
that is one of their real switches; otherwise, with probability ``--noise``, one shown at random; otherwise they
reject what was shown. The decision goes back as feedback with the answer's ``answer_id``, and the experiment's
report is read every ``--peek-every`` answers (reading it changes nothing: the test's result is a function of the
decisions alone). The run stops once the test decides.

- A/B: ``--treatment intent=discover`` (or ``intent=familiar``, or a model version of ``--models``) against
  ``--control current``.
- A/A (``--aa``): control ``current`` against treatment ``intent=balanced``, which answer the same balanced list.
  ``--runs N`` repeats it with other experiment names, so other shoppers land in treatment. Many runs fit in
  minutes with fewer answers each (``--answers 1000``: the test is read 10 times, still every 100 answers) and
  ``--in-process``, which drives the same app with FastAPI's ``TestClient`` instead of a socket.
- A deliberately worse model (``--weakened``): a copy of the current model ranking by popularity alone, with no
  re-ranker, made beside it in ``--models`` as ``<version>-popularity-only`` (see :func:`weakened_model`); the
  experiment must find it worse.
- ``--plot``: each arm's acceptance and 95% interval at every read of the first run's report.
- With a model-version treatment, the server's memory (``/proc``) is read before the experiment and once the
  treatment model is loaded beside the current one: what a second model costs.
- ``request path``: before the replay, the route's own code (``serving.routers.substitutes.answer_json``) in this
  process on the same queries, in alternating blocks, without an experiments object (as before experiments
  existed), with none running, and with one running: what the experiment check costs a request.

Without ``models/current`` in ``--models``, a model is trained there first on ``--households`` households, on the
events before the evaluation's split (as ``recsys evaluate`` does), so it has not seen the switches it is judged on.
Run: ``python -m benchmarks.experiment_replay --models /tmp/replay-models --out replay.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from recsys import SubstituteEngine
from recsys.model.artifact import CURRENT, MANIFEST, read_manifest, write_model
from recsys.query.kernels import FEATURES
from recsys.state.answers import AnswerSigner
from recsys.state.experiments import new_experiment
from serving.app import create_app
from serving.experiments import Experiments
from serving.process import memory, serving
from serving.routers.substitutes import answer_json
from serving.schemas import SubstituteRequest
from serving.settings import Settings
from training.evaluation.protocol import default_split
from training.loaders import load_completejourney
from training.pipeline import train
from training.queries import build_queries

TOKEN = "replay-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
K = 5


def shoppers(models: Path, households: int, seed: int) -> tuple[list[dict[str, Any]], str]:
    """The held-out switch queries as (customer, X, the Ys they switched to), and the model version; trains the
    model first when ``models`` has none."""
    dataset = load_completejourney(households=households, seed=seed)
    split = default_split(dataset.events)
    if not (models / CURRENT).exists():
        train(dataset, out_dir=models, train_until=split.to_pydatetime(), show_progress=False, with_report=False)
    engine = SubstituteEngine.load(models / CURRENT)
    queries = build_queries(dataset.events, engine, split)
    ids = np.asarray(engine.item_ids).astype(str)
    customers = np.asarray(engine.model.customers).astype(str)
    found = [{"customer_id": customers[row], "item_id": ids[x], "switched": set(ids[relevant])}
             for row, x, relevant in zip(queries.customer, queries.x, queries.relevant, strict=True) if row >= 0]
    return found, engine.version


def weakened_model(models: Path, suffix: str = "popularity-only") -> str:
    """Copy ``models/current`` as ``<its version>-<suffix>``, ranking by popularity alone with no re-ranker, and
    return the new version: a model known to be worse, made without training. The manifest is rewritten by
    :func:`recsys.model.artifact.write_model`, so its checksums verify as a trained model's do."""
    source = (models / CURRENT).resolve()
    manifest = read_manifest(source)
    version = f"{manifest.version}-{suffix}"
    if (models / version / MANIFEST).is_file():
        return version
    # popularity is in [0, 1]: a cut-off of 0 keeps every candidate, so the lists are as long and only worse
    # ordered; without it, the trained cut-off (set for the full score) would hide most of them
    ranker = manifest.ranker.model_copy(update={
        "weights": {name: float(name == "popularity") for name in FEATURES}, "history_weights": None,
        "history_bias": 0.0, "min_score": 0.0, "reranker": None, "source": "default",
        "note": "popularity only, for an experiment that must find it worse"})

    def copy_files(target: Path) -> None:
        for name in manifest.files:
            shutil.copy2(source / name, target / name)

    write_model(models, copy_files, manifest.model_copy(update={"version": version, "ranker": ranker}),
                make_current=False)
    return version


def request_path(models: Path, found: list[dict[str, Any]], n: int = 1_500, block: int = 50) -> dict[str, float]:
    """p50 microseconds of the substitute route's code per request: without an experiments object, with none
    running, with an intent experiment running (alternating blocks of ``block`` queries)."""
    engine = SubstituteEngine.load(models / CURRENT)
    signer = AnswerSigner(b"replay" * 8)
    idle, running = Experiments(), Experiments()
    running.replace([new_experiment("overhead", "intent=balanced", 0.5, model_exists=lambda _: False,
                                    now=datetime.now(UTC))])
    modes: dict[str, Experiments | None] = {"no experiments object": None, "no experiment running": idle,
                                            "an experiment running": running}
    requests = [SubstituteRequest(item_id=q["item_id"], customer_id=q["customer_id"], k=K) for q in found[:n]]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for start in range(0, len(requests), block):
        for mode, experiments in modes.items():
            for request in requests[start:start + block]:
                began = time.perf_counter()
                answer_json(engine, signer, request, experiments)
                times[mode].append(time.perf_counter() - began)
    return {mode: statistics.median(seconds) * 1e6 for mode, seconds in times.items()}


def _decide(answer: dict[str, Any], switched: set[str], noise: float, rng: np.random.Generator
            ) -> dict[str, Any] | None:
    shown = [s["item_id"] for s in answer["substitutes"]]
    if not shown:
        return None
    for item in shown:
        if item in switched:
            return {"accepted": item}
    if rng.random() < noise:
        return {"accepted": shown[int(rng.integers(len(shown)))]}
    return {"rejected": shown}


def replay(client: httpx.Client, name: str, found: list[dict[str, Any]], body: dict[str, Any], answers: int,
           noise: float, peek_every: int, seed: int, pid: int, treatment_version: str | None, settle_s: float
           ) -> dict[str, Any]:
    """One experiment ``name`` through ``client`` (a socket to ``recsys serve``, or the app in this process);
    ``settle_s``: the wait before the last report, for the replica's answer counts to reach the state."""
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"experiment": name, **body}
    before = memory(pid)
    started = client.post("/v1/admin/experiments", json={"name": name, **body})
    started.raise_for_status()
    if treatment_version is not None:  # wait for the second model, then read what it cost
        loaded_at = time.monotonic()
        probe = next(q for q in found if client.post("/v1/substitutes", json={
            "item_id": q["item_id"], "customer_id": q["customer_id"]}).json()["arm"] == "treatment")
        while client.post("/v1/substitutes", json={"item_id": probe["item_id"], "customer_id":
                          probe["customer_id"]}).json()["model_version"] != treatment_version:
            time.sleep(0.2)
        after = memory(pid)
        result["second_model"] = {"load_s": round(time.monotonic() - loaded_at, 1),
                                  "rss_mb_before": before["rss"] / 1e6, "rss_mb_after": after["rss"] / 1e6,
                                  "extra_rss_mb": (after["rss"] - before["rss"]) / 1e6}
    peeks, served, decided_at = [], 0, None
    began = time.monotonic()
    while served < answers and decided_at is None:
        for query in (found[i] for i in rng.permutation(len(found))):
            answer = client.post("/v1/substitutes", json={"item_id": query["item_id"],
                                                          "customer_id": query["customer_id"], "k": K}).json()
            served += 1
            decision = _decide(answer, query["switched"], noise, rng)
            if decision is not None:
                client.post("/v1/feedback", json={"answer_id": answer["answer_id"], **decision}
                            ).raise_for_status()
            if served % peek_every == 0:
                report = client.get(f"/v1/experiments/{name}").json()
                peeks.append({"answers": served, "p_value": report["p_value"], "decision": report["decision"],
                              "arms": {arm: {key: report["arms"][arm][key] for key in
                                             ("decided", "acceptance", "ci95")} for arm in report["arms"]}})
                if report["decision"] != "no decision yet":
                    decided_at = served
                    break
            if served >= answers:
                break
    time.sleep(settle_s)  # the replica adds its answer counts to the state every polling interval
    report = client.get(f"/v1/experiments/{name}").json()
    client.post(f"/v1/admin/experiments/{name}/stop").raise_for_status()
    result.update(answers_sent=served, decided_after_answers=decided_at, seconds=round(time.monotonic() - began, 1),
                  peeks=len(peeks), report=report, trace=peeks)
    return result


@contextmanager
def _service(models: Path, state_dir: Path, in_process: bool) -> Iterator[tuple[httpx.Client, int, float]]:
    """A client of the service, the serving process's id (for its memory) and the wait for the replica's answer
    counts to reach the state: ``recsys serve`` on a socket, or the same app in this process."""
    state, poll_s = state_dir / "state.sqlite3", 0.2
    if in_process:
        from fastapi.testclient import TestClient  # only this mode needs it

        settings = Settings(model_path=models / CURRENT, state_path=state, admin_token=TOKEN, rate_limit_per_s=0,
                            models_dir=models, state_poll_s=poll_s)
        with TestClient(create_app(settings), headers=AUTH) as client:
            yield client, os.getpid(), 3 * poll_s
        return
    env = {"RECSYS_STATE_PATH": str(state), "RECSYS_ADMIN_TOKEN": TOKEN, "RECSYS_RATE_LIMIT_PER_S": "0",
           "RECSYS_MODELS_DIR": str(models)}
    with serving(models / CURRENT, env=env, timeout_s=300) as (base, process), httpx.Client(
            base_url=base, headers=AUTH, timeout=60) as client:
        yield client, process.pid, 1.5


def plot_run(run: dict[str, Any], path: Path) -> None:
    """Each arm's acceptance and its 95% interval at every read of one run's report, against the answers sent."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    answers = [peek["answers"] for peek in run["trace"]]
    for arm, colour in (("control", "tab:blue"), ("treatment", "tab:orange")):
        estimates = [peek["arms"][arm] for peek in run["trace"]]
        label = f"{arm}: {run[arm]}"
        axes.plot(answers, [e["acceptance"] for e in estimates], color=colour, label=label)
        axes.fill_between(answers, [e["ci95"][0] for e in estimates], [e["ci95"][1] for e in estimates],
                          color=colour, alpha=0.2, linewidth=0)
    if run["decided_after_answers"] is not None:
        axes.axvline(run["decided_after_answers"], color="grey", linestyle="--",
                     label=f"{run['report']['decision']} ({run['decided_after_answers']:,} answers)")
    axes.set_xlabel("answers sent")
    axes.set_ylabel("acceptance (95% interval)")
    axes.set_title(f"experiment {run['experiment']}: acceptance at each read of the report")
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="models directory (trained into when empty)")
    parser.add_argument("--households", type=int, default=300, help="households of the trained model")
    parser.add_argument("--treatment", default="intent=discover", help="a model version or intent=NAME")
    parser.add_argument("--control", default="current", help="a model version, current or intent=NAME")
    parser.add_argument("--share", type=float, default=0.5, help="share of shoppers in treatment")
    parser.add_argument("--aa", action="store_true", help="an A/A run: current against intent=balanced")
    parser.add_argument("--runs", type=int, default=1, help="runs, each with its own experiment name")
    parser.add_argument("--answers", type=int, default=6_000, help="the most answers a run sends")
    parser.add_argument("--noise", type=float, default=0.05, help="chance of accepting a shown non-switch")
    parser.add_argument("--peek-every", type=int, default=100, help="answers between reads of the report")
    parser.add_argument("--seed", type=int, default=0, help="run r shuffles and decides with seed SEED + r")
    parser.add_argument("--weakened", action="store_true",
                        help="treatment: a popularity-only copy of the current model, made beside it in --models")
    parser.add_argument("--in-process", action="store_true",
                        help="drive the app in this process (FastAPI's TestClient) instead of `recsys serve` on a "
                             "socket: the same routes, state and test; no server to start, a shorter wait for the "
                             "answer counts")
    parser.add_argument("--skip-request-path", action="store_true", help="skip the request-path timing")
    parser.add_argument("--out", type=Path, help="JSON of every run, with the report at each read")
    parser.add_argument("--plot", type=Path, help="PNG of each arm's acceptance and 95%% interval in the first run")
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    found, version = shoppers(args.models, args.households, args.seed)
    print(f"{len(found):,} held-out switch queries, model {version}")
    overhead = {} if args.skip_request_path else request_path(args.models, found)
    if overhead:
        print("request path, p50 µs: " + ", ".join(f"{mode} {us:.1f}" for mode, us in overhead.items()))
    if args.weakened:
        args.treatment = weakened_model(args.models)
        print(f"weakened model {args.treatment}")
    treatment, control = ("intent=balanced", "current") if args.aa else (args.treatment, args.control)
    body = {"treatment": treatment, "control": control, "share": args.share}
    version_arm = None if treatment.startswith("intent=") else treatment
    runs = []
    with tempfile.TemporaryDirectory() as state_dir, _service(args.models, Path(state_dir), args.in_process) as (
            client, pid, settle_s):
        for run in range(args.runs):
            name = f"{'aa' if args.aa else 'ab'}-{args.seed}-{run}"
            result = replay(client, name, found, body, args.answers, args.noise, args.peek_every,
                            args.seed + run, pid, version_arm, settle_s)
            arms = result["report"]["arms"]
            print(f"{name}: {result['report']['decision']} after {result['answers_sent']:,} answers "
                  f"(p = {result['report']['p_value']:.3g}); acceptance control "
                  f"{arms['control']['acceptance']:.4f} ({arms['control']['decided']:,} decided), treatment "
                  f"{arms['treatment']['acceptance']:.4f} ({arms['treatment']['decided']:,} decided)")
            if "second_model" in result:
                print(f"second model: {result['second_model']}")
            runs.append(result)
    winners = [run["experiment"] for run in runs if run["decided_after_answers"] is not None]
    print(f"{len(winners)} of {len(runs)} runs decided ({', '.join(winners) or 'none'}); "
          f"{sum(run['answers_sent'] for run in runs):,} answers in all")
    if args.out is not None:
        args.out.write_text(json.dumps({"model_version": version, "queries": len(found), "request_path_us": overhead,
                                        "in_process": args.in_process, "runs": runs}, indent=2, default=str))
    if args.plot is not None:
        plot_run(runs[0], args.plot)


if __name__ == "__main__":
    main()
