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
    # A response window longer than the interval: before, the first switch's window swallowed the next one.
    settings = with_thresholds(demo_settings, prompt_switch_interval_s=5.0, prompt_response_s=6.0)
    record, truth = await run_on_simulator(settings, Lake(tmp_path / "data"), duration_s=16.0)
    assert record.outcome == "passed", record.failure_reason
    assert record.prompt_switches >= 2  # at 5 s and 10 s: before, the first window swallowed the second
    assert record.prompt_switches_evaluated == record.prompt_switches == record.prompt_switches_responded
    switches = Lake(tmp_path / "data").query("select evaluated, responded, reason from prompt_switches").dicts()
    assert all(row["evaluated"] and row["responded"] and row["reason"] is None for row in switches)


def _scenario_on(settings, pipeline_ids: list[str], mode: str, input_kind: str):
    base = settings.scenario("longlive_t2v_15s")
    return base.model_copy(update={"pipeline_ids": pipeline_ids, "pipeline": "+".join(pipeline_ids), "mode": mode,
                                   "input_kind": input_kind, "graph": None, "sink_node_id": None})


async def _run_scenario_on_simulator(settings, lake, scenario, duration_s: float):
    from simulator.testing import running_simulator
    from tasks.session.lifecycle import run_session
    from tasks.session.target import RunTarget

    with running_simulator("healthy") as sim:
        record = await run_session(settings=settings, scenario=scenario, lake=lake, duration_s=duration_s,
                                   target=RunTarget(scope_url=sim.url, orchestrator="0x" + "cd" * 20))
        return record, sim.truth()


async def test_a_pipeline_that_ignores_prompts_skips_the_prompt_check_and_passes(demo_settings, tmp_path):
    """Scope's schema says passthrough has supports_prompts false: no switch, the check skipped with why."""
    scenario = _scenario_on(demo_settings, ["passthrough"], "v2v", "video")
    record, _ = await _run_scenario_on_simulator(demo_settings, Lake(tmp_path / "data"), scenario, 6.0)
    assert record.outcome == "passed", record.failure_reason
    assert record.prompt_switches == 0
    skipped = dict(item.split(": ", 1) for item in record.checks_skipped)
    assert "passthrough" in skipped["prompt_response"] and "prompts" in skipped["prompt_response"]


@pytest.mark.parametrize(("pipeline_ids", "mode", "input_kind", "problem"), [
    (["nosuch-pipe"], "t2v", "none", "unknown pipeline(s) nosuch-pipe"),
    (["passthrough"], "t2v", "none", "passthrough has no text mode"),
])
async def test_a_scenario_the_pipelines_cannot_run_is_a_configuration_error(
        demo_settings, tmp_path, pipeline_ids, mode, input_kind, problem):
    scenario = _scenario_on(demo_settings, pipeline_ids, mode, input_kind)
    record, truth = await _run_scenario_on_simulator(demo_settings, Lake(tmp_path / "data"), scenario, 4.0)
    assert (record.outcome, record.failure_category, record.failure_phase) == ("aborted", "harness", "prepare")
    assert record.checks_failed == ("preflight",) and problem in record.failure_reason
    assert not truth["loads"] and not truth["connects"], "nothing was asked of the orchestrator"
