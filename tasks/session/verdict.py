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
    Phase.CONNECT: "connect",
    Phase.LOAD: "load",
    Phase.START: "first_frame",
    Phase.STREAM: "stream",
    Phase.CLEANUP: "cleanup",
}

# Stream checks whose failure is the runner's (it stopped producing), not the output's look.
RUNNER_CHECKS = frozenset({"stall"})


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
    cancelled: bool = False,
    first_check: str | None = None,
) -> Verdict:
    """Decide the outcome; `first_check` names the check that stopped the stream early."""
    failed_checks = [c for c in checks if not c.passed]
    names = [c.name for c in failed_checks] + (["cleanup"] if cleanup_error is not None else [])
    if cancelled:
        return Verdict("aborted", Category.HARNESS, _phase(failure), "the run was cancelled before it finished", tuple(names))
    if isinstance(failure, NoCapacity):
        return Verdict("unavailable", Category.ORCHESTRATOR, _phase(failure), failure.message, ())
    if failure is not None:
        name = failure.check or PHASE_CHECK.get(failure.phase, "run")
        return Verdict("failed", failure.category, _phase(failure), failure.message, tuple([name, *names]))
    if failed_checks:
        first = _first_failed(failed_checks, first_check)
        category = Category.RUNNER if first.name in RUNNER_CHECKS else Category.VALIDATION
        return Verdict("failed", category, Phase.STREAM, first.reason, tuple(names))
    if cleanup_error is not None:  # everything passed but stop/disconnect did not
        return Verdict("failed", cleanup_error.category, Phase.CLEANUP, cleanup_error.message, ("cleanup",))
    return Verdict("passed")


def _first_failed(failed: list[CheckResult], first_check: str | None) -> CheckResult:
    for check in failed:
        if check.name == first_check:
            return check
    return failed[0]


def _phase(failure: HarnessError | None) -> str | None:
    return failure.phase.value if failure is not None and failure.phase is not None else None
