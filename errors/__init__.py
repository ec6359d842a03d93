"""The harness's one exception tree.

Every error the harness raises is a ``HarnessError`` whose ``category`` and ``phase``
follow the taxonomy of quality.md, so a failure is classified where it is raised and
never guessed later from its Python type::

    HarnessError
     ├── ConfigError                 bad configuration (file, key, problem)
     ├── ScopeError                  anything from a Scope HTTP call (route, status)
     │    ├── ScopeUnreachable       connect refused / reset            -> network
     │    ├── ScopeTimeout           an HTTP call hung past its timeout -> network
     │    ├── ResponseTooLarge       answer above its size cap          -> protocol
     │    ├── ScopeHTTPError         unexpected status code             -> by status
     │    │    └── NoCapacity        503 / OrchestratorBusy / ...       -> orchestrator (unavailable)
     │    ├── CloudCredentialsMissing  cloud connect's "400" inside a 500 -> harness
     │    └── BadResponse            body not of the contract's shape   -> protocol
     ├── PhaseTimeout                a lifecycle phase exceeded its limit
     ├── PhaseFailed                 a phase failed for a stated reason (load error, no frame, ...)
     ├── PreflightError              the scenario asks what the pipelines cannot do -> harness (config)
     └── LakeWriteError              the run's own rows could not land             -> harness

This module is a leaf: standard library only.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """Who is to blame for a failure (quality.md's error taxonomy)."""

    NETWORK = "network"
    ORCHESTRATOR = "orchestrator"
    RUNNER = "runner"
    PROTOCOL = "protocol"
    VALIDATION = "validation"
    HARNESS = "harness"


class Phase(StrEnum):
    """The lifecycle phase a failure happened in."""

    PREPARE = "prepare"  # the Scope instance and the harness get ready; the orchestrator takes no part
    CONNECT = "connect"
    LOAD = "load"
    START = "start"
    STREAM = "stream"
    CLEANUP = "cleanup"


class HarnessError(Exception):
    """Root of every error the harness raises; carries category and phase."""

    default_category: Category = Category.HARNESS

    def __init__(
        self,
        message: str,
        *,
        category: Category | None = None,
        phase: Phase | None = None,
        check: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = Category(category) if category else self.default_category
        self.phase = Phase(phase) if phase else None
        self.check = check  # the quality check this failure is, when it is one (e.g. "frame_size")

    def with_phase(self, phase: Phase) -> "HarnessError":
        """Return self with the phase set when it was not known where raised."""
        if self.phase is None:
            self.phase = phase
        return self

    def __str__(self) -> str:
        return self.message


class ConfigError(HarnessError):
    """A configuration file or value is wrong; names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}", category=Category.HARNESS)
        self.file = file
        self.key = key
        self.problem = problem


class ScopeError(HarnessError):
    """An error from one Scope HTTP call; carries the route and the HTTP status."""

    default_category = Category.PROTOCOL

    def __init__(
        self,
        message: str,
        *,
        route: str,
        status: int | None = None,
        detail: str | None = None,
        category: Category | None = None,
        phase: Phase | None = None,
    ) -> None:
        where = f"{route}" + (f" -> {status}" if status is not None else "")
        super().__init__(f"{where}: {message}", category=category, phase=phase)
        self.route = route
        self.status = status
        self.detail = detail


class ScopeUnreachable(ScopeError):
    """The Scope instance refused or reset the connection."""

    default_category = Category.NETWORK


class ScopeTimeout(ScopeError):
    """An HTTP call to Scope did not answer within its timeout."""

    default_category = Category.NETWORK


class ResponseTooLarge(ScopeError):
    """An answer exceeded its size cap and was cut off instead of read whole."""

    default_category = Category.PROTOCOL


class ScopeHTTPError(ScopeError):
    """Scope answered with a status code the contract does not expect here."""

    default_category = Category.PROTOCOL


class NoCapacity(ScopeHTTPError):
    """The orchestrator has no capacity: the run is `unavailable`, not failed."""

    default_category = Category.ORCHESTRATOR


class CloudCredentialsMissing(ScopeError):
    """Cloud connect's 500 whose detail says no credentials are configured."""

    default_category = Category.HARNESS


class BadResponse(ScopeError):
    """The body does not have the shape the contract promises."""

    default_category = Category.PROTOCOL


class PhaseTimeout(HarnessError):
    """A lifecycle phase exceeded its limit; the category says what timed out."""


class PhaseFailed(HarnessError):
    """A lifecycle phase failed for a reason stated in the message."""


class PreflightError(HarnessError):
    """The scenario asks for what the instance's pipelines cannot do (unknown id, mode): a config error."""


class LakeWriteError(HarnessError):
    """The run's own records could not land: a harness failure, never a pass."""


CAPACITY_MARKERS = ("orchestratorbusy", "orchestratorcapped", "insufficient capacity")


def mentions_no_capacity(text: str | None) -> bool:
    """True when an error text names one of the contract's no-capacity conditions."""
    lowered = (text or "").lower()
    return any(marker in lowered for marker in CAPACITY_MARKERS)
