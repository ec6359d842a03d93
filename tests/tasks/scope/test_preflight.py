"""The schema preflight on the schemas real Scope 0.2.4 answered (tests/fixtures/scope-0.2.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.scope.models import PipelineSchema, PipelineSchemas
from tasks.scope.preflight import preflight

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "scope-0.2.4" / "pipeline-schemas.json"
LONGLIVE = PipelineSchema(id="longlive", supported_modes=["text", "video"], supports_prompts=True,
                          inputs=["video", "vace_input_frames", "vace_input_masks"])


@pytest.fixture(scope="module")
def schemas() -> dict[str, PipelineSchema]:
    """The recorded schemas, plus longlive as its config describes it (it needs a GPU the recording lacked)."""
    recorded = PipelineSchemas.model_validate_json(RECORDED.read_text()).pipelines
    return {**recorded, "longlive": LONGLIVE}


def test_a_chain_that_fits_has_no_problem(schemas) -> None:
    found = preflight(schemas, ["passthrough"], "v2v", wants_prompts=False)
    assert found.problem is None and found.prompts_unsupported is None and found.scope_mode == "video"


def test_unknown_ids_are_named(schemas) -> None:
    found = preflight(schemas, ["nosuch-pipe", "gray"], "v2v", wants_prompts=False)
    assert found.unknown_ids == ("nosuch-pipe",) and found.problem == "unknown pipeline(s) nosuch-pipe"


@pytest.mark.parametrize(
    ("chain", "mode", "missing"),
    [
        (["passthrough"], "t2v", {"passthrough": "text"}),
        (["controller-viz"], "v2v", {"controller-viz": "video"}),
        (["controller-viz"], "t2v", {}),
        (["passthrough"], "i2v", {"passthrough": "text"}),  # 0.2.4 has no image mode: i2v runs in text mode
        (["longlive"], "i2v", {}),
        (["longlive", "rife"], "t2v", {}),  # rife is fed longlive's video
        (["gray", "longlive", "rife"], "v2v", {}),
        (["gray", "longlive", "rife"], "t2v", {"gray": "text"}),
    ],
)
def test_modes_the_chain_lacks_are_named_per_pipeline(schemas, chain, mode, missing) -> None:
    found = preflight(schemas, chain, mode, wants_prompts=False)
    assert dict(found.missing_modes) == missing
    for pid, lacked in missing.items():
        assert f"{pid} has no {lacked} mode" in (found.problem or "")


def test_prompts_need_one_pipeline_that_takes_them(schemas) -> None:
    none_take = preflight(schemas, ["gray", "rife"], "v2v", wants_prompts=True)
    assert not none_take.prompts_supported and none_take.ignores_prompts == ("gray", "rife")
    assert none_take.problem is None  # a configuration that cannot judge prompts, not one that cannot run
    assert none_take.prompts_unsupported == "no pipeline of gray+rife takes prompts (gray, rife)"
    one_takes = preflight(schemas, ["longlive", "rife"], "t2v", wants_prompts=True)
    assert one_takes.prompts_supported and one_takes.ignores_prompts == ("rife",)
    assert one_takes.prompts_unsupported is None
    assert preflight(schemas, ["gray"], "v2v", wants_prompts=False).prompts_unsupported is None


def test_an_unknown_mode_is_refused(schemas) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        preflight(schemas, ["gray"], "a2v", wants_prompts=False)
