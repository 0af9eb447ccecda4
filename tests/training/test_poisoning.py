"""Feedback that cannot be forged: 10,000 forged acceptances (posted to the server, and written straight into its
state past the server) leave the next model exactly as it would be without them; as many verified acceptances of
the same pair change it. On the synthetic retailer, so it runs in minutes (``-m slow``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsys import SubstituteEngine
from recsys.cli import app
from recsys.state.answers import AnswerSigner
from recsys.state.feedback import Feedback
from serving.app import create_app
from serving.settings import Settings
from tests.synthetic import TINY

pytestmark = pytest.mark.slow
TOKEN = "poisoning-test-token"
N = 10_000


def _train(files: dict[str, Path], config: Path, out: Path, feedback: Path | None = None) -> SubstituteEngine:
    args = ["train", "--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping",
            str(files["mapping"]), "--config", str(config), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, [*args, *(["--feedback", str(feedback)] if feedback else [])])
    assert result.exit_code == 0, result.output
    return SubstituteEngine.load(out / "current")


def _answers(engine: SubstituteEngine, items: list[str]) -> list[list[str]]:
    return [[s.item_id for s in engine.substitutes(x, customer_id=c, k=10)]
            for x in items for c in (None, *map(str, engine.model.customers[:5]))]


def test_forged_feedback_changes_nothing_and_verified_feedback_does(synthetic_files: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(TINY.model_dump_json())
    base = _train(synthetic_files, config, tmp_path / "base")
    popular = base.model.items.sort_values("n_customers", ascending=False)["item_id"].astype(str).tolist()
    x = next(i for i in popular if len(base.substitutes(i, k=10)) == 10)
    target = base.substitutes(x, k=10)[-1].item_id  # what a poisoner would push to the top
    auth = {"Authorization": f"Bearer {TOKEN}"}

    forged_state = tmp_path / "forged.sqlite3"
    settings = Settings(model_path=tmp_path / "base" / "current", admin_token=TOKEN, state_path=forged_state,
                        rate_limit_per_s=0)
    with TestClient(create_app(settings), headers=auth) as client:
        version = client.get("/v1/model").json()["model_version"]
        guess = AnswerSigner(b"the poisoner's guess at the key, 32+ bytes")
        statuses = set()
        for n in range(N):
            forged = guess.sign(version, x, None, None, [target], time.time() - n)
            statuses.add(client.post("/v1/feedback", json={"answer_id": forged, "accepted": target}).status_code)
        assert statuses == {422}
        # and past the server, as someone with write access to the database might
        store = client.app.state.service.store
        for n in range(N):
            store.feedback.record(Feedback(item_id=x, shown=(target,), accepted=target, model_version=version,
                                           answer_id=guess.sign(version, x, None, None, [target], time.time() - n)))
        assert len(store.feedback.feedback()) == N

    verified_state = tmp_path / "verified.sqlite3"
    with TestClient(create_app(settings.model_copy(update={"state_path": verified_state})), headers=auth) as client:
        for _ in range(N):
            answer = client.get(f"/v1/items/{x}/substitutes", params={"k": 10}).json()
            response = client.post("/v1/feedback", json={"answer_id": answer["answer_id"], "accepted": target})
            assert response.status_code == 201

    forged_model = _train(synthetic_files, config, tmp_path / "forged", forged_state)
    verified_model = _train(synthetic_files, config, tmp_path / "verified", verified_state)
    assert forged_model.manifest.counts["feedback_decisions"] == 0
    assert verified_model.manifest.counts["feedback_decisions"] == N
    items = popular[:100]
    assert _answers(forged_model, items) == _answers(base, items), "forged feedback changed the model"
    assert verified_model.substitutes(x, k=1)[0].item_id == target, "verified feedback moves the pair to the top"
    changed = sum(a != b for a, b in zip(_answers(verified_model, items), _answers(base, items), strict=True))
    assert changed > 0
