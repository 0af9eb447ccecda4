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
  ``--runs N`` repeats it with other experiment names, so other shoppers land in treatment.
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
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from recsys import SubstituteEngine
from recsys.model.artifact import CURRENT
from recsys.state.answers import AnswerSigner
from recsys.state.experiments import new_experiment
from serving.experiments import Experiments
from serving.process import memory, serving
from serving.routers.substitutes import answer_json
from serving.schemas import SubstituteRequest
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


def replay(base: str, name: str, found: list[dict[str, Any]], body: dict[str, Any], answers: int, noise: float,
           peek_every: int, seed: int, pid: int, treatment_version: str | None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"experiment": name, **body}
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
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
                    peeks.append({"answers": served, "p_value": report["p_value"], "decision": report["decision"]})
                    if report["decision"] != "no decision yet":
                        decided_at = served
                        break
                if served >= answers:
                    break
        time.sleep(1.5)  # the replica adds its answer counts to the state every polling interval
        report = client.get(f"/v1/experiments/{name}").json()
        client.post(f"/v1/admin/experiments/{name}/stop").raise_for_status()
    result.update(answers_sent=served, decided_after_answers=decided_at, seconds=round(time.monotonic() - began, 1),
                  peeks=len(peeks), report=report)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="models directory (trained into when empty)")
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--treatment", default="intent=discover", help="a model version or intent=NAME")
    parser.add_argument("--control", default="current")
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--aa", action="store_true", help="an A/A run: current against intent=balanced")
    parser.add_argument("--runs", type=int, default=1, help="runs, each with its own experiment name")
    parser.add_argument("--answers", type=int, default=6_000, help="the most answers a run sends")
    parser.add_argument("--noise", type=float, default=0.05, help="chance of accepting a shown non-switch")
    parser.add_argument("--peek-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    found, version = shoppers(args.models, args.households, args.seed)
    print(f"{len(found):,} held-out switch queries, model {version}")
    overhead = request_path(args.models, found)
    print("request path, p50 µs: " + ", ".join(f"{mode} {us:.1f}" for mode, us in overhead.items()))
    treatment, control = ("intent=balanced", "current") if args.aa else (args.treatment, args.control)
    body = {"treatment": treatment, "control": control, "share": args.share}
    version_arm = None if treatment.startswith("intent=") else treatment
    runs = []
    with tempfile.TemporaryDirectory() as state_dir:
        env = {"RECSYS_STATE_PATH": str(Path(state_dir) / "state.sqlite3"), "RECSYS_ADMIN_TOKEN": TOKEN,
               "RECSYS_RATE_LIMIT_PER_S": "0", "RECSYS_MODELS_DIR": str(args.models)}
        with serving(args.models / CURRENT, env=env, timeout_s=300) as (base, process):
            for run in range(args.runs):
                name = f"{'aa' if args.aa else 'ab'}-{args.seed}-{run}"
                result = replay(base, name, found, body, args.answers, args.noise, args.peek_every,
                                args.seed + run, process.pid, version_arm)
                arms = result["report"]["arms"]
                print(f"{name}: {result['report']['decision']} after {result['answers_sent']:,} answers "
                      f"(p = {result['report']['p_value']:.3g}); acceptance control "
                      f"{arms['control']['acceptance']:.4f} ({arms['control']['decided']:,} decided), treatment "
                      f"{arms['treatment']['acceptance']:.4f} ({arms['treatment']['decided']:,} decided)")
                if "second_model" in result:
                    print(f"second model: {result['second_model']}")
                runs.append(result)
    if args.out is not None:
        args.out.write_text(json.dumps({"model_version": version, "queries": len(found), "request_path_us": overhead,
                                        "runs": runs}, indent=2, default=str))


if __name__ == "__main__":
    main()
