"""Signals in a `loadtest` command: the first cancels the command's task with its name, later ones change nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from deployments.cli_runtime import Stop, run_with_signals

WAIT_S = 30.0  # bounds every wait; the signal ends each test long before


def test_the_first_signal_cancels_the_command_which_winds_down_and_chooses_its_exit_code():
    seen: list[str] = []

    async def command(stop: Stop) -> int:
        stop.bind(on_signal=lambda: seen.append("hook"))
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(WAIT_S)
        except asyncio.CancelledError as cancelled:
            seen.append(str(cancelled.args[0] if cancelled.args else ""))
            os.kill(os.getpid(), signal.SIGINT)  # a second signal while winding down: ignored
            await asyncio.sleep(0.05)
            return 130
        return 0

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert run_with_signals(command, hard_stop_s=WAIT_S) == 130
    assert seen == ["hook", "SIGTERM"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


def test_without_a_signal_the_command_runs_to_its_own_end_off_the_main_thread():
    async def command(stop: Stop) -> int:
        stop.bind()
        return 0 if threading.current_thread() is not threading.main_thread() else 1

    assert run_with_signals(command, hard_stop_s=WAIT_S) == 0


def test_a_command_that_will_not_wind_down_is_given_up_after_the_hard_stop(capsys):
    release = threading.Event()

    async def command(stop: Stop) -> int:
        stop.bind()
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(WAIT_S)
        except asyncio.CancelledError:
            await asyncio.to_thread(release.wait, WAIT_S)  # a cleanup that hangs past the bound
        return 0

    try:
        assert run_with_signals(command, hard_stop_s=0.5) == 130
    finally:
        release.set()
    assert "cleanup did not finish within" in capsys.readouterr().err


def test_an_error_of_the_command_reaches_the_caller():
    async def command(stop: Stop) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_with_signals(command, hard_stop_s=WAIT_S)
