"""Reading the Grafana dashboard the way Grafana does: rows, panels, targets, variables and PromQL names.

Shared by the structural tests and the proof against a real Prometheus. `interpolate` follows the
Prometheus datasource of Grafana: a multi-value or include-all variable is regex-escaped (one value)
or joined as `(a|b)`, "All" becomes the variable's custom all value as is, any other variable is
inserted as it is (its single quotes and backslashes escaped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analytics.metrics import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "grafana" / "scope-loadtest.json"
DATASOURCE_PROVISIONING = ROOT / "dashboards" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVISIONING = ROOT / "dashboards" / "grafana" / "provisioning" / "dashboards" / "scope-loadtest.yaml"
ALERT_RULES = ROOT / "dashboards" / "prometheus" / "alerts.yml"
ALERT_RULE_TESTS = ROOT / "dashboards" / "prometheus" / "alerts.test.yml"
PROMETHEUS_CONFIG = ROOT / "deployments" / "prometheus.yml"

# metrics.md, as analytics/metrics.py exposes it: full family name -> its label names.
FAMILY_LABELS: dict[str, tuple[str, ...]] = {spec.full_name: spec.labels for spec in FAMILIES}
ALL = "$__all"  # Grafana's value for "All"

# $var, ${var}, ${var:format}, [[var]]
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?")
_SELECTOR = re.compile(r'(?<![\w.])(scope_loadtest_\w+)\s*(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})?')
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                      "group_left", "group_right", "atan2", "inf", "nan", "Inf", "NaN"})
PROMQL_FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg", "avg_over_time",
    "bottomk", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count", "count_over_time",
    "count_values", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp",
    "floor", "group", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max", "max_over_time", "min", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile", "quantile_over_time", "rad",
    "rate", "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev",
    "stddev_over_time", "stdvar", "stdvar_over_time", "sum", "sum_over_time", "tan", "tanh", "time", "timestamp",
    "topk", "vector", "year",
})


@dataclass(frozen=True)
class Target:
    """One query of one panel, with the row the panel sits in."""

    row: str
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def expr(self) -> str:
        """The PromQL expression ('' when missing)."""
        return str(self.target.get("expr") or "")

    @property
    def name(self) -> str:
        """`row / panel title / refId`, for messages and test ids."""
        return f"{self.row} / {self.panel.get('title')} / {self.target.get('refId')}"

    @property
    def instant(self) -> bool:
        """Grafana asks Prometheus for one instant (else a range)."""
        return bool(self.target.get("instant")) and not self.target.get("range")


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    """One YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def panels_by_row(dashboard: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Row title -> its panels: those after the row in the list, and those nested in a collapsed row."""
    rows: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            current = str(panel.get("title"))
            rows.setdefault(current, []).extend(panel.get("panels", []))
        else:
            rows.setdefault(current, []).append(panel)
    return rows


def all_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows and the panels nested in rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def targets(dashboard: Mapping[str, Any]) -> list[Target]:
    """Every query of every non-row panel."""
    return [Target(row, panel, target) for row, panels in panels_by_row(dashboard).items()
            for panel in panels for target in panel.get("targets", [])]


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Template variables by name."""
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def referenced_variables(text: str) -> set[str]:
    """Names of the variables a string refers to, in any of Grafana's syntaxes."""
    return {next(g for g in (m.group(1), m.group(2), m.group(4)) if g) for m in _VARIABLE.finditer(text)}


def variable_formats(text: str) -> set[str]:
    """Explicit `${var:format}` formats used in a string."""
    return {m.group(3) for m in _VARIABLE.finditer(text) if m.group(3)}


def _regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: regex metacharacters escaped inside a PromQL string."""
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _plain_escape(value: str) -> str:
    """Grafana's prometheusRegularEscape."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def format_value(variable: Mapping[str, Any], selected: str | Sequence[str]) -> str:
    """How Grafana's Prometheus datasource writes a variable's selection into a query."""
    values = [selected] if isinstance(selected, str) else list(selected)
    if not (variable.get("multi") or variable.get("includeAll")):
        return _plain_escape(values[0])
    if values == [ALL]:
        if variable.get("allValue") is None:
            raise ValueError(f"variable {variable['name']} has no custom all value")
        return str(variable["allValue"])
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(text: str, dashboard_variables: Mapping[str, Mapping[str, Any]],
                selection: Mapping[str, str | Sequence[str]]) -> str:
    """`text` with every variable replaced by its selection; KeyError for a variable not selected."""
    def replace(match: re.Match[str]) -> str:
        name = next(g for g in (match.group(1), match.group(2), match.group(4)) if g)
        return format_value(dashboard_variables[name], selection[name])

    return _VARIABLE.sub(replace, text)


def _skeleton(expr: str) -> str:
    """The expression without strings, label matchers, ranges, grouping clauses and numbers."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return _NUMBER.sub(" ", text)


def functions_used(expr: str) -> set[str]:
    """Names called as functions (or aggregations) in a PromQL expression."""
    return {m.group(1) for m in _IDENTIFIER.finditer(_skeleton(expr)) if m.group(2)}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers that are neither functions nor keywords)."""
    return {m.group(1) for m in _IDENTIFIER.finditer(_skeleton(expr))
            if not m.group(2) and m.group(1) not in KEYWORDS}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matcher block or '') of every scope_loadtest_* selector in the expression."""
    return [(m.group(1), m.group(2) or "") for m in _SELECTOR.finditer(expr)]


def matcher_labels(block: str) -> dict[str, str]:
    """Label name -> value pattern of a `{...}` matcher block (the operator dropped)."""
    return {m.group(1): m.group(3) for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', block)}


def iter_variable_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(variable, selector, label) of every `label_values(selector, label)` query variable."""
    for variable in variables(dashboard).values():
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text)
        if match is None:
            raise ValueError(f"variable {variable['name']}: not a label_values(selector, label) query: {text!r}")
        yield variable, match.group(1), match.group(2)
