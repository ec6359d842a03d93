"""The server's edge: its start line and its arguments."""

from __future__ import annotations

import argparse

import pytest

from api.server import port_number, startup_line


def test_the_start_line_says_whether_posting_is_enabled_and_names_the_variable():
    assert startup_line("http://h:1", "LB_SECRET", True).endswith("POST /api/post_stats enabled")
    disabled = startup_line("http://h:1", "LB_SECRET", False)
    assert disabled.startswith("leaderboard API on http://h:1") and disabled.endswith("disabled (set LB_SECRET)")


@pytest.mark.parametrize("text", ["-1", "65536", "http", "8.5", ""])
def test_a_port_is_0_to_65535(text):
    with pytest.raises(argparse.ArgumentTypeError):
        port_number(text)
    assert port_number("0") == 0 and port_number("8088") == 8088
