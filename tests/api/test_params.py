"""The read endpoints' query parameters: the reference's rules and our hardening, as pure units."""

from __future__ import annotations

import datetime as dt

import pytest

from api.params import EPOCH, MAX_PARAM_CHARS, ParamError, stats_query, unix_time

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def parse(orchestrator_required: bool = False, **params: str):
    """The StatsQuery of keyword parameters, at NOW with a 24 h window."""
    return stats_query(params.items(), now=NOW, window_hours=24, orchestrator_required=orchestrator_required)


def refusal(**params: str) -> str:
    """The message of the ParamError these parameters raise."""
    with pytest.raises(ParamError) as caught:
        parse(**params)
    return str(caught.value)


def test_no_window_is_the_last_window_hours():
    query = parse()
    assert (query.since, query.until) == (NOW - dt.timedelta(hours=24), NOW)


def test_until_alone_means_everything_before_it():
    query = parse(until="1700000000")
    assert query.since == EPOCH
    assert query.until == dt.datetime.fromtimestamp(1700000000, tz=dt.timezone.utc)


def test_since_alone_runs_until_now_and_fractions_are_kept():
    query = parse(since="1700000000.25")
    assert query.since == dt.datetime.fromtimestamp(1700000000.25, tz=dt.timezone.utc)
    assert query.until == NOW


def test_orchestrator_is_lower_cased_and_region_upper_cased():
    query = parse(orchestrator="0xABCdef", region="fra")
    assert (query.orchestrator, query.region) == ("0xabcdef", "FRA")


def test_empty_values_are_absent_and_the_first_repeated_value_wins():
    query = stats_query([("region", ""), ("region", "lax"), ("region", "fra"), ("model", "")],
                        now=NOW, window_hours=24)
    assert query.region == "LAX" and query.model is None


def test_model_and_pipeline_come_together():
    assert refusal(model="m") == "pipeline required"
    assert refusal(pipeline="p") == "model required"
    query = parse(model="m", pipeline="p")
    assert (query.model, query.pipeline, query.kind) == ("m", "p", "ai")


@pytest.mark.parametrize("job_type", ["ai", "transcoding"])
def test_job_type_is_ai_or_transcoding(job_type):
    assert parse(job_type=job_type).kind == job_type


@pytest.mark.parametrize("job_type", ["AI", "video", "' OR 1=1 --"])
def test_any_other_job_type_is_refused_by_name(job_type):
    assert "job_type" in refusal(job_type=job_type)


def test_raw_stats_requires_the_orchestrator():
    with pytest.raises(ParamError, match="orchestrator"):
        parse(orchestrator_required=True)
    assert parse(orchestrator_required=True, orchestrator="0xA").orchestrator == "0xa"


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "infinity", "-1", "abc", "1e999", "0x10", "1_000",
                                  " 1", "1e300", "1,5", "' OR 1=1 --"])
def test_bad_times_are_refused_naming_the_parameter(name, text):
    assert refusal(**{name: text}).startswith(name)


def test_since_after_until_is_refused():
    assert "since" in refusal(since="200", until="100")


def test_a_window_starting_in_the_future_is_refused():
    assert "since" in refusal(since=str(NOW.timestamp() + 60))


def test_unix_time_accepts_decimal_forms():
    assert unix_time("since", "0") == EPOCH
    assert unix_time("since", "1.5e3") == EPOCH + dt.timedelta(seconds=1500)


@pytest.mark.parametrize("name", ["orchestrator", "region", "since", "until", "model", "pipeline", "job_type"])
def test_over_long_and_control_characters_are_refused_in_every_parameter(name):
    assert refusal(**{name: "a" * (MAX_PARAM_CHARS + 1)}).startswith(name)
    assert refusal(**{name: "a\x00b"}).startswith(name)


def test_unknown_parameters_are_ignored():
    assert parse(colour="x" * 10_000, limit="\x00") == parse()
