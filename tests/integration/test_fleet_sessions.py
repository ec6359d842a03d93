"""`python -m simulator fleet --instances 3 --orchestrators 6`: a whole client session works on every instance."""

from __future__ import annotations

import asyncio

import pytest

from tasks.session.inputs import ensure_uploaded
from tasks.scope.client import ScopeClient
from tests.integration.fleet_process import fleet_process

pytestmark = pytest.mark.integration
FRAME_WAIT_S = 10.0


async def _walk_through(url: str, cache_dir) -> dict:
    """Upload, load, start (v2v), frames, prompt switch, metrics, stop, logs: what each step answered."""
    async with ScopeClient(url) as scope:
        inputs = await ensure_uploaded(scope, {"video"}, cache_dir)
        await scope.load_pipelines(["longlive"])
        await scope.wait_until_loaded(timeout_s=15)
        await scope.start_session(pipeline_id="longlive", input_mode="video",
                                  prompts=[{"text": "a lighthouse at dusk", "weight": 1.0}],
                                  input_source={"enabled": True, "source_type": "video_file",
                                                "source_name": inputs.clip_path})
        frame = None
        for _ in range(int(FRAME_WAIT_S / 0.1)):
            frame = await scope.get_frame()
            if frame is not None:
                break
            await asyncio.sleep(0.1)
        await scope.switch_prompt("a lighthouse in a snowstorm")
        parameters = await scope.get_parameters()
        metrics = await scope.session_metrics()
        stopped = await scope.stop_session()
        logs = await scope.logs_tail(lines=50)
        return {"frame": frame, "parameters": parameters, "metrics": metrics, "stopped": stopped, "logs": logs,
                "clip_path": inputs.clip_path}


async def test_a_client_session_works_against_each_instance_of_the_fleet(tmp_path):
    with fleet_process(tmp_path, instances=3, orchestrators=6) as (_, description):
        results = await asyncio.gather(*(_walk_through(i["url"], tmp_path / "inputs") for i in description["instances"]))
    assert len(description["orchestrators"]) == 6 and len(results) == 3
    for result in results:
        assert result["frame"] is not None and result["frame"][:2] == b"\xff\xd8"  # a JPEG
        assert result["clip_path"].startswith("/")
        assert "snowstorm" in str(result["parameters"])
        assert result["metrics"].headless is not None and result["metrics"].headless.frames_out > 0
        assert result["stopped"] is True
        assert result["logs"].lines and result["logs"].offset > 0
