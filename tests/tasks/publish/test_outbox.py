"""The leaderboard outbox on literal lake data: eligibility, back-off, attempt numbers, terminal states, expiry.

The receiver is an httpx MockTransport answering per test; the clock is passed as `now`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics.lake import Lake
from analytics.leaderboard.stats import body_sha256
from analytics.records import RunRecord
from config.leaderboard import LeaderboardSettings, LeaderboardTarget, OutboxSettings
from config.settings import Settings
from tasks.publish.leaderboard_post import MAX_ANSWER_BYTES, classify, post_stats
from tasks.publish.outbox import backoff_s, pending_jobs, publish_round, run_body
from tasks.publish.outbox_status import outbox_status
from tasks.publish.signature import signature_matches

UTC = dt.timezone.utc
ENDED = dt.datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
NOW = ENDED + dt.timedelta(minutes=5)
SECRET = "outbox-secret-never-landed-93af"
ORCH = "0x" + "ab" * 20
ENV = {"LB_SECRET": SECRET}


def make_run(run_id: str, *, outcome: str = "passed", ended_at: dt.datetime = ENDED, **fields: Any) -> RunRecord:
    """A final relay run with plausible fields."""
    started = ended_at - dt.timedelta(minutes=2)
    base: dict[str, Any] = dict(
        run_id=run_id, state="final", scenario="longlive_t2v_15s", pipeline="longlive", mode="t2v",
        duration_class="15s", planned_duration_s=15.0, hard_cap_s=600.0, scope_instance="http://127.0.0.1:8000",
        harness_version="0.2.0", started_at=started, ended_at=ended_at, outcome=outcome, orchestrator=ORCH,
        region="fra", media_path="relay", first_frame_s=1.5, fps_received=11.0, expected_fps=12.0, cold_start=False,
    )
    if outcome == "failed":
        base |= dict(failure_category="validation", failure_phase="stream", failure_reason="fps low",
                     checks_failed=("fps",))
    return RunRecord(**(base | fields))


def settings_with(demo: Settings, **outbox: Any) -> Settings:
    """The demo settings posting to one target `lb` (secret in $LB_SECRET)."""
    target = LeaderboardTarget(name="lb", url="http://127.0.0.1:9", secret_env="LB_SECRET", timeout_s=2.0)
    board = LeaderboardSettings(targets=[target], outbox=OutboxSettings(**({"backoff_s": 30.0, "backoff_max_s": 300.0}
                                                                          | outbox)))
    return demo.model_copy(update={"leaderboard": board})


class Receiver:
    """A scripted leaderboard: answers from `answer(request)`, remembers every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer, self.requests = answer, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def status_answer(code: int, text: str = "") -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, text=text)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def attempts(lake: Lake) -> list[dict]:
    return lake.query("SELECT * FROM leaderboard_outbox ORDER BY attempted_at, run_id, attempt").dicts()


def one_round(lake: Lake, settings: Settings, receiver: Receiver, now: dt.datetime, environ=ENV):
    with receiver.client() as client:
        return publish_round(lake, settings, now=now, environ=environ, client=client)


@pytest.fixture
def settings(demo_settings: Settings) -> Settings:
    return settings_with(demo_settings)


def test_only_finished_measured_relay_runs_with_an_orchestrator_are_jobs(lake: Lake, settings: Settings):
    for record in (make_run("r-passed"), make_run("r-failed", outcome="failed"),
                   make_run("r-unavailable", outcome="unavailable"), make_run("r-aborted", outcome="aborted"),
                   make_run("r-local", media_path="local"), make_run("r-headless", media_path="headless"),
                   make_run("r-generated", generated=True), make_run("r-no-orch", orchestrator=None),
                   make_run("r-harness", outcome="failed", failure_category="harness"),
                   make_run("r-prepare", outcome="failed", failure_phase="prepare")):
        lake.land_run(record)
    assert [j.run_id for j in pending_jobs(lake, "lb")] == ["r-failed", "r-passed"]  # oldest first, then by id


