"""The verdict of a run: honest outcome, every failed check by name, the first failure explained.

Pure: it takes the first phase failure (if any) and the stream checks, and decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.session.checks import CheckResult
from errors import Category, HarnessError, NoCapacity, Phase

# The check a phase failure stands for when the error does not name one itself.
PHASE_CHECK = {
    Phase.PREPARE: "prepare",
    Phase.CONNECT: "connect",
    Phase.LOAD: "load",
    Phase.START: "first_frame",
    Phase.STREAM: "stream",
    Phase.CLEANUP: "cleanup",
}

# Stream checks whose failure is not the output's look (validation) but someone else's.
CHECK_CATEGORY = {
    "stall": Category.RUNNER,  # the runner stopped producing
    "relay": Category.PROTOCOL,  # the instance did not route the media through the cloud
    "harness_lag": Category.HARNESS,  # the harness fell behind its own schedule: its figures say nothing
    "events": Category.PROTOCOL,  # Scope's lifecycle events broke their contract (only when config requires them)
}


@dataclass(frozen=True)
class Verdict:
    """Outcome plus the failure fields of the run record."""

    outcome: str
    failure_category: str | None = None
    failure_phase: str | None = None
    failure_reason: str | None = None
    checks_failed: tuple[str, ...] = ()


def decide(
    failure: HarnessError | None,
    checks: Sequence[CheckResult],
    *,
    cleanup_error: HarnessError | None = None,
    interrupted_by: str | None = None,
    interrupted_in: Phase | None = None,
    first_check: str | None = None,
) -> Verdict:
    """Decide the outcome; `first_check` names the check that stopped the stream early.

    Anything the harness is to blame for (an interruption, a harness-category failure or
    check) is `aborted`: a verdict on the orchestrator it is not."""
    failed_checks = [c for c in checks if not c.passed]
    names = [c.name for c in failed_checks] + (["cleanup"] if cleanup_error is not None else [])
    if interrupted_by is not None:
        phase = interrupted_in.value if interrupted_in is not None else _phase(failure)
        reason = f"interrupted by {interrupted_by} during {phase or 'the run'}; cleanup ran"
        return Verdict("aborted", Category.HARNESS, phase, reason, tuple(names))
    if isinstance(failure, NoCapacity):
        return Verdict("unavailable", Category.ORCHESTRATOR, _phase(failure), failure.message, ())
    if failure is not None:
        name = failure.check or PHASE_CHECK.get(failure.phase, "run")
        outcome = "aborted" if failure.category == Category.HARNESS else "failed"
        return Verdict(outcome, failure.category, _phase(failure), failure.message, tuple([name, *names]))
    if failed_checks:
        first = _first_failed(failed_checks, first_check)
        category = CHECK_CATEGORY.get(first.name, Category.VALIDATION)
        outcome = "aborted" if category == Category.HARNESS else "failed"
        return Verdict(outcome, category, Phase.STREAM, first.reason, tuple(names))
    if cleanup_error is not None:  # everything passed but stop/disconnect did not
        return Verdict("failed", cleanup_error.category, Phase.CLEANUP, cleanup_error.message, ("cleanup",))
    return Verdict("passed")


def _first_failed(failed: list[CheckResult], first_check: str | None) -> CheckResult:
    for check in failed:  # a lagging harness invalidates every other figure: it comes first
        if check.name == "harness_lag":
            return check
    for check in failed:
        if check.name == first_check:
            return check
    return failed[0]


def _phase(failure: HarnessError | None) -> str | None:
    return failure.phase.value if failure is not None and failure.phase is not None else None
