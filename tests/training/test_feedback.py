"""Substitution feedback end to end: POST /v1/feedback -> recsys train --feedback -> a changed ranking."""

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recsys import SubstituteEngine
from recsys.cli import app
from recsys.state.feedback import FeedbackLog
from serving.app import create_app
from serving.settings import Settings


def test_feedback_is_recorded_and_retraining_changes_the_ranking(model_dir: Path, train_args: list[str],
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    with TestClient(create_app(Settings(model_path=model_dir, state_path=state, auth="open"))) as client:
        engine: SubstituteEngine = client.app.state.service.engine
        items = engine.model.items
        x = next(str(i) for i in items.sort_values("n_customers", ascending=False)["item_id"]
                 if len(engine.substitutes(str(i), k=10)) == 10)
        before = client.get(f"/v1/items/{x}/substitutes", params={"k": 10}).json()
        shown = [s["item_id"] for s in before["substitutes"]]
        liked, disliked = shown[7], shown[0]
        customers = [str(c) for c in engine.model.customers[:4]]
        decisions = 0
        for customer in customers[:3]:
            # each customer's own answer: feedback is bound to what that answer showed
            answer = client.get(f"/v1/items/{x}/substitutes", params={"k": 10, "customer_id": customer}).json()
            theirs = [s["item_id"] for s in answer["substitutes"]]
            decision = {"answer_id": answer["answer_id"], "rejected": [disliked] if disliked in theirs else []}
            decision |= {"accepted": liked} if liked in theirs else {"chosen": liked}
            response = client.post("/v1/feedback", json=decision)
            assert response.status_code == 201 and response.json()["id"] > 0
            decisions += 1 + len(decision["rejected"])
        picked = client.get(f"/v1/items/{x}/substitutes", params={"k": 3, "customer_id": customers[3]}).json()
        picker = client.post("/v1/feedback", json={"answer_id": picked["answer_id"], "chosen": liked,
                                                   "source": "picker"})
        assert picker.status_code == 201
        decisions += 1
        answer_id = before["answer_id"]
        for bad in ({"answer_id": answer_id}, {"answer_id": answer_id, "rejected": []},
                    {"answer_id": answer_id, "accepted": None}, {"answer_id": answer_id, "chosen": liked,
                                                                 "source": "robot"},
                    {"answer_id": answer_id, "chosen": liked, "surprise": 1}, {"chosen": liked},
                    {"answer_id": answer_id, "item_id": x, "chosen": liked}):
            response = client.post("/v1/feedback", json=bad)
            assert response.status_code == 422 and response.json()["detail"]
    assert len(FeedbackLog(state)) == 4, "recorded durably, nothing from the refused requests"

    result = CliRunner().invoke(app, ["train", *train_args, "--feedback", str(state),
                                      "--out", str(tmp_path / "models"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"feedback: {decisions} decisions" in result.output
    retrained = SubstituteEngine.load(tmp_path / "models" / "current")
    assert retrained.manifest.counts["feedback_decisions"] == decisions

    after = [s.item_id for s in retrained.substitutes(x, k=10)]
    assert after[0] == liked, f"accepted 4 times: first now (was #{shown.index(liked) + 1})"
    assert disliked not in after[:1] and (disliked not in after or after.index(disliked) > shown.index(disliked))
    assert "shoppers accepted it instead" in retrained.substitutes(x, k=1)[0].reasons
    # the customers' own accepted choice comes first for them, with the reason
    for customer in customers:
        personal = retrained.substitutes(x, customer_id=customer, k=3)
        assert personal[0].item_id == liked
        assert "you accepted it as a substitute before" in personal[0].reasons


def test_training_refuses_a_missing_feedback_file(data_args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", *data_args, "--feedback", str(tmp_path / "nope.db"),
                                      "--out", str(tmp_path / "models"), "--no-progress"])
    assert result.exit_code == 2 and "no feedback database" in result.output
