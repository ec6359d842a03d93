"""decide(): the outcome and failure fields of a run from its first phase failure and its stream checks."""

from __future__ import annotations

import pytest

from tasks.session.checks import CheckResult
from errors import Category, HarnessError, NoCapacity, Phase, PhaseFailed, PhaseTimeout, ScopeTimeout
from tasks.session.verdict import PHASE_CHECK, Verdict, decide


def passed(name: str) -> CheckResult:
    return CheckResult(name, True, f"{name} fine", 0.0)


def failed(name: str) -> CheckResult:
    return CheckResult(name, False, f"{name} went wrong", 1.0)


ALL_PASS = [passed(n) for n in ("stall", "fps", "black", "freeze", "corrupt", "frame_size", "prompt_response")]


def test_all_checks_pass_and_no_failure_is_passed():
    assert decide(None, ALL_PASS) == Verdict("passed")
    assert decide(None, []) == Verdict("passed")


def test_an_interrupted_run_is_aborted_and_blamed_on_the_harness():
    failure = PhaseFailed("stream died", category=Category.RUNNER, phase=Phase.STREAM)
    verdict = decide(failure, [failed("fps")], interrupted_by="SIGTERM", interrupted_in=Phase.STREAM)
    assert verdict.outcome == "aborted"
    assert verdict.failure_category == Category.HARNESS
    assert verdict.failure_phase == "stream"
    assert "SIGTERM" in verdict.failure_reason
    everything_passed = decide(None, ALL_PASS, interrupted_by="SIGINT", interrupted_in=Phase.START)
    assert everything_passed.outcome == "aborted" and everything_passed.failure_phase == "start"


def test_a_harness_failure_is_aborted_never_a_verdict_on_the_orchestrator():
    lake_down = HarnessError("could not land the started row", phase=Phase.PREPARE)
    verdict = decide(lake_down, ALL_PASS)
    assert (verdict.outcome, verdict.failure_category, verdict.failure_phase) == ("aborted", "harness", "prepare")


def test_a_lagging_harness_aborts_the_run_before_any_stream_check_blames_scope():
    lag = CheckResult("harness_lag", False, "harness tick lag p95 900 ms", 900.0)
    verdict = decide(None, [failed("stall"), lag], first_check="stall")
    assert (verdict.outcome, verdict.failure_category) == ("aborted", "harness")
    assert verdict.checks_failed == ("stall", "harness_lag")


def test_a_session_that_did_not_go_through_the_relay_is_a_protocol_failure():
    relay = CheckResult("relay", False, "asked for the cloud but the media path is local", None)
    verdict = decide(None, [*ALL_PASS, relay])
    assert (verdict.outcome, verdict.failure_category, verdict.checks_failed) == ("failed", "protocol", ("relay",))


def test_no_capacity_is_unavailable_and_not_a_failure():
    busy = NoCapacity("OrchestratorBusy", route="/api/v1/cloud/status", phase=Phase.CONNECT)
    verdict = decide(busy, [failed("fps")], cleanup_error=PhaseFailed("x", phase=Phase.CLEANUP))
    assert verdict.outcome == "unavailable"
    assert verdict.failure_category == Category.ORCHESTRATOR
    assert verdict.failure_phase == "connect"
    assert verdict.checks_failed == ()  # nothing is counted against the orchestrator
    assert "OrchestratorBusy" in verdict.failure_reason


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (PhaseTimeout("cloud connect not connected after 3 s", category=Category.ORCHESTRATOR, phase=Phase.CONNECT),
         Category.ORCHESTRATOR),
        (PhaseFailed("load failed: CUDA out of memory", category=Category.RUNNER, phase=Phase.LOAD), Category.RUNNER),
        (PhaseTimeout("no output frame within 20 s", category=Category.RUNNER, phase=Phase.START), Category.RUNNER),
        (ScopeTimeout("read timed out", route="/api/v1/session/metrics", phase=Phase.STREAM), Category.NETWORK),
    ],
    ids=["connect", "load", "start", "stream"],
)
def test_a_phase_failure_names_the_phase_check_and_its_category(error, category):
    verdict = decide(error, ALL_PASS)
    assert verdict.outcome == "failed"
    assert verdict.failure_category == category
    assert verdict.failure_phase == error.phase.value
    assert verdict.failure_reason == error.message
    assert verdict.checks_failed == (PHASE_CHECK[error.phase],)


def test_a_phase_failure_that_names_a_check_lists_that_check_first():
    error = PhaseFailed("frames arrive but fail the frame_size check", category=Category.VALIDATION,
                        phase=Phase.START, check="frame_size")
    verdict = decide(error, [])
    assert (verdict.outcome, verdict.failure_category, verdict.failure_phase) == ("failed", "validation", "start")
    assert verdict.checks_failed == ("frame_size",)


def test_a_phase_failure_keeps_every_other_failed_check_after_it():
    error = PhaseFailed("stream died", category=Category.RUNNER, phase=Phase.STREAM)
    cleanup = PhaseFailed("stop answered 500", category=Category.PROTOCOL, phase=Phase.CLEANUP)
    verdict = decide(error, [failed("fps"), passed("black"), failed("vram_leak")], cleanup_error=cleanup)
    assert verdict.checks_failed == ("stream", "fps", "vram_leak", "cleanup")
    assert verdict.failure_category == Category.RUNNER and verdict.failure_reason == "stream died"


def test_failed_stream_checks_name_the_first_failed_one():
    checks = [passed("stall"), failed("fps"), failed("black"), passed("freeze")]
    verdict = decide(None, checks)
    assert verdict.outcome == "failed"
    assert verdict.failure_phase == "stream"
    assert verdict.failure_category == Category.VALIDATION
    assert verdict.failure_reason == "fps went wrong"
    assert verdict.checks_failed == ("fps", "black")


def test_the_check_that_stopped_the_stream_early_is_the_first_failure():
    checks = [passed("stall"), failed("fps"), failed("black"), passed("freeze")]
    verdict = decide(None, checks, first_check="black")
    assert verdict.failure_reason == "black went wrong"
    assert verdict.checks_failed == ("fps", "black")  # every failed check is still listed
    unknown = decide(None, checks, first_check="freeze")  # a passed check cannot be the first failure
    assert unknown.failure_reason == "fps went wrong"


def test_a_stall_is_the_runners_failure_not_the_outputs():
    verdict = decide(None, [failed("stall"), failed("fps")], first_check="stall")
    assert verdict.failure_category == Category.RUNNER
    assert verdict.failure_reason == "stall went wrong"


def test_a_cleanup_only_failure_fails_the_run_in_cleanup():
    cleanup = PhaseTimeout("cleanup did not finish in time", category=Category.NETWORK, phase=Phase.CLEANUP)
    verdict = decide(None, ALL_PASS, cleanup_error=cleanup)
    assert verdict == Verdict("failed", Category.NETWORK, "cleanup", "cleanup did not finish in time", ("cleanup",))


def test_failed_checks_come_before_a_cleanup_failure():
    cleanup = PhaseFailed("stop answered 500", category=Category.PROTOCOL, phase=Phase.CLEANUP)
    verdict = decide(None, [failed("freeze")], cleanup_error=cleanup)
    assert verdict.failure_category == Category.VALIDATION and verdict.failure_phase == "stream"
    assert verdict.checks_failed == ("freeze", "cleanup")
