"""Event parity per orchestrator on literal runs: the audited runs, the ratio and the findings' kinds."""

from __future__ import annotations

import datetime as dt

import polars as pl

from analytics.event_parity import FINDING_KINDS, audited_runs, event_findings, event_parity, finding_kind
from tests.analytics.test_scores import NOW, frame, run

DAY = dt.timedelta(hours=24)


def test_the_kind_is_the_text_before_the_first_colon():
    findings = pl.DataFrame({"finding": ["ttff_disagrees: playback_ready says 1.20 s: harness 0.40 s", " late :x",
                                         "missing", "something_new: detail", ""]})
    assert findings.select(finding_kind(pl.col("finding"))).to_series().to_list() == [
        "ttff_disagrees", "late", "missing", "unknown", "unknown"]


def test_only_runs_with_a_source_and_an_orchestrator_are_audited():
    runs = frame([run(1, events_source="kafka", events_complete=True), run(2, events_source="file",
                  events_complete=None), run(3, events_source="none"), run(4), run(5, events_source="kafka",
                  events_complete=True, orchestrator=None)])
    assert audited_runs(runs, now=NOW, window=DAY)["run_id"].to_list() == ["r1", "r2"]
    parity = event_parity(runs, now=NOW, window=DAY)
    # a source without a completeness (an unfinished audit) is not complete
    assert parity.rows() == [("0xa", 2, 1, 0.5)]


def test_findings_without_audited_runs_are_empty_and_with_them_every_kind_is_listed():
    assert event_findings(frame([run(1, events_source="none")]), now=NOW, window=DAY).is_empty()
    findings = event_findings(frame([run(1, events_source="kafka", events_complete=False,
                                         events_findings=("null_ids: stream_started",))]), now=NOW, window=DAY)
    assert dict(findings.select("kind", "runs").rows()) == dict.fromkeys(FINDING_KINDS, 0) | {"null_ids": 1}
