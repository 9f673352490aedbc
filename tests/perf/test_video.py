"""Video generation: calibration, sequence parallelism, memory and the real-time fleet."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import AcceleratorTable
from flopex.errors import DoesNotFitError, PerfError
from flopex.models import resolve_video_model
from flopex.perf import Efficiency, VideoQuery, clip_frames, predict_video, realtime_fleet


def _query(accs: AcceleratorTable, model: str = "wan2.1-t2v-14b", acc: str = "H100-SXM", count: int = 1,
           **kw: object) -> VideoQuery:  # fmt: skip
    m = resolve_video_model(model)
    fields: dict[str, object] = {"width": m.width, "height": m.height, "frames": m.frames, "steps": m.steps, **kw}
    return VideoQuery(m, accs.resolve(acc), count, **fields)  # type: ignore[arg-type]


def test_attention_dominates_a_720p_wan_video(eff: Efficiency, accs: AcceleratorTable) -> None:
    """(How close the time comes to the published one is tested row by row in test_calibrate.)"""
    p = predict_video(_query(accs), eff)
    assert p.attention_s > 2 * p.linear_s  # attention dominates at 75,600 tokens


def test_sequence_parallel_speedup_is_sublinear_like_the_published_one(eff: Efficiency, accs: AcceleratorTable) -> None:
    one = predict_video(_query(accs, "hunyuanvideo"), eff)
    eight = predict_video(_query(accs, "hunyuanvideo", count=8), eff)
    assert eight.sequence_parallel == 8
    speedup = one.seconds_per_video / eight.seconds_per_video
    assert 4.5 < speedup < 7.5  # HunyuanVideo README: 5.64x on 8 GPUs
    assert eight.accelerator_seconds_per_video > one.accelerator_seconds_per_video
    assert eight.communication_s > 0


def test_a_fixed_degree_is_checked(eff: Efficiency, accs: AcceleratorTable) -> None:
    with pytest.raises(PerfError, match="Choose from: 1, 2, 4, 8"):
        predict_video(_query(accs, count=8, sequence_parallel=3), eff)
    p = predict_video(_query(accs, count=8, sequence_parallel=1), eff)
    assert (p.sequence_parallel, p.replicas) == (1, 8)


def test_weights_that_do_not_fit_stream_from_host_memory(eff: Efficiency, accs: AcceleratorTable) -> None:
    small = predict_video(_query(accs, acc="L4", width=256, height=256, frames=1), eff)
    assert small.offloaded  # 28 GB of bf16 weights on a 24 GB card
    # a pass over a few hundred tokens is shorter than streaming 28 GB over PCIe, so the stream shows
    assert small.offload_s > small.linear_s + small.attention_s
    # at 480p the compute of each pass hides the stream
    large = predict_video(_query(accs, acc="L4", width=832, height=480, frames=33), eff)
    assert large.offloaded and large.offload_s == 0


def test_activations_that_do_not_fit_are_an_error_that_says_what_to_change(
    eff: Efficiency, accs: AcceleratorTable
) -> None:
    with pytest.raises(DoesNotFitError, match="raise --count"):
        predict_video(_query(accs, "open-sora-2.0", acc="L4", width=3840, height=2160), eff)


def test_fp8_is_faster_than_bf16_on_hopper(eff: Efficiency, accs: AcceleratorTable) -> None:
    bf16 = predict_video(_query(accs), eff)
    fp8 = predict_video(_query(accs, precision="fp8"), eff)
    assert fp8.linear_s < bf16.linear_s
    assert fp8.weights_gb == pytest.approx(bf16.weights_gb / 2)


def test_clip_frames_follow_the_vae(accs: AcceleratorTable) -> None:
    wan = resolve_video_model("wan2.1-t2v-14b")
    frames = clip_frames(wan, 30)
    assert (frames - 1) % wan.vae_temporal == 0
    assert frames / 30 == pytest.approx(81 / 16, rel=0.05)


def test_realtime_fleet_covers_the_rate(eff: Efficiency, accs: AcceleratorTable) -> None:
    wan = resolve_video_model("wan2.1-t2v-14b")
    need = realtime_fleet(wan, accs.resolve("H100-SXM"), 1920, 1080, 30, 2.0, eff)
    p = need.prediction
    # enough accelerator-seconds every second for two seconds of video, in whole groups
    assert need.accelerators * p.video_seconds >= 2.0 * p.accelerator_seconds_per_video
    assert need.accelerators % p.sequence_parallel == 0
    faster = realtime_fleet(wan, accs.resolve("B200"), 1920, 1080, 30, 2.0, eff)
    assert faster.accelerators < need.accelerators
    with pytest.raises(PerfError, match="positive"):
        realtime_fleet(wan, accs.resolve("H100-SXM"), 1920, 1080, 30, 0.0, eff)


@settings(max_examples=40, deadline=None)
@given(
    frames=st.integers(1, 161),
    extra=st.integers(1, 80),
    side=st.integers(256, 1280),
    steps=st.integers(1, 60),
)
def test_more_frames_pixels_or_steps_never_make_a_video_faster(
    eff: Efficiency, accs: AcceleratorTable, frames: int, extra: int, side: int, steps: int
) -> None:
    def seconds(width: int, frames: int, n: int) -> float:
        return predict_video(_query(accs, width=width, height=side, frames=frames, steps=n), eff).seconds_per_video

    base = seconds(side, frames, steps)
    assert base > 0
    assert seconds(side, frames + extra, steps) >= base
    assert seconds(side + 64, frames, steps) >= base
    assert seconds(side, frames, steps + 1) > base


@settings(max_examples=20, deadline=None)
@given(model=st.sampled_from(["wan2.1-t2v-14b", "hunyuanvideo", "cogvideox-5b", "open-sora-2.0"]),
       count=st.sampled_from([1, 2, 4, 8]))  # fmt: skip
def test_more_accelerators_per_video_never_cost_fewer_accelerator_seconds(
    eff: Efficiency, accs: AcceleratorTable, model: str, count: int
) -> None:
    one = predict_video(_query(accs, model), eff)
    many = predict_video(_query(accs, model, count=count, sequence_parallel=count), eff)
    assert many.seconds_per_video <= one.seconds_per_video
    assert many.accelerator_seconds_per_video >= one.accelerator_seconds_per_video * (1 - 1e-9)
