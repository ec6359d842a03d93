"""The Grafana dashboard and its provisioning, checked the way Grafana would read them.

No Grafana server can run here, so the JSON is validated structurally: the issue's rows, unique
panel ids, a layout that fits, datasource references that resolve to the provisioned datasource,
an expression in every target, only metrics.md's families (as analytics/metrics.py declares
them), no counter functions, PromQL that promtool accepts, and template variables that every
panel whose series carry the variable's label actually uses. What the queries return is proven
against a real Prometheus in tests/integration/test_dashboard_queries.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dashboards.dashboard_model import (
    ALERT_RULES, ALL, DASHBOARD_PROVISIONING, DATASOURCE_PROVISIONING, FAMILY_LABELS, PROMETHEUS_CONFIG,
    all_panels, functions_used, interpolate, iter_variable_queries, load_dashboard, load_yaml, matcher_labels,
    metric_names, panels_by_row, referenced_variables, selectors, targets, variable_formats, variables,
)

ROWS = ("Overview", "Per-Orchestrator", "Per-Pipeline", "Latency Trends", "Error Breakdown", "Budget & Coverage")
GRID_WIDTH = 24
# A series label -> the template variable that selects it. Scenario names embed the mode
# (<pipeline stem>_<mode>_<duration>), so scenario-labelled families are filtered by $mode.
LABEL_VARIABLES = {"orchestrator": "orchestrator", "pipeline": "pipeline", "mode": "mode", "scenario": "mode",
                   "window": "window"}
# Families are gauges already windowed by label: counter functions would be wrong, and a constant
# filler (vector, absent) would let a panel "return data" that the lake never produced.
FORBIDDEN_FUNCTIONS = {"rate", "irate", "increase", "resets", "vector", "absent", "absent_over_time"}
ROW_VARIABLES = {"Per-Orchestrator": "orchestrator", "Per-Pipeline": "pipeline"}
PROMTOOL = Path("/usr/bin/promtool")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    """The dashboard JSON."""
    return load_dashboard()


@pytest.fixture(scope="module")
def datasource_uids() -> dict[str, str]:
    """Provisioned datasource uid -> type."""
    provisioned = load_yaml(DATASOURCE_PROVISIONING)
    return {d["uid"]: d["type"] for d in provisioned["datasources"]}


def _all_selection(dashboard: dict) -> dict:
    """Every variable at "All" (or its current value when it has no All)."""
    selection = {}
    for name, variable in variables(dashboard).items():
        selection[name] = ALL if variable.get("includeAll") else variable["current"]["value"]
    return selection


def test_the_rows_are_the_issues_in_order(dashboard):
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert tuple(rows) == ROWS
    assert dashboard["panels"][0]["type"] == "row", "every panel sits in a row"
    assert all(panels_by_row(dashboard)[row] for row in ROWS), "a row without panels"


def test_panel_ids_are_unique(dashboard):
    ids = [p.get("id") for p in all_panels(dashboard)]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_panels_fit_the_grid_without_overlapping(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and 0 <= grid["x"] and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_datasource_references_resolve_to_the_provisioned_datasource(dashboard, datasource_uids):
    references = [(f"panel {p['title']}", p.get("datasource")) for p in all_panels(dashboard) if p["type"] != "row"]
    references += [(f"target {t.name}", t.target.get("datasource")) for t in targets(dashboard)]
    references += [(f"variable {v['name']}", v.get("datasource")) for v in variables(dashboard).values()
                   if v["type"] == "query"]
    assert references
    for where, reference in references:
        assert isinstance(reference, dict), f"{where}: no datasource reference"
        assert reference.get("uid") in datasource_uids, f"{where}: unknown datasource {reference}"
        assert reference.get("type") == datasource_uids[reference["uid"]], f"{where}: wrong type {reference}"


def test_every_panel_has_targets_and_every_target_an_expression(dashboard):
    for row, panels in panels_by_row(dashboard).items():
        for panel in panels:
            ref_ids = [t.get("refId") for t in panel.get("targets", [])]
            assert ref_ids, f"{row} / {panel['title']}: no targets"
            assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), f"{panel['title']}: refIds {ref_ids}"
    for target in targets(dashboard):
        assert target.expr.strip(), f"{target.name}: empty expression"


def test_expressions_use_only_the_families_of_metrics_md(dashboard):
    for target in targets(dashboard):
        names = metric_names(target.expr)
        assert names, f"{target.name}: selects no metric"
        assert names <= FAMILY_LABELS.keys(), f"{target.name}: not in metrics.md: {names - FAMILY_LABELS.keys()}"
        assert "__name__" not in target.expr, f"{target.name}: selects metrics by a name pattern"
    for variable, selector, label in iter_variable_queries(dashboard):
        names = metric_names(selector)
        assert names and names <= FAMILY_LABELS.keys(), f"variable {variable['name']}: {names}"
        assert all(label in FAMILY_LABELS[n] for n in names), f"variable {variable['name']}: no label {label}"


def test_no_counter_functions_and_no_constant_fillers(dashboard):
    for target in targets(dashboard):
        used = functions_used(target.expr)
        assert not used & FORBIDDEN_FUNCTIONS, f"{target.name}: uses {used & FORBIDDEN_FUNCTIONS}"


def test_every_template_variable_is_used_by_a_panel(dashboard):
    used = set().union(*(referenced_variables(t.expr) for t in targets(dashboard)))
    assert set(variables(dashboard)) <= used, f"unused variables: {set(variables(dashboard)) - used}"
    assert used <= set(variables(dashboard)), f"undeclared variables: {used - set(variables(dashboard))}"
    for target in targets(dashboard):
        assert not variable_formats(target.expr), f"{target.name}: explicit formats are not emulated by the proof"


def test_each_selector_is_filtered_by_the_variables_of_its_labels(dashboard):
    """A family with an orchestrator/pipeline/mode/scenario label follows the variable; a windowed one picks a window."""
    for target in targets(dashboard):
        for metric, block in selectors(target.expr):
            matchers = matcher_labels(block)
            for label in FAMILY_LABELS.get(metric, ()):  # unknown names fail the metrics.md test
                variable = LABEL_VARIABLES.get(label)
                if variable is None:
                    continue
                assert label in matchers, f"{target.name}: {metric} not filtered on {label}"
                if label == "window":
                    assert matchers[label] in ("$window", "24h", "7d"), f"{target.name}: window {matchers[label]}"
                else:
                    assert variable in referenced_variables(matchers[label]), f"{target.name}: {metric}{block}"


def test_per_orchestrator_and_per_pipeline_rows_follow_their_variable(dashboard):
    rows = panels_by_row(dashboard)
    for row, variable in ROW_VARIABLES.items():
        for panel in rows[row]:
            for target in panel["targets"]:
                assert variable in referenced_variables(target["expr"]), f"{row} / {panel['title']}: no ${variable}"


def test_latency_trends_show_7_day_p50_p95_with_a_drift_overlay(dashboard):
    trends = [p for p in panels_by_row(dashboard)["Latency Trends"] if p["type"] == "timeseries"]
    families = set()
    for panel in trends:
        quantiles, drift_refs = set(), []
        for target in panel["targets"]:
            for metric, block in selectors(target["expr"]):
                matchers = matcher_labels(block)
                if metric.endswith("drift_ratio"):
                    drift_refs.append(target["refId"])
                else:
                    families.add(metric)
                    assert matchers.get("window") == "7d", f"{panel['title']}: {block}"
                    quantiles.add(matchers.get("quantile"))
        assert quantiles == {"0.5", "0.95"}, panel["title"]
        assert len(drift_refs) == 1, panel["title"]
        overlay = [o for o in panel["fieldConfig"]["overrides"]
                   if o["matcher"] == {"id": "byFrameRefID", "options": drift_refs[0]}]
        properties = {p["id"]: p["value"] for o in overlay for p in o["properties"]}
        assert properties.get("custom.axisPlacement") == "right", panel["title"]
    assert families == {"scope_loadtest_first_frame_seconds", "scope_loadtest_pipeline_load_seconds",
                        "scope_loadtest_connect_seconds", "scope_loadtest_steady_fps"}


def test_variables_are_multi_value_with_an_all_that_matches_everything(dashboard):
    found = variables(dashboard)
    assert {"orchestrator", "pipeline", "mode"} <= set(found)
    for name in ("orchestrator", "pipeline", "mode"):
        assert found[name]["multi"] and found[name]["includeAll"] and found[name]["allValue"] == ".*", name
    assert [o["value"] for o in found["window"]["options"]] == ["24h", "7d"]


def test_every_expression_is_promql_that_promtool_accepts(dashboard, tmp_path):
    """Interpolated with every variable at All and at one value, written as recording rules, checked."""
    assert PROMTOOL.exists(), "promtool missing: install the Debian package prometheus (make test does)"
    declared = variables(dashboard)
    selections = [_all_selection(dashboard), {name: "x+y.z" for name in declared} | {"window": "7d"}]
    exprs = [interpolate(t.expr, declared, selection) for selection in selections for t in targets(dashboard)]
    rules = [{"record": f"dashboard:check_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr


def test_provisioning_points_grafana_at_the_dashboard_and_the_datasource(dashboard, datasource_uids):
    datasources = load_yaml(DATASOURCE_PROVISIONING)
    assert datasources["apiVersion"] == 1 and list(datasource_uids.values()) == ["prometheus"]
    assert datasources["datasources"][0]["url"].startswith("http")
    providers = load_yaml(DASHBOARD_PROVISIONING)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)


def test_prometheus_scrapes_the_gateway_with_honor_labels_and_loads_the_alert_rules():
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert [(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]] == [ALERT_RULES.resolve()]
