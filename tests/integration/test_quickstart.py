"""The README's quick start, run as written: its commands, taken from README.md, against a real simulator process.

The commands run in order like a shell would: `export` sets the environment, a line ending in
`&` starts in the background and the next line waits (bounded) until its port answers `/health`,
as a person waits for the server to come up; `uv run X` runs X from this test's environment
(the project's). Two things differ from a new user's shell, both outside the commands: the
port is a free one instead of 8000, and PREFECT_API_URL points at the session's Prefect server.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.fleet.instances import free_loopback_port
from tests.integration.processes import wait_until_answers
from tests.conftest import ROOT
from tests.integration.prefect_server import PrefectServer, stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

README = ROOT / "README.md"
HEADING = "## Quick start"
README_PORT = "8000"
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 180.0
CREDENTIAL_VARIABLES = ("SCOPE_CLOUD_APP_ID", "SCOPE_CLOUD_API_KEY")


def quick_start_lines() -> list[str]:
    """The command lines of the first sh block under the quick-start heading."""
    section = README.read_text().split(HEADING, 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def argv_of(words: list[str]) -> list[str]:
    """`uv run X …` as X from this environment; `python` and `loadtest` as this interpreter's."""
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] == "loadtest":
        script = Path(sys.executable).with_name("loadtest")
        return [str(script), *words[1:]] if script.exists() else [sys.executable, "-m", "deployments.cli", *words[1:]]
    return words


def run_lines(lines: list[str], env: dict[str, str], port: str) -> list[subprocess.CompletedProcess]:
    """Run the lines like a shell; the finished foreground commands in order."""
    finished, background = [], []
    try:
        for line in lines:
            words = shlex.split(line.replace(README_PORT, port), comments=True)
            if words[0] == "export":
                env.update(word.split("=", 1) for word in words[1:])
            elif words[-1] == "&":
                background.append(subprocess.Popen(argv_of(words[:-1]), cwd=ROOT, env=dict(env), start_new_session=True,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_until_answers(f"http://127.0.0.1:{port}/health", background[-1], timeout_s=START_TIMEOUT_S,
                                   name="the background command")
            else:
                finished.append(subprocess.run(argv_of(words), cwd=ROOT, env=dict(env), capture_output=True, text=True,
                                               timeout=RUN_TIMEOUT_S))
    finally:
        for process in background:
            stop_process_group(process)
    return finished


def base_env(server: PrefectServer, data_dir: Path) -> dict[str, str]:
    """A shell's environment with no cloud credentials set, the lake in a temp dir, the session's Prefect server."""
    env = server.client_env(LOADTEST_DATA_DIR=str(data_dir))
    for name in (*CREDENTIAL_VARIABLES, "LOADTEST_CONFIG", "LIVEPEER_ORCH_URL", "SCOPE_SIM_FLEET_FILE"):
        env.pop(name, None)
    return env


def test_the_readme_quick_start_passes_as_written(prefect_server, tmp_path):
    lines = quick_start_lines()
    assert any(line.startswith("export ") for line in lines) and lines[-1].startswith("uv run loadtest run ")
    results = run_lines(lines, base_env(prefect_server, tmp_path / "data"), str(free_loopback_port()))
    run = results[-1]
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "longlive_t2v_1m: PASSED" in run.stdout and "Traceback" not in output


def test_without_credentials_the_failure_names_what_to_set(prefect_server, tmp_path):
    lines = [line for line in quick_start_lines() if not line.startswith("export ")]
    run = run_lines(lines, base_env(prefect_server, tmp_path / "data"), str(free_loopback_port()))[-1]
    assert run.returncode == 1, (run.stdout + run.stderr)[-3000:]
    assert "harness/connect" in run.stdout
    fix = next(line for line in run.stdout.splitlines() if line.strip().startswith("to fix:"))
    for name in (*CREDENTIAL_VARIABLES, "cloud.app_id", str(ROOT / "config" / "default.yaml")):
        assert name in fix, fix
