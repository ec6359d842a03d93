"""The alert rules and the Prometheus config, checked and unit-tested by promtool (offline).

`promtool test rules` runs dashboards/prometheus/alerts.test.yml: each alert fires on a synthetic
unhealthy series and stays silent on a healthy one beside it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.dashboards.dashboard_model import (
    ALERT_RULE_TESTS, ALERT_RULES, FAMILY_LABELS, PROMETHEUS_CONFIG, load_yaml, metric_names,
)

PROMTOOL = Path("/usr/bin/promtool")
ALERTS = {"ScopeLoadtestRegression", "ScopeLoadtestLowPassRatio", "ScopeLoadtestStalePush", "ScopeLoadtestPushMissing"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; a missing binary is a failure that says how to install it."""
    assert PROMTOOL.exists(), "promtool missing: install the Debian package prometheus (make test does)"
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    """Every rule of the alert rule file."""
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests_prove_each_alert_fires_and_stays_silent():
    result = promtool("test", "rules", str(ALERT_RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_unit_tests_cover_every_alert():
    tested = {case["alertname"] for test in load_yaml(ALERT_RULE_TESTS)["tests"] for case in test["alert_rule_test"]}
    assert {rule["alert"] for rule in rules()} == ALERTS == tested


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rules_read_only_metrics_md_families(rule):
    names = metric_names(rule["expr"])
    assert names and names <= FAMILY_LABELS.keys(), names - FAMILY_LABELS.keys()


def test_promtool_checks_the_prometheus_config_and_the_rules_it_loads():
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout + result.stderr
