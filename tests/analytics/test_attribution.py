"""The attribution rule on literal runs: which outcomes are the orchestrator's."""

from __future__ import annotations

import polars as pl
import pytest

from analytics.attribution import AGAINST, VERDICT, with_attribution

SCHEMA = {"outcome": pl.String(), "failure_category": pl.String(), "failure_phase": pl.String(),
          "media_path": pl.String()}


def attributed(outcome: str | None, category: str | None = None, phase: str | None = None,
               media_path: str | None = None) -> tuple[bool, str | None]:
    """(against_orchestrator, orchestrator_verdict) of one run."""
    runs = pl.DataFrame([dict(outcome=outcome, failure_category=category, failure_phase=phase,
                              media_path=media_path)], schema=SCHEMA)
    row = with_attribution(runs).row(0, named=True)
    return row[AGAINST], row[VERDICT]


@pytest.mark.parametrize(("run", "expected"), [
    # the dead local Scope of issue 9: /health refused before anything reached the orchestrator
    (("failed", "network", "prepare", "relay"), (False, None)),
    (("failed", "network", None, "relay"), (False, None)),
    (("failed", "harness", "stream", "relay"), (False, None)),
    (("failed", "harness", "connect", None), (False, None)),
    (("failed", "orchestrator", "connect", "relay"), (True, "failed")),
    (("failed", "runner", "load", "relay"), (True, "failed")),
    (("failed", "runner", "start", "relay"), (True, "failed")),
    (("failed", "validation", "stream", "relay"), (True, "failed")),
    (("failed", "network", "cleanup", "relay"), (True, "failed")),
    (("passed", None, None, "relay"), (False, "passed")),
    # local and headless sessions: connect and load are proxied, the stream ran on the Scope box
    (("failed", "orchestrator", "connect", "headless"), (True, None)),
    (("failed", "runner", "load", "local"), (True, None)),
    (("failed", "validation", "stream", "headless"), (False, None)),
    (("failed", "runner", "start", "local"), (False, None)),
    (("passed", None, None, "headless"), (False, None)),
    (("passed", None, None, "local"), (False, None)),
    # rows from before media_path: counted as they were
    (("failed", "validation", "stream", None), (True, "failed")),
    (("passed", None, None, None), (False, "passed")),
    (("failed", None, "stream", None), (True, "failed")),
    # no verdict at all
    (("unavailable", "orchestrator", "connect", "relay"), (False, None)),
    (("aborted", "harness", "stream", "relay"), (False, None)),
    ((None, None, None, None), (False, None)),
])
def test_which_runs_are_the_orchestrators(run: tuple, expected: tuple) -> None:
    assert attributed(*run) == expected


def test_a_frame_without_the_newer_columns_reads_them_as_null() -> None:
    runs = pl.DataFrame({"outcome": ["passed", "failed"], "failure_phase": ["stream", "stream"]})
    result = with_attribution(runs)
    assert result[AGAINST].to_list() == [False, True]
    assert result[VERDICT].to_list() == ["passed", "failed"]
    assert result["media_path"].null_count() == 2 and runs.columns == ["outcome", "failure_phase"]
