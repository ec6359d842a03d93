"""Run identity: the prompt switch schedule, run ids, and a run's shortened scenario."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest

from analytics.lake import Lake
from tasks.session.run_record import MIN_SWITCH_LEAD_S, RunIdentity, monitor_limits, prompt_switch_times
from tasks.session.target import RunTarget, new_run_id, utc_now
from tests.conftest import with_thresholds

DURATIONS_S = (2.0, 4.0, 8.0, 12.0, 13.0, 15.0, 20.0, 45.0, 60.0, 300.0, 900.0)
INTERVALS_S = (5.0, 30.0, 60.0)
RESPONSES_S = (2.0, 10.0)
GRID = list(itertools.product(DURATIONS_S, INTERVALS_S, RESPONSES_S))


@pytest.mark.parametrize(("duration_s", "interval_s", "response_s"), GRID)
def test_every_run_switches_at_least_once_inside_the_stream(duration_s, interval_s, response_s):
    times = prompt_switch_times(duration_s, interval_s, response_s)
    assert len(times) >= 1
    assert all(0 < t < duration_s for t in times)
    assert times == sorted(times)


@pytest.mark.parametrize(("duration_s", "interval_s", "response_s"), GRID)
def test_switches_are_spaced_by_the_interval(duration_s, interval_s, response_s):
    times = prompt_switch_times(duration_s, interval_s, response_s)
    if len(times) > 1:
        assert times[0] == pytest.approx(interval_s)
        assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([interval_s] * (len(times) - 1))
    if times[0] == interval_s:  # the regular schedule: it stops when the next window would not fit
        assert times[-1] + interval_s + response_s > duration_s
    else:  # the one extra switch, only when no regular switch fits
        assert len(times) == 1 and interval_s + response_s > duration_s


@pytest.mark.parametrize(("duration_s", "interval_s", "response_s"), GRID)
def test_the_response_window_stays_inside_the_stream_when_it_can(duration_s, interval_s, response_s):
    times = prompt_switch_times(duration_s, interval_s, response_s)
    if duration_s >= MIN_SWITCH_LEAD_S + response_s:
        assert all(t + response_s <= duration_s + 1e-9 for t in times)
        assert times[0] >= MIN_SWITCH_LEAD_S  # a few frames before the switch measure the noise


def test_the_demo_schedule():
    """Demo thresholds: a switch every 5 s, 10 s to respond."""
    assert prompt_switch_times(15.0, 5.0, 10.0) == [5.0]
    assert prompt_switch_times(30.0, 5.0, 10.0) == [5.0, 10.0, 15.0, 20.0]
    assert prompt_switch_times(300.0, 30.0, 10.0) == [30.0 * k for k in range(1, 10)]


def test_run_ids_sort_by_start_time_and_are_unique():
    t0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    ids = [new_run_id(t0 + dt.timedelta(seconds=s)) for s in (0, 0, 1, 60, 3600)]
    assert len(set(ids)) == len(ids)
    assert max(ids[:2]) < ids[2] < ids[3] < ids[4]  # the same second sorts either way
    assert all(re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{8}", i) for i in ids)
    assert ids[0].startswith("20250301T120000-")


def test_a_shortened_run_keeps_its_scenario_name(demo_settings, tmp_path):
    scenario = demo_settings.scenario("longlive_t2v_15s")
    run = RunIdentity.new(scenario=scenario, target=RunTarget(scope_url="http://127.0.0.1:9"), lake=Lake(tmp_path),
                          duration_s=4.0, clock=utc_now)
    assert run.scenario.name == scenario.name and run.scenario.duration_class == scenario.duration_class
    assert run.duration_s == 4.0
    assert run.scenario.hard_cap_s == pytest.approx(scenario.hard_cap_s - scenario.duration_s + 4.0)
    assert sorted(run.prompts) == sorted(scenario.prompts)  # rotated, none lost
    thresholds = demo_settings.thresholds
    expected = prompt_switch_times(4.0, thresholds.prompt_switch_interval_s, thresholds.prompt_response_s)
    assert run.switch_schedule(thresholds) == expected and len(expected) == 1


def test_a_single_prompt_run_never_switches(demo_settings, tmp_path):
    settings = with_thresholds(demo_settings, prompt_switch_interval_s=1.0)
    scenario = settings.scenario("longlive_t2v_15s").model_copy(update={"prompts": ("a lone prompt",)})
    run = RunIdentity.new(scenario=scenario, target=RunTarget(scope_url="http://127.0.0.1:9"), lake=Lake(tmp_path),
                          clock=utc_now)
    assert run.switch_schedule(settings.thresholds) == []


def test_the_fps_bar_is_relative_to_the_pipelines_expected_fps(demo_settings):
    """min_fps is a floor; a 24-fps chain must reach min_fps_ratio x 24, not just 6."""
    thresholds = demo_settings.thresholds
    chain = next(s for s in demo_settings.expand_scenarios() if s.expected_fps >= 20)
    single = demo_settings.scenario("longlive_t2v_15s")
    assert monitor_limits(demo_settings, chain, None).min_fps == thresholds.min_fps_ratio * chain.expected_fps
    assert monitor_limits(demo_settings, single, None).min_fps == max(
        thresholds.min_fps, thresholds.min_fps_ratio * single.expected_fps)
