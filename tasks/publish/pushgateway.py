"""Publishing the analysis: gauges to the Pushgateway (or a file) and Prefect artifacts.

The push is a `PUT` (`push_to_gateway`) under one stable grouping key
`{job="scope_loadtest", instance=<the lake's analyzer id>}`: it replaces every series this harness pushed
before, so a family that lost a label set loses its series too, and no other pusher's group is
touched. Publishing never fails the analysis (the lake already holds the figures): a failed push
is retried with back-off, logged, and reported in a `PublishResult`.

Environment:
    PUSHGATEWAY_URL                               the gateway, e.g. http://127.0.0.1:9091; unset: write
                                                  the exposition text to <data dir>/metrics.prom instead
    PUSHGATEWAY_USERNAME, PUSHGATEWAY_PASSWORD    optional basic auth (user:password@ in the URL works too)
    LOADTEST_HARNESS_ID                           the `instance` label (default: the lake's analyzer id,
                                                  tasks/publish/analyzer.py: the host name for a local lake)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl
from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway

from analytics.drift import drift_report_markdown
from analytics.metrics import Analysis, exposition_text
from analytics.scores import evidence_label
from tasks.publish.analyzer import analyzer_id

log = logging.getLogger(__name__)

JOB = "scope_loadtest"
URL_ENV, USERNAME_ENV, PASSWORD_ENV, HARNESS_ID_ENV = (
    "PUSHGATEWAY_URL", "PUSHGATEWAY_USERNAME", "PUSHGATEWAY_PASSWORD", "LOADTEST_HARNESS_ID")
DEFAULT_PUSH_TIMEOUT_S = 10.0
DEFAULT_BACKOFF_S = (1.0, 2.0, 4.0)  # waits before the 2nd, 3rd, ... attempt: 4 attempts at most
METRICS_FILE_NAME = "metrics.prom"
SCORES_ARTIFACT_KEY = "orchestrator-scores"
DRIFT_ARTIFACT_KEY = "drift-report"


def harness_id(environ: Mapping[str, str] | None = None, *, lake_root: str | None = None) -> str:
    """The `instance` label: $LOADTEST_HARNESS_ID, else the lake's analyzer (tasks/publish/analyzer.py)."""
    env = os.environ if environ is None else environ
    if lake_root is not None:
        return analyzer_id(lake_root, env)
    return env.get(HARNESS_ID_ENV) or socket.gethostname()


@dataclass(frozen=True)
class PushgatewayConfig:
    """Where and how to push; `url` None means: write the metrics file instead."""

    url: str | None
    instance: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown in a repr or log
    timeout_s: float = DEFAULT_PUSH_TIMEOUT_S
    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S

    def __post_init__(self) -> None:
        # urllib cannot send credentials written into a URL: move them to basic auth.
        if self.url is None:
            return
        parts = urllib.parse.urlsplit(self.url)
        if parts.username is None:
            return
        object.__setattr__(self, "url", urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])))
        if self.username is None:
            object.__setattr__(self, "username", urllib.parse.unquote(parts.username))
            object.__setattr__(self, "password", urllib.parse.unquote(parts.password or ""))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, lake_root: str | None = None) -> PushgatewayConfig:
        """The gateway settings from the environment (see the module docstring); `lake_root` names the analyzer."""
        env = os.environ if environ is None else environ
        return cls(url=env.get(URL_ENV) or None, instance=harness_id(env, lake_root=lake_root),
                   username=env.get(USERNAME_ENV) or None, password=env.get(PASSWORD_ENV) or None)

    @property
    def grouping_key(self) -> dict[str, str]:
        """The full grouping key, job included."""
        return {"job": JOB, "instance": self.instance}

    def handler(self) -> Callable[..., Callable[[], None]]:
        """The prometheus_client request handler: basic auth when a username is set."""
        if self.username is None:
            return default_handler

        def with_auth(url, method, timeout, headers, data):  # noqa: ANN001 - prometheus_client's signature
            return basic_auth_handler(url, method, timeout, headers, data, self.username, self.password)

        return with_auth


@dataclass(frozen=True)
class PublishResult:
    """What publishing did: pushed (or wrote the file), how many attempts, the last error."""

    target: Literal["pushgateway", "file"]
    ok: bool
    attempts: int
    location: str  # the gateway URL or the file path
    grouping_key: dict[str, str]
    error: str | None = None
    bytes_sent: int = 0


def _retryable(error: Exception) -> bool:
    """A client error (4xx but 408/429) is the payload's fault: repeating it cannot help."""
    if isinstance(error, urllib.error.HTTPError):
        return not (400 <= error.code < 500) or error.code in (408, 429)
    return True


def _describe(error: Exception) -> str:
    """One line for the log and the result, without credentials (they never reach an error text)."""
    return f"{type(error).__name__}: {error}"


