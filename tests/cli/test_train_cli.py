"""`recsys train` as a nightly job sees it: the summary says which ranker the model uses and why, with a warning line
for every fallback and the event names nobody mapped named with their counts; `--data` and `--catalog` take URLs
(the single-machine engine refuses those it cannot read, naming `--engine spark`; Spark gets them intact);
`--no-promote` registers a model without making it current."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from recsys.cli import app
from recsys.cli.common import ExitStatus
from recsys.domain.schema import DataValidationError
from recsys.model.artifact import CURRENT, read_manifest
from recsys.model.registry import current_version, headline_metrics
from tests.synthetic import TINY


def _config(tmp_path: Path, **ranker: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(TINY.model_copy(update={"ranker": TINY.ranker.model_copy(update=ranker)}).model_dump_json())
    return path


def _train(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["train", "--no-progress", *map(str, args)])


def _warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_a_ranker_fallback_is_said_and_warned(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    files = synthetic_files
    result = _train("--data", files["events"], "--catalog", files["catalog"], "--mapping", files["mapping"],
                    "--config", _config(tmp_path, min_queries=1_000_000), "--out", tmp_path / "models", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = read_manifest(Path(summary["model_dir"]))
    assert manifest.ranker.source == "default" and summary["ranker"]["source"] == "default"
    queries = manifest.ranker.note.split()[1]
    assert summary["ranker"]["why"] == (f"hand-set weights: only {queries} validation queries, fewer than "
                                        "ranker.min_queries (1000000)")
    assert summary["held_out"] is None
    (warning,) = _warnings(result)
    assert warning == (f"warning: the ranker fell back to the hand-set default weights: only {queries} validation "
                       "queries, fewer than ranker.min_queries (1000000)")
    assert summary["warnings"] == [warning.removeprefix("warning: ")]


def test_a_disabled_ranker_is_said_without_a_warning(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    files = synthetic_files
    result = _train("--data", files["events"], "--catalog", files["catalog"], "--mapping", files["mapping"],
                    "--config", _config(tmp_path, enabled=False), "--out", tmp_path / "models")
    assert result.exit_code == 0, result.output
    assert "default: hand-set weights: ranker.enabled is false in the config" in " ".join(result.stderr.split())
    assert "held-out metrics" in result.stderr and not _warnings(result)


def test_the_learned_ranker_with_its_held_out_metrics(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    files = synthetic_files
    result = _train("--data", files["events"], "--catalog", files["catalog"], "--mapping", files["mapping"],
                    "--config", _config(tmp_path), "--out", tmp_path / "models")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "models" / CURRENT)
    validation = manifest.ranker.validation
    table = " ".join(result.stderr.split())
    assert (f"ranker │ learned: linear weights and a re-ranker of {TINY.ranker.gbdt_trees} trees fitted on "
            f"{validation['queries']:,} validation queries from {validation['start'][:10]}") in table
    measured = headline_metrics(manifest)
    assert "HR@3" in measured and "familiar HR@1" in measured
    for name, value in measured.items():
        assert f"held-out {name} │ {value:.4f}" in table
    assert f"held-out queries │ {manifest.metrics['queries']['all']:,}" in table


def test_event_names_nobody_mapped_are_named_with_their_counts(synthetic_files: dict[str, Path],
                                                               tmp_path: Path) -> None:
    events = pd.read_csv(synthetic_files["events"], dtype=str)
    carts = events.index[events["event_type"] == "cart"]
    events.loc[carts[::3], "event_type"] = "addtowishlist"
    events.loc[carts[1::7], "event_type"] = "Remove_From_Cart"
    events.to_csv(tmp_path / "events.csv", index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(synthetic_files["mapping"].read_text() + "[events.types]\n"
                       + "".join(f'{name} = "{name}"\n' for name in ("purchase", "view", "cart",
                                                                     "substitution_accepted")))
    result = _train("--data", tmp_path / "events.csv", "--catalog", synthetic_files["catalog"], "--mapping", mapping,
                    "--config", _config(tmp_path), "--out", tmp_path / "models")
    assert result.exit_code == 0, result.output
    names = events["event_type"].str.lower().value_counts()
    expected = {"addtowishlist": int(names["addtowishlist"]), "remove_from_cart": int(names["remove_from_cart"])}
    source = next(s for s in read_manifest(tmp_path / "models" / CURRENT).sources if s.source.endswith("events.csv"))
    assert source.skipped["event type not in the mapping"] == sum(expected.values())
    assert source.skipped_values == {"event type not in the mapping": expected}
    (warning,) = _warnings(result)
    assert (f"rows skipped, event type not in the mapping: 'addtowishlist': {expected['addtowishlist']:,}, "
            f"'remove_from_cart': {expected['remove_from_cart']:,} (map them under [events.types]") in warning


@pytest.mark.parametrize("option, url", [("--data", "s3://bucket/events/"),
                                         ("--catalog", "s3a://bucket/products.parquet"),
                                         ("--data", "hdfs://namenode:8020/events.csv")])
def test_the_default_engine_refuses_a_url_it_cannot_read(option: str, url: str, synthetic_files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    files = {"--data": str(synthetic_files["events"]), "--catalog": str(synthetic_files["catalog"]), option: url}
    result = _train("--data", files["--data"], "--catalog", files["--catalog"], "--mapping",
                    synthetic_files["mapping"], "--out", tmp_path / "models")
    assert result.exit_code == ExitStatus.bad_input, result.output
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: {url}: the single-machine engine") and "--engine spark" in message
    assert "Traceback" not in result.output and not (tmp_path / "models").exists()


def test_file_urls_read_as_their_paths(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    files = synthetic_files
    result = _train("--data", files["events"].as_uri(), "--catalog", files["catalog"].as_uri(), "--mapping",
                    files["mapping"], "--config", _config(tmp_path), "--out", tmp_path / "models", "--json")
    assert result.exit_code == 0, result.output
    sources = json.loads(result.stdout)["sources"]
    assert [s["rows_read"] for s in sources[:2]] == [len(pd.read_csv(files[name])) for name in ("catalog", "events")]


@pytest.mark.spark
def test_spark_gets_the_catalog_url_intact(synthetic_files: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to the read: the session and the reading are recorded, not run (tests/training/test_spark.py reads)."""
    import training.spark.reading
    import training.spark.session

    given: dict[str, object] = {}

    def read_sources(spark: object, data: list[str], mapping: object, known: object, catalog: object,
                     households: object) -> None:
        given.update(data=data, catalog=catalog)
        raise DataValidationError("stopped before reading")

    monkeypatch.setattr(training.spark.session, "spark_session", lambda master, **options: object())
    monkeypatch.setattr(training.spark.reading, "read_sources", read_sources)
    result = _train("--engine", "spark", "--data", "s3a://lake/events/", "--catalog", "s3a://lake/products.parquet",
                    "--out", tmp_path / "models")
    assert result.exit_code == ExitStatus.bad_input and "stopped before reading" in result.stderr
    assert given == {"data": ["s3a://lake/events/"], "catalog": "s3a://lake/products.parquet"}


