"""refused_by_preflight: which (instance, scenario) pairs dispatch leaves alone, read from the lake's runs."""

from __future__ import annotations

import datetime as dt

import polars as pl

from config.settings import ScopeInstanceConfig, Settings
from tasks.fleet.dispatching import PREFLIGHT_MEMORY, refused_by_preflight

NOW = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
SETTINGS = Settings(instances=[ScopeInstanceConfig(name="scope-a", url="http://127.0.0.1:8000")])


def runs(*rows: tuple[str, str, list[str], dt.datetime]) -> pl.DataFrame:
    return pl.DataFrame([dict(scope_instance=i, scenario=s, checks_failed=c, started_at=t) for i, s, c, t in rows],
                        schema={"scope_instance": pl.String, "scenario": pl.String,
                                "checks_failed": pl.List(pl.String), "started_at": pl.Datetime("us", "UTC")})


def test_a_preflight_refusal_by_name_or_url_is_remembered_for_a_while():
    recent = NOW - dt.timedelta(minutes=5)
    found = refused_by_preflight(runs(
        ("scope-a", "ltx2_t2v_1m", ["preflight"], recent),
        ("http://127.0.0.1:8000", "gray_t2v_1m", ["preflight"], recent),  # an ad-hoc run names the URL
        ("scope-a", "longlive_t2v_1m", ["stall"], recent),  # an orchestrator's failure is no refusal
        ("scope-a", "old_t2v_1m", ["preflight"], NOW - PREFLIGHT_MEMORY - dt.timedelta(minutes=1)),
        ("elsewhere", "x_t2v_1m", ["preflight"], recent),  # not an instance of this config
    ), SETTINGS, now=NOW)
    assert found == {("scope-a", "ltx2_t2v_1m"), ("scope-a", "gray_t2v_1m")}
