"""The procedural frames meet the "healthy frames" rule of the interfaces (no HTTP)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sim_helpers import decodes, frame_diff, luma_thumb

from simulator.frames import VARIANTS, Look, LookKind, corrupt_jpeg, frame_jpeg
from simulator.session import HeadlessSession, SessionPlan

PROMPTS = [f"prompt {word} {n}" for n, word in enumerate("harbour desert forest city glacier canyon reef meadow".split())]


def _frame(text: str, variant: int, size: tuple[int, int] = (512, 512), quality: int = 85) -> bytes:
    return frame_jpeg(Look(LookKind.PROMPT, text), size[0], size[1], quality, variant)


def test_frames_of_one_prompt_differ_a_little_whatever_their_distance() -> None:
    frames = [_frame("a lighthouse", variant) for variant in range(VARIANTS)]
    diffs = [frame_diff(a, b) for a, b in itertools.combinations(frames, 2)]
    assert 0.01 <= min(diffs) and max(diffs) <= 0.05
    assert max(diffs) - min(diffs) < 0.01  # stationary: the same amount for every pair


def test_frames_of_two_prompts_differ_strongly() -> None:
    frames = [_frame(text, index % VARIANTS) for index, text in enumerate(PROMPTS)]
    assert min(frame_diff(a, b) for a, b in itertools.combinations(frames, 2)) > 0.12


@pytest.mark.parametrize("size", [(512, 512), (384, 384), (576, 320), (1024, 576)])
def test_size_and_noise_hold_at_every_size(size: tuple[int, int]) -> None:
    a, b = _frame("tide", 0, size), _frame("tide", 1, size)
    assert Image.open(io.BytesIO(a)).size == size
    assert 0.01 <= frame_diff(a, b) <= 0.05
    assert frame_diff(a, _frame("storm", 0, size)) > 0.12


def test_black_frames_are_black_but_moving() -> None:
    frames = [frame_jpeg(Look(LookKind.BLACK, "", black_luma=5.0), 512, 512, 85, v) for v in range(3)]
    for frame in frames:
        luma = np.asarray(Image.open(io.BytesIO(frame)).convert("L"))
        assert (luma <= 25).mean() >= 0.98 and luma.mean() < 10
    assert min(frame_diff(a, b) for a, b in itertools.combinations(frames, 2)) > 0.001


def test_corrupt_frames_do_not_decode() -> None:
    frames = [corrupt_jpeg(index) for index in range(5)]
    assert all(frame.startswith(b"\xff\xd8") and not decodes(frame) for frame in frames)
    assert len(set(frames)) == 5


def test_clip_looks_follow_the_input(tmp_path: Path) -> None:
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:, :32] = (250, 250, 250)  # left half white, right half black
    path = tmp_path / "half.png"
    Image.fromarray(picture).save(path)
    clip = frame_jpeg(Look(LookKind.CLIP, str(path)), 256, 256, 90, 0)
    luma = luma_thumb(clip)
    assert luma[:, :24].mean() > 200 and luma[:, -24:].mean() < 50
    depth = luma_thumb(frame_jpeg(Look(LookKind.DEPTH, str(path)), 256, 256, 90, 0))
    assert depth[:, -8:].mean() > depth[:, :8].mean()  # inverted, blurred
    gray = Image.open(io.BytesIO(frame_jpeg(Look(LookKind.GRAY, str(path)), 256, 256, 90, 0))).convert("RGB")
    channels = np.asarray(gray, np.float32).mean(axis=(0, 1))
    assert np.ptp(channels) < 3


def test_missing_input_still_gives_a_stable_picture(tmp_path: Path) -> None:
    look = Look(LookKind.CLIP, str(tmp_path / "gone.mp4"))
    assert decodes(frame_jpeg(look, 128, 128, 85, 0))


def test_a_new_frame_never_repeats_the_variant_served_last() -> None:
    plan = SessionPlan(("longlive",), "text", None, ("output",), False, "longlive")
    session = HeadlessSession("s", plan, started_mono=0.0, started_wall=0.0, first_frame_s=0.1, fps_per_sink=12,
                              prompt=None, parameters={})
    indices = range(0, 600, VARIANTS)  # the same residue every time
    served = [session.variant_for("output", index) for index in indices]
    assert all(a != b for a, b in zip(served, served[1:]))
    assert session.variant_for("output", indices[-1]) == served[-1]  # the same frame keeps its bytes


def test_frames_per_sink_follow_the_first_frame_and_rate() -> None:
    plan = SessionPlan(("longlive",), "text", None, ("a", "b"), True, "longlive")
    session = HeadlessSession("s", plan, started_mono=10.0, started_wall=0.0, first_frame_s=0.5, fps_per_sink=12,
                              prompt="p", parameters={})
    assert session.frames_per_sink(10.49) == 0
    assert session.frames_per_sink(10.5) == 1
    assert session.frames_per_sink(11.5) == 13
    assert session.frames_per_sink(20.0, stall_at=11.0) == 7


def test_a_receiver_sampling_every_n_frames_never_sees_one_frame_twice_in_a_row() -> None:
    """Healthy output must never look frozen to a sampler, whatever the fps and sampling rate."""
    plan = SessionPlan(("longlive",), "text", None, ("output",), False, "longlive")
    session = HeadlessSession("s", plan, started_mono=0.0, started_wall=0.0, first_frame_s=0.1, fps_per_sink=24,
                              prompt=None, parameters={})
    sent = [session.variant_for("output", index) for index in range(2000)]  # every frame, as a stream sends them
    for stride in (1, 2, 3, 5, 6, 7, 8, 10, 12, 15, 24, 30):  # fps x sampling interval of common setups
        sampled = sent[::stride]
        assert all(a != b for a, b in zip(sampled, sampled[1:])), stride
