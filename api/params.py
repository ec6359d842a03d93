"""The read endpoints' query parameters, parsed by the reference's rules plus our hardening.

The reference's rules (common/params.go): `orchestrator` is lower-cased, `region` upper-cased,
`since`/`until` are unix seconds (fractions allowed), an empty value is an absent one, the first
of repeated values wins, and `model` and `pipeline` come together. Without both bounds the
window is the last `window_hours`; `until` alone means everything before it. Ours refuses what
the reference parses into nonsense: NaN, infinities, negative or out-of-range times, an
inverted window, an unknown `job_type`, over-long values and control characters.
Unknown parameters are ignored, as the reference ignores them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable

from analytics.leaderboard.board import StatsQuery

MAX_PARAM_CHARS = 256
KNOWN_PARAMS = ("orchestrator", "region", "since", "until", "model", "pipeline", "job_type")
JOB_TYPES = ("ai", "transcoding")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # no nan, inf, hex or underscores
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ParamError(ValueError):
    """A query parameter the API refuses (400); the message names the parameter."""


def first_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The first non-empty value of each known parameter, checked for length and control characters."""
    values: dict[str, str] = {}
    for name, value in items:
        if name not in KNOWN_PARAMS or not value or name in values:
            continue
        if len(value) > MAX_PARAM_CHARS:
            raise ParamError(f"{name} is longer than {MAX_PARAM_CHARS} characters")
        if _CONTROL.search(value):
            raise ParamError(f"{name} contains a control character")
        values[name] = value
    return values


def unix_time(name: str, text: str) -> dt.datetime:
    """A `since`/`until` value (unix seconds, decimal, fractions allowed) as a UTC datetime."""
    if not _DECIMAL.match(text):
        raise ParamError(f"{name} must be unix seconds (a decimal number)")
    seconds = float(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ParamError(f"{name} must be a finite, non-negative number of unix seconds")
    try:
        return EPOCH + dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ParamError(f"{name} is out of range") from None


def _window(values: dict[str, str], now: dt.datetime, window_hours: float) -> tuple[dt.datetime, dt.datetime]:
    """(since, until): the defaults of the reference, with `until` alone meaning everything before it."""
    until = unix_time("until", values["until"]) if "until" in values else now
    if "since" in values:
        since = unix_time("since", values["since"])
    elif "until" in values:
        since = EPOCH
    else:
        since = now - dt.timedelta(hours=window_hours)
    if since > until:
        raise ParamError("since is after until")
    return since, until


def stats_query(items: Iterable[tuple[str, str]], *, now: dt.datetime, window_hours: float,
                orchestrator_required: bool = False) -> StatsQuery:
    """The StatsQuery of a request's query parameters; ParamError naming the parameter at fault."""
    values = first_values(items)
    since, until = _window(values, now, window_hours)
    job_type = values.get("job_type")
    if job_type is not None and job_type not in JOB_TYPES:
        raise ParamError(f"job_type must be one of {', '.join(JOB_TYPES)}")
    if "model" in values and "pipeline" not in values:
        raise ParamError("pipeline required")
    if "pipeline" in values and "model" not in values:
        raise ParamError("model required")
    if orchestrator_required and "orchestrator" not in values:
        raise ParamError("orchestrator is a required parameter")
    orchestrator, region = values.get("orchestrator"), values.get("region")
    return StatsQuery(since=since, until=until, orchestrator=orchestrator.lower() if orchestrator else None,
                      region=region.upper() if region else None, model=values.get("model"),
                      pipeline=values.get("pipeline"), job_type=job_type)  # type: ignore[arg-type]
