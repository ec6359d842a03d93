"""Honest verdicts over real loopback sessions: a run whose own records cannot land is never a pass,
and with the demo's 5 s switch interval every prompt switch is judged (or says why not)."""

from __future__ import annotations

import pytest

from analytics.lake import Lake
from analytics.records import RunRecord
from errors import LakeWriteError
from tests.conftest import with_thresholds
from tests.integration.sessions import run_on_simulator

pytestmark = pytest.mark.integration


class StartedRowRefused(Lake):
    """A lake whose disk refuses the `started` row (full, read-only, gone)."""

    def land_run(self, record: RunRecord):
        if record.state == "started":
            raise OSError(28, "No space left on device")
        return super().land_run(record)


class FinalRowRefused(Lake):
    """A lake that takes everything but the final row."""

    def land_run(self, record: RunRecord):
        if record.state == "final":
            raise OSError(30, "Read-only file system")
        return super().land_run(record)


async def test_a_started_row_that_cannot_land_aborts_the_run_and_starts_nothing(demo_settings, tmp_path):
    lake = StartedRowRefused(tmp_path / "data")
    record, truth = await run_on_simulator(demo_settings, lake, duration_s=3.0)
    assert (record.outcome, record.failure_category, record.failure_phase) == ("aborted", "harness", "prepare")
    assert "could not land" in record.failure_reason and "No space left" in record.failure_reason
    assert record.frames_sampled is None and not truth["webrtc_sessions"] and not truth["sessions"]
    landed = lake.query("select outcome from run_states where state = 'final'").dicts()
    assert landed == [{"outcome": "aborted"}]


async def test_a_final_row_that_cannot_land_fails_loudly(demo_settings, tmp_path):
    with pytest.raises(LakeWriteError, match="final row"):
        await run_on_simulator(demo_settings, FinalRowRefused(tmp_path / "data"), duration_s=2.0)


async def test_every_prompt_switch_is_judged_at_the_demos_interval(demo_settings, tmp_path):
    settings = with_thresholds(demo_settings, prompt_switch_interval_s=5.0, prompt_response_s=10.0)
    record, truth = await run_on_simulator(settings, Lake(tmp_path / "data"), duration_s=24.0)
    assert record.outcome == "passed", record.failure_reason
    assert record.prompt_switches >= 2  # at 5 s and 10 s: before, the first window swallowed the second
    assert record.prompt_switches_evaluated == record.prompt_switches == record.prompt_switches_responded
    switches = Lake(tmp_path / "data").query("select evaluated, responded, reason from prompt_switches").dicts()
    assert all(row["evaluated"] and row["responded"] and row["reason"] is None for row in switches)
