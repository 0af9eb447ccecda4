"""Online experiments in the shared state (recsys/state/experiments.py), no model needed: deterministic assignment
and its share, what makes an experiment invalid (each error naming its field), the SQLite store and its counters
shared by two processes, the version-4 file migrated (and a file from before the order counters), answer ids that
sign the arm and a batch line's order (old ids still verifying), and the report counting each answer's feedback
once, in its arm and its order, and nothing forged."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recsys.state.answers import SECRET_NAME, AnswerIdError, AnswerSigner
from recsys.state.experiments import (
    CONTROL,
    TREATMENT,
    ExperimentError,
    assign,
    find,
    new_experiment,
    report,
    start_experiment,
    treatment_threshold,
    unit_of,
)
from recsys.state.feedback import Feedback, from_json, to_json
from recsys.state.storage import SCHEMA_VERSION
from recsys.state.store import SqliteState, open_state

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
VERSIONS = {"v1", "v2"}


def _experiment(name: str = "e1", treatment: str = "v2", share: float = 0.2, **options: object):  # type: ignore[no-untyped-def]
    return new_experiment(name, treatment, share, model_exists=VERSIONS.__contains__, now=NOW, **options)  # type: ignore[arg-type]


def test_assignment_is_deterministic_and_respects_the_share() -> None:
    threshold = treatment_threshold(0.2)
    units = [unit_of(str(i), None) for i in range(10_000)]
    arms = [assign("e1", str(unit), threshold) for unit in units]
    assert arms == [assign("e1", str(unit), threshold) for unit in units], "the same unit, the same arm"
    treated = arms.count(TREATMENT)
    # binomial(10,000, 0.2): sd 40; 4.5 sd is a false alarm once in about 150,000 runs
    assert abs(treated - 2_000) < 180, treated
    # another experiment assigns independently: its treatment overlaps this one's by about 0.2 x 0.2
    other = [assign("e2", str(unit), threshold) for unit in units]
    both = sum(a == b == TREATMENT for a, b in zip(arms, other, strict=True))
    assert abs(both - 400) < 4.5 * (10_000 * 0.04 * 0.96) ** 0.5, both
    assert set(arms) == {CONTROL, TREATMENT}
    # a session is another unit than a customer of the same id; no unit: nobody to assign
    assert unit_of("7", None) != unit_of(None, "7") and unit_of("7", "s") == unit_of("7", None)
    assert unit_of(None, None) is None


@pytest.mark.parametrize(("options", "field"), [
    ({"share": 0}, "share"), ({"share": 1}, "share"), ({"share": -0.5}, "share"), ({"share": 1.5}, "share"),
    ({"treatment": "v9"}, "treatment"), ({"treatment": "intent=cheapest"}, "treatment"),
    ({"treatment": "current"}, "treatment"), ({"treatment": "../v1"}, "treatment"),
    ({"treatment": "intent=balanced", "control": "intent=balanced"}, "treatment"),
    ({"control": "v9"}, "control"), ({"control": "intent=nope"}, "control"),
    ({"name": ""}, "name"), ({"name": "a b"}, "name"), ({"name": "x" * 65}, "name"),
    ({"stores": [""]}, "stores"), ({"stops_at": NOW - timedelta(hours=1)}, "stops_at"),
    ({"starts_at": NOW + timedelta(days=2), "stops_at": NOW + timedelta(days=1)}, "stops_at"),
])
def test_an_invalid_experiment_names_its_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ExperimentError) as error:
        _experiment(**options)  # type: ignore[arg-type]
    assert error.value.field == field and str(error.value).startswith(f"{field}: ")
    assert not error.value.conflict


def test_arms_are_normalised() -> None:
    experiment = _experiment(treatment="intent=discover", control="v1", stores=["s1", "s1", "s2"])
    assert experiment.treatment_arm.intent == "discover" and experiment.treatment_arm.version is None
    assert experiment.control_arm.version == "v1" and experiment.model_versions() == {"v1"}
    assert experiment.stores == ("s1", "s2") and experiment.status(NOW) == "running"
    later = _experiment(starts_at=NOW + timedelta(hours=1), stops_at=NOW + timedelta(hours=2))
    assert later.status(NOW) == "scheduled" and later.status(NOW + timedelta(hours=1)) == "running"
    assert later.status(NOW + timedelta(hours=2)) == "ended"


def test_experiments_in_a_state_file_shared_by_two_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    first, second = open_state(url), open_state(url)
    started = start_experiment(first.experiments, _experiment(stores=["s1"]), NOW)
    assert second.experiments.experiments() == [started]
    for clash, field in ((_experiment(), "name"), (_experiment("e2"), "stores"),
                         (_experiment("e3", stores=["s1", "s9"]), "stores")):
        with pytest.raises(ExperimentError) as error:
            start_experiment(second.experiments, clash, NOW)
        assert error.value.conflict and error.value.field == field
    start_experiment(second.experiments, _experiment("e4", stores=["s2"]), NOW)  # other stores: no clash
    # each process adds its answers to the shared counters
    first.experiments.add_answers({("e1", CONTROL): 3, ("e1", TREATMENT): 1})
    second.experiments.add_answers({("e1", CONTROL): 2, ("e4", TREATMENT): 5})
    assert first.experiments.answers("e1") == {CONTROL: 5, TREATMENT: 1}
    assert second.experiments.answers("e4") == {TREATMENT: 5} and first.experiments.answers("nope") == {}
    assert second.experiments.stop_experiment("e1", (NOW + timedelta(minutes=1)).isoformat())
    assert not first.experiments.stop_experiment("e1", NOW.isoformat()), "stopped once"
    assert find(first.experiments, "e1").status(NOW + timedelta(minutes=2)) == "ended"
    with pytest.raises(ExperimentError) as error:  # an ended experiment keeps its name
        start_experiment(first.experiments, _experiment(), NOW + timedelta(minutes=2))
    assert error.value.field == "name"
    start_experiment(first.experiments, _experiment("e5", stores=["s1"]), NOW + timedelta(minutes=2))
    first.close()
    second.close()


def test_a_version_four_file_is_migrated_and_keeps_its_feedback(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    state = SqliteState(path)
    state.feedback.record(Feedback("x", shown=("y",), accepted="y", answer_id="a1"))
    state.close()
    with sqlite3.connect(path) as old:  # back to what version 4 had
        old.execute("DROP TABLE experiments")
        old.execute("DROP TABLE experiment_answers")
        old.execute("DROP INDEX feedback_experiment")
        old.execute("ALTER TABLE feedback DROP COLUMN experiment")
        old.execute("UPDATE schema_version SET version = 4")
    state = SqliteState(path)
    assert [f.accepted for f in state.feedback.feedback()] == ["y"] and state.experiments.experiments() == []
    assert state.feedback.experiment_feedback("e1") == []
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(5,)]
        (body,) = check.execute("SELECT body FROM feedback").fetchone()
    # a row outside experiments is written as before them, so an older build's trainer still reads it
    assert not {"experiment", "arm", "price_difference"} & set(json.loads(body))
    labelled = Feedback("x", shown=("y",), accepted="y", experiment="e1", arm=TREATMENT, price_difference=0.5)
    assert from_json(to_json(labelled)) == labelled
    state.close()


def test_answer_ids_sign_the_arm_and_old_ids_still_verify() -> None:
    signer = AnswerSigner(b"k" * 32)
    plain = signer.read(signer.sign("v1", "x", "7", "s1", ["a", "b"], 1_000.0))
    assert plain.experiment is None and plain.arm is None and plain.shown == ("a", "b")
    labelled = signer.read(signer.sign("v2", "x", "7", "s1", ["a"], 1_000.0, "e1", TREATMENT))
    assert (labelled.experiment, labelled.arm, labelled.model_version) == ("e1", TREATMENT, "v2")
    # an id issued before experiments existed: the same 7 fields, the same signature
    import base64

    import orjson
    payload = base64.urlsafe_b64encode(orjson.dumps(["v1", "x", None, None, ["a"], 1_000_000, "00"])).rstrip(b"=")
    old = (payload + b"." + signer._tag(payload)).decode()
    assert signer.read(old).experiment is None
    with pytest.raises(AnswerIdError):  # the arm cannot be moved without the key
        forged = base64.urlsafe_b64encode(orjson.dumps(["v2", "x", "7", "s1", ["a"], 1_000_000, "00", "e1",
                                                        CONTROL])).rstrip(b"=")
        signer.read((forged + b"." + old.split(".")[1].encode()).decode())


def test_the_report_counts_verified_feedback_once_in_its_arm(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    signer = AnswerSigner(state.shared_secret(SECRET_NAME))
    experiment = start_experiment(state.experiments, _experiment(), NOW)

    def decide(arm: str, shown: tuple[str, ...], **decision: object) -> Feedback:
        answer_id = signer.sign("v1", "x", "7", "s1", list(shown), NOW.timestamp(), "e1", arm)
        return Feedback("x", shown=shown, customer_id="7", store_id="s1", model_version="v1", answer_id=answer_id,
                        experiment="e1", arm=arm, **decision)  # type: ignore[arg-type]

    rows = [decide(TREATMENT, ("a", "b"), accepted="a", price_difference=0.5),
            decide(TREATMENT, ("a", "b"), accepted="b", price_difference=-1.5),
            decide(TREATMENT, ("a", "b"), rejected=("a", "b")),
            decide(CONTROL, ("a", "b"), rejected=("a",)),
            decide(CONTROL, ("a", "b"), chosen="b"),  # a manual pick of a shown substitute: accepted
            decide(CONTROL, ("a", "b"), chosen="zz")]  # a pick of something else: decided, not accepted
    for row in rows:
        assert state.feedback.record(row).created
        assert not state.feedback.record(row).created, "one decision per answer"
    # written into the database by hand: an arm the signature does not say, and no signature at all
    state.feedback.record(Feedback("x", shown=("a",), accepted="a", customer_id="7", store_id="s1",
                                   model_version="v1", answer_id=rows[3].answer_id + "x", experiment="e1",
                                   arm=TREATMENT))
    relabelled = Feedback("x", shown=("a", "b"), accepted="a", customer_id="7", store_id="s1", model_version="v1",
                          answer_id=signer.sign("v1", "x", "7", "s1", ["a", "b"], NOW.timestamp(), "e1", CONTROL),
                          experiment="e1", arm=TREATMENT)
    state.feedback.record(relabelled)
    state.experiments.add_answers({("e1", TREATMENT): 10, ("e1", CONTROL): 40})
    measured = report(experiment, state.experiments.answers("e1"), state.feedback.experiment_feedback("e1"),
                      signer, NOW, orders=state.experiments.orders("e1")).to_json(NOW)
    treatment, control = measured["arms"][TREATMENT], measured["arms"][CONTROL]
    for arm in (treatment, control):  # single answers: no order served, none decided
        assert (arm["orders"], arm["orders_decided"], arm["order_substitution_rate"]) == (0, 0, None)
    assert (treatment["answers"], treatment["decided"], treatment["accepted"], treatment["first_accepted"]) == \
        (10, 3, 2, 1)
    assert treatment["acceptance"] == pytest.approx(2 / 3) and treatment["accepted_price_difference"] == -0.5
    assert treatment["ci95"][0] < 2 / 3 < treatment["ci95"][1]
    assert (control["answers"], control["decided"], control["accepted"], control["first_accepted"]) == (40, 3, 1, 0)
    assert measured["decision"] == "no decision yet" and measured["p_value"] == 1.0
    assert measured["difference"] == pytest.approx(2 / 3 - 1 / 3) and measured["status"] == "running"
    state.close()


def test_a_state_file_from_before_order_counters_opens_and_keeps_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    state = SqliteState(path)
    state.experiments.add_answers({("e1", CONTROL): 3})
    state.close()
    with sqlite3.connect(path) as old:  # as schema 5 was before whole orders were counted
        old.execute("ALTER TABLE experiment_answers DROP COLUMN orders")
    state = SqliteState(path)
    assert state.experiments.answers("e1") == {CONTROL: 3} and state.experiments.orders("e1") == {CONTROL: 0}
    state.experiments.add_answers({("e1", CONTROL): 4, ("e1", TREATMENT): 2}, {("e1", CONTROL): 1,
                                                                              ("e1", TREATMENT): 1})
    state.experiments.add_answers({}, {("e1", TREATMENT): 1})
    assert state.experiments.answers("e1") == {CONTROL: 7, TREATMENT: 2}
    assert state.experiments.orders("e1") == {CONTROL: 1, TREATMENT: 2}
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    state.close()


def test_feedback_counts_toward_the_order_its_answer_id_signs(tmp_path: Path) -> None:
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    signer = AnswerSigner(state.shared_secret(SECRET_NAME))
    experiment = start_experiment(state.experiments, _experiment(), NOW)

    def line(arm: str, order_id: str | None, label: str | None = None, **decision: object) -> Feedback:
        answer_id = signer.sign("v1", "x", "7", "s1", ["a", "b"], NOW.timestamp(), "e1", arm, order_id)
        return Feedback("x", shown=("a", "b"), customer_id="7", store_id="s1", model_version="v1",
                        answer_id=answer_id, experiment="e1", arm=arm, order_id=label or order_id,
                        **decision)  # type: ignore[arg-type]

    assert signer.read(line(TREATMENT, "o1", accepted="a").answer_id or "").order_id == "o1"
    assert signer.read(signer.sign("v1", "x", "7", "s1", ["a"], NOW.timestamp(), order_id="o1")).order_id is None, \
        "outside an experiment an answer has no order"
    rows = [line(TREATMENT, "o1", accepted="a"), line(TREATMENT, "o1", rejected=("a", "b")),  # o1: not whole
            line(TREATMENT, "o2", accepted="b"), line(TREATMENT, "o2", chosen="a"),  # o2: every line substituted
            line(TREATMENT, None, accepted="a"),  # a single answer: no order
            line(CONTROL, "o3", rejected=("a",)),
            line(CONTROL, None, "o4", accepted="a"),  # labelled with an order its answer id does not sign
            line(CONTROL, "o5", "o6", accepted="a")]  # moved to another order
    for row in rows:
        state.feedback.record(row)
    state.experiments.add_answers({("e1", TREATMENT): 5, ("e1", CONTROL): 3}, {("e1", TREATMENT): 3,
                                                                              ("e1", CONTROL): 2})
    measured = report(experiment, state.experiments.answers("e1"), state.feedback.experiment_feedback("e1"),
                      signer, NOW, orders=state.experiments.orders("e1")).to_json(NOW)
    treatment, control = measured["arms"][TREATMENT], measured["arms"][CONTROL]
    assert (treatment["orders"], treatment["orders_decided"], treatment["orders_substituted"]) == (3, 2, 1)
    assert treatment["order_substitution_rate"] == 0.5 and treatment["decided"] == 5
    assert treatment["order_substitution_ci95"][0] < 0.5 < treatment["order_substitution_ci95"][1]
    assert (control["orders"], control["orders_decided"], control["orders_substituted"]) == (2, 1, 0)
    assert control["order_substitution_rate"] == 0.0 and control["decided"] == 1, "forged rows count nowhere"
    state.close()