def push_metrics(registry: CollectorRegistry, config: PushgatewayConfig, *,
                 sleep: Callable[[float], None] = time.sleep) -> PublishResult:
    """PUT the registry under the grouping key, retrying with back-off; never raises."""
    where, size, attempts, error = config.url or "", len(exposition_text(registry)), 0, None
    for attempt, wait_s in enumerate((0.0, *config.backoff_s), start=1):
        if wait_s:
            sleep(wait_s)
        attempts = attempt
        try:
            push_to_gateway(config.url or "", job=JOB, registry=registry, grouping_key={"instance": config.instance},
                            timeout=config.timeout_s, handler=config.handler())
            return PublishResult("pushgateway", True, attempts, where, config.grouping_key, bytes_sent=size)
        # The one place push errors are caught: any failure of publishing must not fail the analysis.
        except Exception as exc:  # noqa: BLE001
            error = _describe(exc)
            log.warning("push to %s failed (attempt %d of %d): %s", where, attempt, len(config.backoff_s) + 1, error)
            if not _retryable(exc):
                break
    log.error("giving up pushing metrics to %s after %d attempts: %s", where, attempts, error)
    return PublishResult("pushgateway", False, attempts, where, config.grouping_key, error=error)


def write_metrics_file(registry: CollectorRegistry, path: Path, grouping_key: dict[str, str]) -> PublishResult:
    """Write the exposition text to `path` atomically (temp file + rename); never raises."""
    text = exposition_text(registry)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the directory may be what failed
            tmp.unlink(missing_ok=True)
        log.error("could not write metrics to %s: %s", path, exc)
        return PublishResult("file", False, 1, str(path), grouping_key, error=_describe(exc))
    return PublishResult("file", True, 1, str(path), grouping_key, bytes_sent=len(text))


def publish_metrics(registry: CollectorRegistry, config: PushgatewayConfig, metrics_file: Path, *,
                    sleep: Callable[[float], None] = time.sleep) -> PublishResult:
    """Push to the gateway when one is configured, else write `metrics_file`; never raises."""
    if config.url:
        return push_metrics(registry, config, sleep=sleep)
    return write_metrics_file(registry, metrics_file, config.grouping_key)


@task(name="publish-metrics", cache_policy=NO_CACHE, persist_result=False)
def publish_metrics_task(registry: CollectorRegistry, data_dir: Path | str, lake_url: str | None = None) -> PublishResult:
    """Publish the gauges under the analyzer key of the lake at `lake_url` (no gateway: <data_dir>/metrics.prom;
    `data_dir` is this machine's folder, also for an object-store lake)."""
    config = PushgatewayConfig.from_env(lake_root=lake_url or str(data_dir))
    return publish_metrics(registry, config, Path(data_dir) / METRICS_FILE_NAME)


# --- artifacts -------------------------------------------------------------------------------------

def _cell(value: object) -> str:
    """A markdown table cell: floats to 3 decimals, None as '-', pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")



def drift_report(analysis: Analysis, published: PublishResult | None = None) -> str:
    """The drift report artifact: drift.py's markdown report plus where the metrics went."""
    markdown = drift_report_markdown(analysis.drift)
    if published is None:
        return markdown
    state = "published to" if published.ok else f"NOT published ({published.error}) to"
    return markdown + f"\nMetrics {state} {published.location} ({published.target}).\n"


def scores_table_rows(scores: pl.DataFrame) -> list[dict[str, object]]:
    """Rows of the scores table artifact: pass rate with its Wilson interval, components, score."""
    def fmt(value: object) -> object:
        return round(value, 3) if isinstance(value, float) else value

    return [{
        "orchestrator": row["orchestrator"], "pipeline": row["pipeline"], "runs": row["runs"],
        "passed": row["passed"], "pass_rate": fmt(row["pass_rate"]),
        "wilson_95": f"[{_cell(row['wilson_low'])}, {_cell(row['wilson_high'])}]",
        "latency_score": fmt(row["latency_score"]), "fps_score": fmt(row["fps_score"]),
        "score": evidence_label(row),
    } for row in scores.iter_rows(named=True)]


@task(name="create-analysis-artifacts", cache_policy=NO_CACHE, persist_result=False)
async def create_analysis_artifacts(analysis: Analysis, published: PublishResult | None = None) -> None:
    """The drift report (markdown) and the scores table as Prefect artifacts."""
    stamp = analysis.computed_at.isoformat()
    await acreate_markdown_artifact(markdown=drift_report(analysis, published), key=DRIFT_ARTIFACT_KEY,
                                    description=f"Drift of every series, {stamp}")
    await acreate_table_artifact(table=scores_table_rows(analysis.scores), key=SCORES_ARTIFACT_KEY,
                                 description=f"Orchestrator scores (7 days), {stamp}")
