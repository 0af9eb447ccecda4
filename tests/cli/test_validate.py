"""`recsys validate`: the data checked as a training would check it, without training. Its report says what `recsys
train` then builds on (the same sources, span, counts and event types as the model's manifest), counts what the
catalog does not describe and names event names nobody mapped; anything a training refuses exits 2 with the line
`recsys train` prints for it."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from recsys.cli import app
from recsys.cli.common import ExitStatus
from recsys.model.artifact import CURRENT, read_manifest
from tests.synthetic import TINY


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [*map(str, args)])


def _inputs(files: dict[str, str | Path] | dict[str, Path], **replaced: Path) -> list[str | Path]:
    given = {"events": files["events"], "catalog": files["catalog"], "mapping": files["mapping"], **replaced}
    return ["--data", given["events"], "--catalog", given["catalog"], "--mapping", given["mapping"]]


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_the_report_is_what_a_training_then_builds_on(synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(TINY.model_dump_json())
    checked = _run("validate", *_inputs(synthetic_files), "--config", config, "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    trained = _run("train", *_inputs(synthetic_files), "--config", config, "--out", tmp_path / "models",
                   "--no-progress")
    assert trained.exit_code == 0, trained.output
    manifest = read_manifest(tmp_path / "models" / CURRENT)
    assert report["sources"] == [{key: value for key, value in source.model_dump().items()
                                  if key != "skipped_values" or value} for source in manifest.sources]
    assert report["data_span"] == manifest.data_span.model_dump()
    counts = manifest.counts
    assert report["counts"] == {"events": counts["events"], "customers": counts["customers"],
                                "stores": counts["stores"], "items_with_events": counts["items_with_events"],
                                "catalog_items": counts["items"]}
    assert report["event_types"] == counts["event_types"]
    assert report["size_parse_rate"] == pytest.approx(manifest.size_parse_rate, abs=1e-6)
    assert report["catalog_coverage"] == {"share": 1.0, "valid_events": report["sources"][1]["rows_used"],
                                          "not_in_catalog": 0}
    assert report["warnings"] == [] and report["seconds"] > 0


def test_catalog_coverage_counts_the_events_the_catalog_does_not_describe(synthetic_files: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    products = pd.read_csv(synthetic_files["catalog"], dtype=str)
    fewer = products[products.index % 7 != 3]
    fewer.to_csv(tmp_path / "products.csv", index=False)
    result = _run("validate", *_inputs(synthetic_files, catalog=tmp_path / "products.csv"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    events = pd.read_csv(synthetic_files["events"], dtype=str)
    lacking = int((~events["product_id"].isin(fewer["item_id"])).sum())
    assert lacking > 0
    assert report["catalog_coverage"] == {"share": pytest.approx(1 - lacking / len(events), abs=1e-6),
                                          "valid_events": len(events), "not_in_catalog": lacking}
    assert report["sources"][1]["skipped"] == {"item not in catalog": lacking}
    assert report["counts"]["catalog_items"] == len(fewer)


def test_the_table_goes_to_stdout_with_each_source_and_count(synthetic_files: dict[str, Path]) -> None:
    result = _run("validate", *_inputs(synthetic_files))
    assert result.exit_code == 0, result.output
    table = " ".join(result.stdout.split())
    report = json.loads(_run("validate", *_inputs(synthetic_files), "--json").stdout)
    events = pd.read_csv(synthetic_files["events"], dtype=str)
    assert f"rows: {synthetic_files['events']} │ {len(events):,} read, {len(events):,} used; skipped none" in table
    counts = report["counts"]
    per_type = ", ".join(f"{name}: {n:,}" for name, n in report["event_types"].items())
    for row in (f"events │ {counts['events']:,}", f"events per type │ {per_type}",
                f"catalog coverage │ 100.000%: 0 of {len(events):,} valid event rows",
                f"package sizes parsed │ {report['size_parse_rate']:.2%}", f"customers │ {counts['customers']:,}",
                f"stores │ {counts['stores']:,}", f"items with events │ {counts['items_with_events']:,}",
                f"catalog items │ {counts['catalog_items']:,}"):
        assert row in table, row
    assert not result.stderr.strip()


def test_event_names_nobody_mapped_are_named_with_their_counts(synthetic_files: dict[str, Path],
                                                               tmp_path: Path) -> None:
    events = pd.read_csv(synthetic_files["events"], dtype=str)
    carts = events.index[events["event_type"] == "cart"]
    events.loc[carts[::3], "event_type"] = "addtowishlist"
    events.loc[carts[1::5], "event_type"] = "refund"
    events.to_csv(tmp_path / "events.csv", index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(synthetic_files["mapping"].read_text() + "[events.types]\n"
                       + "".join(f'{name} = "{name}"\n' for name in ("purchase", "view", "cart", "refund",
                                                                     "substitution_accepted")))
    result = _run("validate", *_inputs(synthetic_files, events=tmp_path / "events.csv", mapping=mapping), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = events["event_type"].value_counts()
    source = report["sources"][1]
    # a name the mapping does not list is skipped by the loader, a mapped one no weight covers by the loader too
    assert source["skipped_values"] == {"event type not in the mapping": {"addtowishlist": int(names["addtowishlist"])},
                                        "unknown event type": {"refund": int(names["refund"])}}
    warnings = [line.removeprefix("warning: ") for line in result.stderr.splitlines() if line.startswith("warning")]
    assert warnings == report["warnings"] and len(warnings) == 2
    assert f"'addtowishlist': {int(names['addtowishlist']):,} (map them under [events.types]" in warnings[0]
    assert f"'refund': {int(names['refund']):,} (give them a weight in the --config's event_weights" in warnings[1]


@pytest.mark.parametrize("case", ["missing column", "empty file", "no usable events", "url", "missing file",
                                  "bad mapping", "bad catalog"])
def test_what_a_training_refuses_exits_2_with_the_line_train_prints(case: str, synthetic_files: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    files: dict[str, str | Path] = dict(synthetic_files)
    extra: list[str] = []
    if case == "missing column":
        pd.read_csv(files["events"], dtype=str).drop(columns=["event_time"]).to_csv(tmp_path / "e.csv", index=False)
        files["events"] = tmp_path / "e.csv"
    elif case == "empty file":
        (tmp_path / "e.csv").write_text("")
        files["events"] = tmp_path / "e.csv"
    elif case == "no usable events":
        extra = ["--train-until", "2000-01-01"]
    elif case == "url":
        files["events"] = "s3a://lake/events/"
    elif case == "missing file":
        files["events"] = tmp_path / "missing.csv"
    elif case == "bad mapping":
        (tmp_path / "m.toml").write_text('[events]\ncustomer_id = "no_such_column"\n')
        files["mapping"] = tmp_path / "m.toml"
    else:
        pd.read_csv(files["catalog"], dtype=str).drop(columns=["item_id"]).to_csv(tmp_path / "p.csv", index=False)
        files["catalog"] = tmp_path / "p.csv"
    args = [*map(str, _inputs(files)), *extra]
    checked = _run("validate", *args)
    assert checked.exit_code == ExitStatus.bad_input, checked.output
    (line,) = _error_lines(checked)
    assert line.startswith("error: ") and "Traceback" not in checked.output and not checked.stdout
    trained = _run("train", *args, "--out", tmp_path / "models", "--no-progress")
    assert trained.exit_code == ExitStatus.bad_input, trained.output
    assert _error_lines(trained)[-1] == line
    expected = {"missing column": "event_time", "empty file": "cannot read", "no usable events": "no usable events",
                "url": "--engine spark", "missing file": "missing.csv", "bad mapping": "no_such_column",
                "bad catalog": "item_id"}[case]
    assert expected in line


@pytest.mark.realdata
def test_the_complete_journey_in_seconds() -> None:
    from recsys.domain.config import TrainConfig
    from training.loaders import load_completejourney

    result = _run("validate", "--json")  # completejourney is the default data, as for train
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    dataset = load_completejourney()
    events = dataset.events
    assert report["sources"][0]["source"] == "completejourney"
    assert report["sources"][0]["rows_used"] == len(events)
    described = events["item_id"].isin(dataset.catalog["item_id"])
    assert report["catalog_coverage"]["not_in_catalog"] == int((~described).sum()) > 0
    assert report["sources"][1]["skipped"] == {"item not in catalog": int((~described).sum())}
    kept = events[described]
    assert report["counts"] == {"events": len(kept), "customers": kept["customer_id"].nunique(),
                                "stores": kept["store_id"].nunique(), "items_with_events": kept["item_id"].nunique(),
                                "catalog_items": len(dataset.catalog)}
    assert report["data_span"] == {"start": kept["timestamp"].min().isoformat(),
                                   "end": kept["timestamp"].max().isoformat()}
    assert report["event_types"] == {"purchase": len(kept)} and set(TrainConfig().event_weights) >= {"purchase"}
    assert 0.9 < report["size_parse_rate"] < 1.0
    assert report["seconds"] < 60