def test_a_posted_run_is_signed_exact_bytes_and_settles(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    receiver = Receiver(status_answer(200, "ok"))
    [result] = one_round(lake, settings, receiver, NOW)
    assert result.counts == {"posted": 1}
    [request] = receiver.requests
    body = run_body(pending_jobs_of(lake, settings, "r1"), settings)
    assert request.content == body and request.url.path == "/api/post_stats"
    assert signature_matches(body, request.headers["authorization"], SECRET)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("scope-loadtest/")
    [row] = attempts(lake)
    assert (row["status"], row["attempt"], row["http_status"], row["body_sha256"]) == ("posted", 1, 200,
                                                                                      body_sha256(body))
    assert pending_jobs(lake, "lb") == []
    assert one_round(lake, settings, receiver, NOW + dt.timedelta(hours=1))[0].records == []  # nothing to do


def pending_jobs_of(lake: Lake, settings: Settings, run_id: str) -> dict:
    return lake.query("SELECT * FROM runs WHERE run_id = ?", [run_id]).dicts()[0]


def test_the_same_run_always_gives_the_same_body(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    run = pending_jobs_of(lake, settings, "r1")
    assert run_body(run, settings) == run_body(dict(run), settings)
    assert json.loads(run_body(run, settings))["orchestrator"] == ORCH


def test_failures_back_off_exponentially_up_to_the_cap_and_number_the_attempts(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    receiver, now = Receiver(status_answer(503, '{"error": "down for maintenance"}')), NOW
    for expected_wait_s in (30, 60, 120, 240, 300, 300):
        [result] = one_round(lake, settings, receiver, now)
        assert result.counts == {"failed": 1}
        row = attempts(lake)[-1]
        assert row["error"] == "HTTP 503: down for maintenance" and row["http_status"] == 503
        assert row["next_attempt_at"] - row["attempted_at"] == dt.timedelta(seconds=expected_wait_s)
        # not before its time: a round just before it posts nothing
        assert one_round(lake, settings, receiver, row["next_attempt_at"] - dt.timedelta(seconds=1))[0].waiting == 1
        now = row["next_attempt_at"]
    assert [r["attempt"] for r in attempts(lake)] == [1, 2, 3, 4, 5, 6]
    assert len(receiver.requests) == 6


def test_backoff_formula():
    outbox = OutboxSettings(backoff_s=10.0, backoff_max_s=1000.0)
    assert [backoff_s(n, outbox) for n in (1, 2, 3, 7, 8, 500)] == [10, 20, 40, 640, 1000, 1000]


@pytest.mark.parametrize(("code", "status"), [(409, "duplicate"), (400, "rejected"), (413, "rejected")])
def test_duplicate_and_rejected_are_terminal(lake: Lake, settings: Settings, code: int, status: str):
    lake.land_run(make_run("r1"))
    receiver = Receiver(status_answer(code, '{"error": "region ATLANTIS is unknown\\nsecond line"}'))
    one_round(lake, settings, receiver, NOW)
    one_round(lake, settings, receiver, NOW + dt.timedelta(hours=2))
    [row] = attempts(lake)
    assert row["status"] == status and row["next_attempt_at"] is None
    assert row["error"] == f"HTTP {code}: region ATLANTIS is unknown second line"  # one line
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("code", [401, 403, 404, 500, 502, 302])
def test_other_answers_are_retried(code: int):
    assert classify(code, b"nope")[0] == "failed"


def test_a_failure_then_success_settles_with_the_next_attempt_number(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    one_round(lake, settings, Receiver(refused), NOW)
    one_round(lake, settings, Receiver(status_answer(200)), NOW + dt.timedelta(seconds=31))
    rows = attempts(lake)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "posted")]
    assert rows[0]["http_status"] is None and "ConnectError" in rows[0]["error"]


def test_a_target_that_does_not_answer_stops_the_round_without_losing_runs(lake: Lake, settings: Settings):
    for i in range(5):
        lake.land_run(make_run(f"r{i}", ended_at=ENDED + dt.timedelta(seconds=i)))
    [result] = one_round(lake, settings, Receiver(refused), NOW)
    assert result.counts == {"failed": 3} and result.not_tried == 2 and "without an answer" in result.note
    assert len(pending_jobs(lake, "lb")) == 5
    receiver = Receiver(status_answer(200))
    [result] = one_round(lake, settings, receiver, NOW + dt.timedelta(seconds=31))
    assert result.counts == {"posted": 5} and pending_jobs(lake, "lb") == []


def test_batch_size_leaves_the_rest_for_the_next_round(lake: Lake, demo_settings: Settings):
    settings = settings_with(demo_settings, batch_size=2)
    for i in range(3):
        lake.land_run(make_run(f"r{i}", ended_at=ENDED + dt.timedelta(seconds=i)))
    receiver = Receiver(status_answer(200))
    assert one_round(lake, settings, receiver, NOW)[0].not_tried == 1
    assert one_round(lake, settings, receiver, NOW)[0].counts == {"posted": 1}
    assert len(receiver.requests) == 3


def test_old_pending_runs_expire_once_and_are_never_posted(lake: Lake, settings: Settings):
    lake.land_run(make_run("old", ended_at=NOW - dt.timedelta(hours=25)))
    lake.land_run(make_run("fresh"))
    receiver = Receiver(status_answer(200))
    [result] = one_round(lake, settings, receiver, NOW)
    assert result.counts == {"expired": 1, "posted": 1}
    one_round(lake, settings, receiver, NOW + dt.timedelta(hours=1))
    expired = [r for r in attempts(lake) if r["run_id"] == "old"]
    assert len(expired) == 1 and expired[0]["status"] == "expired" and "more than 24 h" in expired[0]["error"]
    assert [json.loads(r.content)["timestamp"] for r in receiver.requests] == [int(ENDED.timestamp())]


def test_an_unset_secret_posts_nothing_lands_nothing_and_says_so(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    receiver = Receiver(status_answer(200))
    for minutes in (0, 1, 2):
        [result] = one_round(lake, settings, receiver, NOW + dt.timedelta(minutes=minutes), environ={})
        assert result.note == "secret $LB_SECRET not set" and result.not_tried == 1
    assert receiver.requests == [] and attempts(lake) == []
    [status] = outbox_status(lake, settings, now=NOW, environ={})
    assert status.secret_note == "secret $LB_SECRET not set" and status.pending == 1


def test_an_invalid_run_is_rejected_locally(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1", region="not a region!"))
    receiver = Receiver(status_answer(200))
    one_round(lake, settings, receiver, NOW)
    [row] = attempts(lake)
    assert row["status"] == "rejected" and row["http_status"] is None and "not a valid Stats body" in row["error"]
    assert receiver.requests == []


def test_no_secret_in_any_landed_row(lake: Lake, settings: Settings):
    lake.land_run(make_run("r1"))
    one_round(lake, settings, Receiver(lambda r: httpx.Response(401, text=r.headers["authorization"])), NOW)
    for path in Path(lake.lake_dir).rglob("*.parquet"):
        assert SECRET.encode() not in path.read_bytes()


def test_the_answer_read_is_capped():
    big = b"x" * (MAX_ANSWER_BYTES * 4)
    target = LeaderboardTarget(name="lb", url="http://127.0.0.1:9", secret_env="LB_SECRET")
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500, content=big))) as client:
        answer = post_stats(client, target, b"{}", SECRET)
    assert answer.status == "failed" and len(answer.error) <= 300


def test_status_shows_pending_failing_rejected_and_expired(lake: Lake, settings: Settings):
    lake.land_run(make_run("failing"))
    lake.land_run(make_run("bad", ended_at=ENDED + dt.timedelta(seconds=1)))
    lake.land_run(make_run("old", ended_at=NOW - dt.timedelta(hours=30)))
    lake.land_run(make_run("ok", ended_at=ENDED + dt.timedelta(seconds=2)))
    answers = {"failing": 502, "bad": 400, "ok": 200}
    receiver = Receiver(lambda r: httpx.Response(answers[json.loads(json.loads(r.content)["input_parameters"])
                                                         ["run_id"]], text="why"))
    one_round(lake, settings, receiver, NOW)
    [status] = outbox_status(lake, settings, now=NOW + dt.timedelta(seconds=10), environ=ENV)
    assert (status.pending, status.due_now, status.backing_off, status.expiring) == (1, 0, 1, 0)
    assert status.oldest_pending_ended_at == ENDED and status.secret_note is None
    assert status.settled == {"posted": 1, "rejected": 1, "expired": 1}
    [failing] = status.failing
    assert failing["run_id"] == "failing" and failing["attempts"] == 1 and failing["last_error"] == "HTTP 502: why"
    # attempted_at is the round's `now` plus the time the round has taken so far
    assert dt.timedelta(0) <= failing["next_attempt_at"] - (NOW + dt.timedelta(seconds=30)) < dt.timedelta(seconds=5)
    assert {(g["run_id"], g["status"]) for g in status.given_up} == {("bad", "rejected"), ("old", "expired")}
    assert json.dumps(status.as_dict())
