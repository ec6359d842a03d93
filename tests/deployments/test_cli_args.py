"""The argument types of the `loadtest` command line: what each accepts, normalises and refuses."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from deployments.cli_args import (
    UsageError, check_duration, check_scenario, orchestrator_address, positive_float, positive_int, scope_url, utc_day,
)

ADDRESS = "0x" + "Ab" * 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [("http://127.0.0.1:8000", "http://127.0.0.1:8000"), ("https://scope.example/", "https://scope.example"),
     (" http://[::1]:8000 ", "http://[::1]:8000")],
)
def test_scope_url_accepts_http_urls_with_a_host(text, expected):
    assert scope_url(text) == expected


@pytest.mark.parametrize("text", ["notaurl", "127.0.0.1:8000", "ftp://host", "http://", "http://:8000", "http://h:x"])
def test_scope_url_refuses_anything_else(text):
    with pytest.raises(argparse.ArgumentTypeError):
        scope_url(text)


def test_an_orchestrator_address_is_stored_lowercased():
    assert orchestrator_address(ADDRESS) == ADDRESS.lower()


@pytest.mark.parametrize("text", ["0xabc", ADDRESS + "0", ADDRESS[2:], "0x" + "g" * 40, "scope-1"])
def test_an_orchestrator_must_be_0x_and_40_hex_digits(text):
    with pytest.raises(argparse.ArgumentTypeError, match="40 hex digits"):
        orchestrator_address(text)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon"])
def test_positive_float_refuses_non_positive_or_non_finite(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


def test_positive_numbers_and_days_parse():
    assert positive_float("2.5") == 2.5 and positive_int("3") == 3
    assert utc_day("2026-12-05") == dt.date(2026, 12, 5)
    for bad in ("0", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="YYYY-MM-DD"):
        utc_day("05/12/2026")


def test_a_duration_over_the_configured_cap_names_the_key(demo_settings):
    cap_s = demo_settings.budget.max_run_duration_mins * 60
    check_duration(demo_settings, cap_s)
    check_duration(demo_settings, None)
    with pytest.raises(UsageError, match=r"--duration-s: .*budget\.max_run_duration_mins"):
        check_duration(demo_settings, cap_s + 1)


def test_an_unknown_scenario_is_said_in_the_users_words(demo_settings):
    name = demo_settings.expand_scenarios()[0].name
    check_scenario(demo_settings, name)
    with pytest.raises(UsageError) as raised:
        check_scenario(demo_settings, name + "x")
    assert str(raised.value).startswith(f"--scenario: unknown scenario '{name}x' (did you mean '{name}'")
    assert "loadtest scenarios" in str(raised.value)
