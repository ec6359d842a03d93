"""Coverage and budget per orchestrator and UTC day, on literal runs."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest

from analytics.attribution import ATTRIBUTION_COLUMNS
from analytics.coverage import COVERAGE_COLUMNS, RUNS_SCHEMA, budget_seconds, coverage_table
from analytics.lake import Lake
from analytics.records import RunRecord
from config.settings import Budget

UTC = timezone.utc
DAY = date(2026, 3, 2)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
BUDGET = Budget(daily_percent=10, min_run_gap_mins=5, unavailable_backoff_mins=30, blacklist_after_failures=5)
SCENARIOS = ("s1", "s2", "s3", "s4")
SCHEMA = {**RUNS_SCHEMA, **{name: pl.String() for name in ATTRIBUTION_COLUMNS}}


def run(orchestrator: str, at: datetime, outcome: str | None = "passed", *, scenario: str = "s1",
        stream_s: float | None = 100.0, wall_s: float = 200.0, planned_s: float = 100.0,
        failure: tuple[str, str] = ("runner", "stream"), media_path: str | None = "relay") -> dict[str, Any]:
    """One row of the runs view; a run without outcome is still running (no end yet).

    A failed run fails with ``failure`` (category, phase): by default one the orchestrator took part in.
    """
    ended = at + timedelta(seconds=wall_s) if outcome is not None else None
    category, phase = failure if outcome == "failed" else (None, None)
    return dict(orchestrator=orchestrator, scenario=scenario, outcome=outcome, started_at=at, ended_at=ended,
                stream_s=stream_s if outcome is not None else None, planned_duration_s=planned_s,
                failure_category=category, failure_phase=phase, media_path=media_path)


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    """The rows as a runs frame."""
    return pl.DataFrame(list(rows), schema=SCHEMA)


def table(runs: pl.DataFrame, *, orchestrators: tuple[str, ...] = ("0xa",), now: datetime = MIDNIGHT
          + timedelta(hours=23), budget: Budget = BUDGET, day: date = DAY) -> dict[str, dict[str, Any]]:
    """coverage_table as {orchestrator: row}."""
    result = coverage_table(runs, orchestrators=orchestrators, scenarios=SCENARIOS, budget=budget, day=day, now=now)
    assert result.columns == list(COVERAGE_COLUMNS)
    return {row["orchestrator"]: row for row in result.iter_rows(named=True)}


def at(hours: float) -> datetime:
    """``hours`` after midnight of DAY."""
    return MIDNIGHT + timedelta(hours=hours)


def test_budget_and_use_count_stream_seconds_of_the_day_without_unavailable_runs() -> None:
    runs = frame(
        run("0xa", at(1), stream_s=120.0), run("0xa", at(2), "failed", stream_s=30.0),
        run("0xa", at(3), "unavailable", stream_s=50.0), run("0xa", at(4), "aborted", stream_s=None),
        run("0xa", at(-1), stream_s=999.0),  # yesterday
        run("0xa", at(22.9), None, planned_s=300.0),  # still running
    )
    row = table(runs)["0xa"]
    assert row["budget_s"] == budget_seconds(BUDGET) == BUDGET.daily_percent / 100 * 86_400
    assert row["used_s"] == 120.0 + 30.0
    assert (row["runs"], row["passed"], row["failed"], row["unavailable"], row["aborted"], row["running"]) == \
        (5, 1, 1, 1, 1, 1)
    assert row["reserved_s"] == 300.0
    assert row["date"] == DAY and row["last_run_started_at"] == at(22.9)


def test_scenarios_covered_are_distinct_matrix_scenarios_with_a_verdict() -> None:
    runs = frame(
        run("0xa", at(1), scenario="s1"), run("0xa", at(2), "failed", scenario="s1"),
        run("0xa", at(3), "failed", scenario="s2"), run("0xa", at(4), "unavailable", scenario="s3"),
        run("0xa", at(5), "aborted", scenario="s4"), run("0xa", at(6), scenario="adhoc"),
    )
    row = table(runs)["0xa"]
    assert (row["scenarios_covered"], row["scenarios_due"]) == (2, len(SCENARIOS))
    assert row["coverage_ratio"] == 2 / len(SCENARIOS)


@pytest.mark.parametrize("failures", [4, 5, 6])
def test_blacklist_after_the_configured_number_of_consecutive_failures(failures: int) -> None:
    runs = frame(run("0xa", at(1)), *[run("0xa", at(2 + i), "failed") for i in range(failures)])
    row = table(runs)["0xa"]
    assert row["consecutive_failures"] == failures
    assert row["blacklisted"] is (failures >= BUDGET.blacklist_after_failures)
    assert row["status"] == ("blacklisted" if row["blacklisted"] else "active")


def test_unavailable_and_aborted_runs_neither_extend_nor_break_a_failure_streak() -> None:
    outcomes = ["failed", "unavailable", "failed", "aborted", "failed", "passed", "failed", "unavailable", "failed"]
    runs = frame(*[run("0xa", at(1 + i), outcome) for i, outcome in enumerate(outcomes)])
    assert table(runs)["0xa"]["consecutive_failures"] == 2  # the two failures after the pass


DEAD_LOCAL_SCOPE = ("network", "prepare")  # GET /health: ConnectError, before the orchestrator was asked anything


@pytest.mark.parametrize("failure", [DEAD_LOCAL_SCOPE, ("harness", "stream"), ("harness", "connect"),
                                     ("network", None)])
def test_failures_the_orchestrator_took_no_part_in_neither_blacklist_nor_cover(failure) -> None:
    runs = frame(*[run("0xa", at(1 + i), "failed", scenario=f"s{1 + i % 4}", failure=failure) for i in range(5)])
    row = table(runs)["0xa"]
    assert (row["consecutive_failures"], row["blacklisted"], row["status"]) == (0, False, "active")
    assert row["scenarios_covered"] == 0 and row["failed"] == 5  # still counted as runs that failed


def test_they_neither_extend_nor_break_a_streak_of_the_orchestrators_failures() -> None:
    theirs = [run("0xa", at(1 + i), "failed") for i in range(3)]
    ours = [run("0xa", at(5 + i), "failed", failure=DEAD_LOCAL_SCOPE) for i in range(3)]
    row = table(frame(*theirs, *ours, run("0xa", at(9), "failed")))["0xa"]
    assert (row["consecutive_failures"], row["blacklisted"]) == (4, False)


@pytest.mark.parametrize("media_path", ["local", "headless"])
def test_a_local_session_counts_for_connect_and_load_only_and_covers_nothing(media_path: str) -> None:
    proxied = [run("0xa", at(1 + i), "failed", scenario="s1", media_path=media_path,
                   failure=("orchestrator", "connect") if i % 2 else ("runner", "load")) for i in range(5)]
    row = table(frame(*proxied))["0xa"]
    assert (row["consecutive_failures"], row["blacklisted"], row["scenarios_covered"]) == (5, True, 0)
    streamed = [run("0xa", at(1 + i), "failed", scenario="s2", media_path=media_path,
                    failure=("validation", "stream")) for i in range(5)]
    passed = run("0xa", at(7), scenario="s3", media_path=media_path)
    row = table(frame(*streamed, passed))["0xa"]
    assert (row["consecutive_failures"], row["blacklisted"], row["scenarios_covered"]) == (0, False, 0)
    assert row["coverage_ratio"] == 0.0


def test_a_passed_local_session_ends_a_streak_of_connect_failures() -> None:
    fails = [run("0xa", at(1 + i), "failed", failure=("orchestrator", "connect")) for i in range(4)]
    runs = frame(*fails, run("0xa", at(6), media_path="headless"), run("0xa", at(7), "failed"))
    assert table(runs)["0xa"]["consecutive_failures"] == 1


def test_a_blacklist_is_lifted_the_next_utc_day() -> None:
    runs = frame(*[run("0xa", at(18 + i), "failed") for i in range(5)])
    assert table(runs)["0xa"]["blacklisted"]
    next_day = table(runs, day=DAY + timedelta(days=1), now=at(24.5))["0xa"]
    assert (next_day["consecutive_failures"], next_day["blacklisted"], next_day["runs"]) == (0, False, 0)


def test_cooldown_lasts_min_run_gap_after_the_last_run_ended_even_across_midnight() -> None:
    ended = at(-0.05)  # yesterday, 3 minutes before midnight
    runs = frame(run("0xa", ended - timedelta(seconds=200)))
    gap = timedelta(minutes=BUDGET.min_run_gap_mins)
    just_before, just_after = ended + gap - timedelta(seconds=1), ended + gap
    assert table(runs, now=just_before)["0xa"]["cooling_down"]
    assert table(runs, now=just_before)["0xa"]["status"] == "cooldown"
    assert not table(runs, now=just_after)["0xa"]["cooling_down"]
    assert table(runs, now=just_before)["0xa"]["last_run_ended_at"] == ended


def test_back_off_after_an_unavailable_run() -> None:
    runs = frame(run("0xa", at(10), "unavailable", wall_s=10.0))
    ended = at(10) + timedelta(seconds=10)
    backoff = timedelta(minutes=BUDGET.unavailable_backoff_mins)
    during = table(runs, now=ended + backoff - timedelta(seconds=1))["0xa"]
    assert during["backing_off"] and during["status"] == "unavailable" and during["last_unavailable_at"] == ended
    after = table(runs, now=ended + backoff)["0xa"]
    assert not after["backing_off"] and after["status"] == "active"


def test_over_budget_when_the_day_used_its_stream_seconds() -> None:
    budget_s = budget_seconds(BUDGET)
    runs = frame(run("0xa", at(1), stream_s=budget_s - 1), run("0xb", at(1), stream_s=budget_s))
    rows = table(runs, orchestrators=("0xa", "0xb"))
    assert (rows["0xa"]["over_budget"], rows["0xb"]["over_budget"]) == (False, True)
    assert rows["0xb"]["status"] == "over_budget"


def test_status_prefers_blacklist_then_unavailable_then_budget_then_cooldown() -> None:
    budget_s = budget_seconds(BUDGET)
    fails = [run("0xa", at(1 + i / 10), "failed", stream_s=budget_s / 5) for i in range(5)]
    runs = frame(*fails, run("0xa", at(2), "unavailable"))
    assert table(runs, now=at(2.01))["0xa"]["status"] == "blacklisted"
    runs = frame(run("0xb", at(1), stream_s=budget_s), run("0xb", at(2), "unavailable"))
    assert table(runs, orchestrators=("0xb",), now=at(2.1))["0xb"]["status"] == "unavailable"
    assert table(runs, orchestrators=("0xb",), now=at(2.06))["0xb"]["cooling_down"]


def test_one_row_per_orchestrator_in_the_given_order_even_without_runs() -> None:
    runs = frame(run("0xb", at(1)), run("0xz", at(1)))
    result = coverage_table(runs, orchestrators=["0xc", "0xb", "0xc", "0xa"], scenarios=SCENARIOS,
                            budget=BUDGET, day=DAY, now=at(23))
    assert result["orchestrator"].to_list() == ["0xc", "0xb", "0xa"]
    empty = result.row(0, named=True)
    assert (empty["runs"], empty["used_s"], empty["status"], empty["last_run_ended_at"]) == (0, 0.0, "active", None)


def test_naive_timestamps_are_utc_and_missing_columns_are_refused() -> None:
    aware = frame(run("0xa", at(23.99), wall_s=60.0))
    naive = aware.with_columns(pl.col("started_at", "ended_at").dt.replace_time_zone(None))
    assert table(naive, now=at(24.01)) == table(aware, now=at(24.01))
    with pytest.raises(ValueError, match="stream_s"):
        table(aware.drop("stream_s"))


def test_agrees_with_the_lakes_coverage_daily_view(lake: Lake) -> None:
    rows = [("0xa", "s1", "passed", 120.0), ("0xa", "s2", "failed", 40.0), ("0xa", "s3", "unavailable", None),
            ("0xb", "s1", "aborted", None), ("0xb", "s2", "passed", 300.0)]
    for n, (orchestrator, scenario, outcome, stream_s) in enumerate(rows):
        started = at(8 + n)
        failure = dict(failure_category="validation", failure_phase="stream") if outcome == "failed" else {}
        lake.land_run(RunRecord(**failure,run_id=f"r{n}", state="final", scenario=scenario, pipeline="p", mode="t2v",
                                duration_class="5m", planned_duration_s=300.0, hard_cap_s=900.0,
                                scope_instance="scope-0", harness_version="0", started_at=started,
                                ended_at=started + timedelta(seconds=400), outcome=outcome,
                                orchestrator=orchestrator, stream_s=stream_s))
    ours = table(lake.runs_frame(), orchestrators=("0xa", "0xb"))
    view = lake.query_frame("SELECT * FROM coverage_daily", budget_seconds=budget_seconds(BUDGET))
    for theirs in view.iter_rows(named=True):
        mine = ours[theirs["orchestrator"]]
        assert (mine["date"], mine["runs"], mine["used_s"], mine["budget_s"], mine["scenarios_covered"]) == (
            theirs["date"], theirs["runs"], theirs["stream_s"], theirs["budget_s"], theirs["scenarios_covered"])
