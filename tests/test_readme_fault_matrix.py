"""The README's fault matrix is the tests' own tables: every fault, signal and harness failure the
integration tests drive, with the outcome, check, category and phase they assert, and what is
cleaned up. This test renders the matrix from those tables and fails when the README differs."""

from __future__ import annotations

import re
import signal

from tests.conftest import ROOT
from tests.integration.test_session_faults import HEADLESS_CASES, RELAY_CASES
from tests.integration.test_session_signals import CASES as SIGNAL_CASES

BEGIN, END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"
HEADER = ("| fault or signal | driver | outcome | failed check | category | phase | cleaned up |\n"
          "|---|---|---|---|---|---|---|")
# What cleanup undoes once a run got as far as a phase (quality.md: cleanup always runs).
RELAY_CLEANED = {
    None: "session deleted, cloud disconnected",
    "prepare": "nothing was started",
    "connect": "cloud disconnected",
    "load": "cloud disconnected",
    "start": "session deleted, cloud disconnected",
    "stream": "session deleted, cloud disconnected",
    "cleanup": "session deleted, cloud disconnected (cleanup finished first)",
}
LOCAL_CLEANED = {None: "session stopped", "prepare": "nothing was started", "start": "session stopped",
                 "stream": "session stopped", "cleanup": "session stopped (cleanup finished first)"}
RELAY, LOCAL = "webrtc (relay)", "headless (local)"
# Harness failures driven by tests/integration/test_session_honesty.py.
HARNESS_CASES = [
    ("the lake refuses the started row", RELAY, ("aborted", "prepare", "harness", "prepare")),
    ("unknown pipeline or mode the pipeline lacks (Scope's schemas)", RELAY,
     ("aborted", "preflight", "harness", "prepare")),
]


def _row(fault: str, driver: str, expected: tuple) -> str:
    outcome, check, category, phase = expected
    cleaned = (RELAY_CLEANED if driver == RELAY else LOCAL_CLEANED)[phase]
    cells = [fault, driver, outcome, check or "-", category or "-", phase or "-", cleaned]
    return "| " + " | ".join(cells) + " |"


def _profile(name: str, overrides: dict | None) -> str:
    knobs = ", ".join(f"{key}={value}" for key, value in (overrides or {}).items())
    return f"`{name}`" + (f" ({knobs})" if knobs else "")


def fault_matrix() -> str:
    """The matrix as the tests assert it, in markdown."""
    rows = [_row(_profile(p, o), RELAY, e) for p, o, e in RELAY_CASES]
    rows += [_row(_profile(p, o), LOCAL, e) for p, o, e in HEADLESS_CASES]
    signalled: dict[tuple[str, str], list[str]] = {}
    for driver, phase, signum in SIGNAL_CASES:
        signalled.setdefault((driver, phase), []).append(signal.Signals(signum).name)
    for (driver, phase), names in signalled.items():
        label = RELAY if driver == "webrtc" else LOCAL
        rows.append(_row(f"{' or '.join(names)} during {phase}", label, ("aborted", None, "harness", phase)))
    rows += [_row(fault, driver, expected) for fault, driver, expected in HARNESS_CASES]
    return "\n".join([HEADER, *rows])


def test_the_readme_fault_matrix_is_the_tests_tables():
    readme = (ROOT / "README.md").read_text()
    found = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), readme, re.DOTALL)
    assert found, f"README.md lacks the {BEGIN} … {END} block"
    expected = fault_matrix()
    assert found.group(1).strip() == expected, f"README fault matrix is stale; it should read:\n{expected}"