def test_no_promote_registers_without_moving_current(synthetic_files: dict[str, Path], synthetic_model_dir: Path,
                                                     tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(synthetic_model_dir, models / synthetic_model_dir.name)
    (models / CURRENT).symlink_to(synthetic_model_dir.name)
    files = synthetic_files
    result = _train("--data", files["events"], "--catalog", files["catalog"], "--mapping", files["mapping"],
                    "--config", _config(tmp_path), "--out", models, "--no-promote")
    assert result.exit_code == 0, result.output
    new = Path(result.stdout.strip().splitlines()[-1])
    assert new.parent == models and read_manifest(new).version == new.name != synthetic_model_dir.name
    assert current_version(models) == synthetic_model_dir.name
    assert f"recsys models promote {new.name}" in " ".join(result.stderr.split())
    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--models", str(models), "--json"]).stdout)
    assert {entry["version"]: entry["current"] for entry in listed} == {synthetic_model_dir.name: True,
                                                                       new.name: False}
    promoted = CliRunner().invoke(app, ["models", "promote", new.name, "--models", str(models)])
    assert promoted.exit_code == 0 and current_version(models) == new.name


def test_retrain_says_which_ranker_its_candidate_uses(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    files = synthetic_files
    result = CliRunner().invoke(app, [
        "retrain", "--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping",
        str(files["mapping"]), "--config", str(_config(tmp_path, min_queries=1_000_000)), "--models",
        str(tmp_path / "models"), "--no-progress"])
    assert result.exit_code == 0, result.output  # the first model: promoted without a gate
    version = current_version(tmp_path / "models")
    assert f"candidate {version}: ranker default: hand-set weights: only " in result.stderr
    assert any("the ranker fell back to the hand-set default weights" in line for line in _warnings(result))
