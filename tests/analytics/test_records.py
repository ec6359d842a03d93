"""The lake's row models: frozen, documented, typed once, with a derived UTC partition date."""

from __future__ import annotations

import ast
import datetime as dt
import sys
import typing
from pathlib import Path

import polars as pl
import pydantic
import pytest

import analytics.records as records
from analytics.records import TABLES, FrameSample, PromptSwitchRecord, RunRecord, column_specs, polars_schema
from errors import Category, Phase

UTC = dt.timezone.utc


def run_fields(**overrides: object) -> dict[str, object]:
    """The required fields of a started run row."""
    fields: dict[str, object] = dict(
        run_id="run-1", state="started", scenario="longlive_t2v_5m", pipeline="longlive", mode="t2v",
        duration_class="5m", planned_duration_s=300.0, hard_cap_s=900.0, scope_instance="http://127.0.0.1:8000",
        harness_version="0.1.0", started_at=dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )
    return fields | overrides


def test_registry_names_every_table_of_the_design() -> None:
    assert set(TABLES) == {"runs", "frames", "prompt_switches", "orchestrators", "baselines", "drift", "scores",
                           "events", "leaderboard_stats", "leaderboard_outbox"}


@pytest.mark.parametrize("model", TABLES.values(), ids=TABLES.keys())
def test_every_field_is_described_and_timestamps_end_in_at(model: type[records.LakeRecord]) -> None:
    for column in column_specs(model):
        assert column.description, f"{model.__name__}.{column.name} has no description"
        if column.kind == "datetime":
            assert column.name.endswith("_at"), column.name
    assert column_specs(model)[-1].name == "date"


def test_rows_are_frozen_and_refuse_unknown_fields() -> None:
    row = RunRecord(**run_fields())
    with pytest.raises(pydantic.ValidationError):
        row.scenario = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="connect_seconds"):
        RunRecord(**run_fields(connect_seconds=1.0))


def test_date_is_the_utc_date_of_the_partition_timestamp() -> None:
    late_evening_west = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    row = RunRecord(**run_fields(started_at=late_evening_west))
    assert row.started_at == late_evening_west and row.started_at.tzinfo == UTC
    assert row.date == dt.date(2026, 3, 2)
    assert RunRecord(**run_fields(started_at=dt.datetime(2026, 3, 1, 23, 30))).date == dt.date(2026, 3, 1)


def test_a_date_that_disagrees_with_the_timestamp_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="does not match started_at"):
        RunRecord(**run_fields(date=dt.date(2026, 2, 28)))
    assert RunRecord(**run_fields(date=dt.date(2026, 3, 1))).date == dt.date(2026, 3, 1)


def test_a_switch_without_its_timestamp_needs_an_explicit_date() -> None:
    fields = dict(run_id="run-1", seq=0, t_s=30.0, prompt_from="a cat", prompt_to="a dog", responded=True)
    with pytest.raises(pydantic.ValidationError, match="date"):
        PromptSwitchRecord(**fields)
    assert PromptSwitchRecord(**fields, date=dt.date(2026, 3, 1)).date == dt.date(2026, 3, 1)
    switched_at = dt.datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)
    assert PromptSwitchRecord(**fields, switched_at=switched_at).date == dt.date(2026, 3, 2)


def test_started_rows_have_no_outcome_and_final_rows_need_one() -> None:
    with pytest.raises(pydantic.ValidationError, match="started row has no outcome"):
        RunRecord(**run_fields(outcome="passed"))
    with pytest.raises(pydantic.ValidationError, match="final row needs an outcome"):
        RunRecord(**run_fields(state="final"))
    final = RunRecord(**run_fields(state="final", outcome="failed", checks_failed=["fps", "stall"]))
    assert final.checks_failed == ("fps", "stall")


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "", "-leading-dash", "with space", "x" * 200])
def test_run_ids_must_be_safe_file_names(bad_id: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        RunRecord(**run_fields(run_id=bad_id))


def test_enumerations_match_the_error_taxonomy() -> None:
    assert set(typing.get_args(records.FailureCategory)) == {c.value for c in Category}
    assert set(typing.get_args(records.FailurePhase)) == {p.value for p in Phase}


def test_enumerated_values_are_checked() -> None:
    with pytest.raises(pydantic.ValidationError):
        RunRecord(**run_fields(state="final", outcome="passed", failure_category="gpu"))
    with pytest.raises(pydantic.ValidationError):
        FrameSample(run_id="r", seq=0, t_s=0.0, captured_at=dt.datetime(2026, 1, 1, tzinfo=UTC), verdict="blurry")


def test_column_specs_follow_the_annotations() -> None:
    specs = {c.name: c for c in column_specs(RunRecord)}
    assert (specs["run_id"].kind, specs["run_id"].nullable) == ("str", False)
    assert (specs["connect_s"].kind, specs["connect_s"].nullable) == ("float", True)
    assert (specs["checks_failed"].kind, specs["checks_failed"].is_list) == ("str", True)
    assert (specs["cold_start"].kind, specs["frames_valid"].kind) == ("bool", "int")
    assert specs["ended_at"].kind == "datetime" and specs["ended_at"].nullable
    assert specs["outcome"].kind == "str" and specs["outcome"].nullable
    assert list(specs) == list(RunRecord.model_fields)


def test_polars_schema_types() -> None:
    schema = polars_schema(RunRecord)
    assert schema["started_at"] == pl.Datetime("us", "UTC")
    assert schema["checks_failed"] == pl.List(pl.String)
    assert schema["cold_start"] == pl.Boolean and schema["frames_valid"] == pl.Int64
    assert schema["load_s"] == pl.Float64 and schema["date"] == pl.Date
    assert list(polars_schema(FrameSample)) == list(FrameSample.model_fields)


def test_records_module_is_a_leaf() -> None:
    tree = ast.parse(Path(records.__file__).read_text())
    top_level = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert top_level - {"pydantic"} <= set(sys.stdlib_module_names), top_level
