"""`publish-leaderboard`: post our finished relay runs to every configured leaderboard, through the outbox.

Every minute (`PUBLISH_INTERVAL_S`). A round derives each target's pending runs from the lake
(tasks/publish/outbox.py), expires what is too old, posts what is due and lands one attempt row
per post, so a round that crashes or is cancelled loses nothing: the next one posts again and
the receiver answers 409 for what had landed.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from analytics.lake import Lake
from config.settings import Settings, load_settings
from tasks.publish.outbox import publish_target_now

PUBLISH_INTERVAL_S = 60
PUBLISH_TIMEOUT_S = 30 * 60  # a batch of slow answers; rounds never overlap (deployment limit 1)
NO_RESULT = {"cache_policy": NO_CACHE, "persist_result": False}

load_config = task(name="load-config", **NO_RESULT)(load_settings)
# No retries: a failed post is already retried by the outbox's own back-off, across rounds.
publish_to_target = task(name="publish-to-target", **NO_RESULT)(publish_target_now)


@flow(name="publish-leaderboard", timeout_seconds=PUBLISH_TIMEOUT_S)
def publish_leaderboard(config: str | None = None) -> list[dict]:
    """One outbox round per configured leaderboard target; what each posted, and what not and why."""
    settings: Settings = load_config(config)
    lake = Lake.from_env()
    return [publish_to_target(lake, settings, target.name) for target in settings.leaderboard.targets]
