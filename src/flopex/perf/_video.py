"""Video generation with diffusion transformers: seconds per video, accelerator-seconds, and the real-time fleet.

One video takes `steps` denoising steps; each step runs the transformer once per guidance pass over a
sequence of S tokens: 2·P·S FLOPs of matrix multiplications and 4·L·d·S² of attention, each at its own rate.
The prompt is encoded once and the VAE decodes the frames once at the end. With sequence parallelism over k
accelerators (Ulysses), each holds S/k tokens and every layer costs four all-to-alls of its share; the text
encoder and VAE decode run on one accelerator, so speedup is sub-linear (Amdahl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flopex.catalog import Accelerator, Precision
from flopex.errors import DoesNotFitError, PerfError
from flopex.models import VideoModelSpec
from flopex.perf._efficiency import Efficiency
from flopex.perf._memory import BYTES, compute_precision

__all__ = ["RealtimeNeed", "VideoPrediction", "VideoQuery", "clip_frames", "predict_video", "realtime_fleet"]

_ACT_BYTES = 2
_A2A_PER_LAYER = 4  # Ulysses: Q, K, V scattered by head, the output gathered back


@dataclass(frozen=True)
class VideoQuery:
    model: VideoModelSpec
    accelerator: Accelerator
    count: int
    width: int
    height: int
    frames: int
    steps: int
    precision: Precision = "bf16"
    sequence_parallel: int | None = None  # accelerators per video; None: the fastest degree that fits
    fps: float | None = None  # frame rate of the output; None: the model's


@dataclass(frozen=True)
class VideoPrediction:
    query: VideoQuery
    sequence_parallel: int
    replicas: int
    video_tokens: int
    sequence: int
    flops: float  # per video, all passes, text encoder and VAE included
    linear_s: float
    attention_s: float
    communication_s: float
    offload_s: float
    text_encoder_s: float
    vae_decode_s: float
    weights_gb: float
    activations_gb: float
    usable_gb: float
    offloaded: bool
    peak_flops: float

    @property
    def fps(self) -> float:
        return self.query.fps or self.query.model.fps

    @property
    def denoise_s(self) -> float:
        return self.linear_s + self.attention_s + self.communication_s + self.offload_s

    @property
    def seconds_per_video(self) -> float:
        return self.denoise_s + self.text_encoder_s + self.vae_decode_s

    @property
    def accelerator_seconds_per_video(self) -> float:
        return self.seconds_per_video * self.sequence_parallel

    @property
    def video_seconds(self) -> float:
        """Seconds of output video one generation yields."""
        return self.query.frames / self.fps

    @property
    def compute_seconds_per_video_second(self) -> float:
        """Accelerator-seconds of compute per second of output video."""
        return self.accelerator_seconds_per_video / self.video_seconds

    @property
    def videos_per_hour(self) -> float:
        return self.replicas * 3600 / self.seconds_per_video

    @property
    def mfu(self) -> float:
        return self.flops / (self.accelerator_seconds_per_video * self.peak_flops)

    def to_json(self) -> dict[str, Any]:
        q = self.query
        return {
            "model": q.model.id,
            "accelerator": q.accelerator.id,
            "count": q.count,
            "precision": q.precision,
            "width": q.width,
            "height": q.height,
            "frames": q.frames,
            "steps": q.steps,
            "fps": self.fps,
            "guidance_passes": q.model.guidance_passes,
            "seconds_per_video": self.seconds_per_video,
            "accelerator_seconds_per_video": self.accelerator_seconds_per_video,
            "video_seconds": self.video_seconds,
            "compute_seconds_per_video_second": self.compute_seconds_per_video_second,
            "videos_per_hour": self.videos_per_hour,
            "sequence_parallel": self.sequence_parallel,
            "replicas": self.replicas,
            "video_tokens": self.video_tokens,
            "sequence_tokens": self.sequence,
            "flops_per_video": self.flops,
            "mfu": self.mfu,
            "seconds": {
                "linear": self.linear_s,
                "attention": self.attention_s,
                "communication": self.communication_s,
                "weight_offload": self.offload_s,
                "text_encoder": self.text_encoder_s,
                "vae_decode": self.vae_decode_s,
            },
            "memory_gb": {
                "usable": self.usable_gb,
                "weights": self.weights_gb,
                "activations": self.activations_gb,
                "weights_offloaded": self.offloaded,
            },
        }


def _software(acc: Accelerator, eff: Efficiency) -> float:
    """Relative maturity of non-NVIDIA PyTorch stacks, as for the LLM model's `other` engines, capped at 1."""
    return min(1.0, eff.software_factor(acc.vendor, "other") / eff.software_factor("NVIDIA", "other"))


def _degrees(q: VideoQuery) -> list[int]:
    """Sequence-parallel degrees: powers of two that split the heads, within one scale-up domain and the count."""
    domain = q.accelerator.scale_up_domain or 8
    limit = min(q.count, domain)
    return [2**i for i in range(int(math.log2(limit)) + 1) if q.model.num_heads % 2**i == 0]


def _validate(q: VideoQuery) -> None:
    for name, value in (("--count", q.count), ("--width", q.width), ("--height", q.height)):
        if value < 1:
            raise PerfError(f"{name} must be at least 1 (got {value}).")
    if q.frames < 1 or q.steps < 1:
        raise PerfError(f"--frames and --steps must each be at least 1 (got {q.frames} and {q.steps}).")
    if q.fps is not None and q.fps <= 0:
        raise PerfError(f"--fps must be positive (got {q.fps}).")


def _predict_at(q: VideoQuery, k: int, eff: Efficiency) -> VideoPrediction:
    m, acc = q.model, q.accelerator
    cp = compute_precision(acc, q.precision)
    wide: Precision = "bf16" if acc.runs("bf16") else "fp16"
    kappa = _software(acc, eff)
    peak = acc.tflops[cp] * 1e12
    wide_peak = acc.tflops.get(wide, acc.tflops[cp]) * 1e12
    gemm = max(peak * eff.peak_fraction(acc, cp), wide_peak * eff.peak_fraction(acc, wide)) * kappa
    attention_rate = wide_peak * eff.video_attention_fraction(acc) * kappa
    link = (acc.scale_up_gb_s or eff.comm.pcie_gb_s.value) * 1e9 / 2 * eff.comm.fraction.value

    s = m.sequence(q.width, q.height, q.frames)
    passes = q.steps * m.guidance_passes
    tokens_per_rank = s / k
    linear = (
        passes * m.linear_flops(s) / k / (gemm * tokens_per_rank / (tokens_per_rank + eff.compute.half_tokens.value))
    )
    attention = passes * m.attention_flops(s) / k / attention_rate
    comm = 0.0
    if k > 1:
        share = tokens_per_rank * m.hidden_size * _ACT_BYTES * (k - 1) / k
        comm = passes * m.num_layers * _A2A_PER_LAYER * (share / link + eff.comm.latency_s.value)

    weights = m.weight_bytes(BYTES[q.precision])
    activations = tokens_per_rank * m.hidden_size * _ACT_BYTES * eff.video.activation_multiple.value
    usable = eff.usable_bytes(acc)
    if activations > usable:
        raise DoesNotFitError(
            f"{m.id} at {q.width}x{q.height}, {q.frames} frames: the activations of {s:,} tokens over {k} x "
            f"{acc.id} take {activations / 1e9:,.1f} GB per accelerator against {usable / 1e9:,.1f} GB usable. "
            "To fix: raise --count (sequence parallelism splits the tokens), or lower the resolution or frames."
        )
    offloaded = weights + activations > usable
    offload = 0.0
    if offloaded:  # weights stream from host memory once per transformer pass, overlapped with compute
        stream = passes * weights / (eff.comm.pcie_gb_s.value * 1e9 / 2)
        offload = max(0.0, stream - (linear + attention))

    text_flops = 2 * m.text_encoder_b * 1e9 * m.text_tokens * m.guidance_passes
    vae_flops = q.width * q.height * q.frames * eff.video.vae_decode_flops_per_pixel.value
    flops = passes * (m.linear_flops(s) + m.attention_flops(s)) + text_flops
    return VideoPrediction(
        query=q,
        sequence_parallel=k,
        replicas=q.count // k,
        video_tokens=m.video_tokens(q.width, q.height, q.frames),
        sequence=s,
        flops=flops,
        linear_s=linear,
        attention_s=attention,
        communication_s=comm,
        offload_s=offload,
        text_encoder_s=text_flops / gemm,
        vae_decode_s=vae_flops / (wide_peak * kappa),
        weights_gb=weights / 1e9,
        activations_gb=activations / 1e9,
        usable_gb=usable / 1e9,
        offloaded=offloaded,
        peak_flops=peak,
    )


def predict_video(q: VideoQuery, eff: Efficiency) -> VideoPrediction:
    """Seconds per video on `sequence_parallel` accelerators (by default the fastest degree that fits), with
    the count's remaining accelerators as further replicas."""
    _validate(q)
    compute_precision(q.accelerator, q.precision)
    degrees = _degrees(q)
    if q.sequence_parallel is not None:
        if q.sequence_parallel not in degrees:
            raise PerfError(
                f"--sequence-parallel {q.sequence_parallel} is not possible for {q.model.id} on {q.count} x "
                f"{q.accelerator.id}: the degree must be a power of two that divides the {q.model.num_heads} "
                f"heads, within one scale-up domain and the count. Choose from: {', '.join(map(str, degrees))}."
            )
        degrees = [q.sequence_parallel]
    best: VideoPrediction | None = None
    failure: DoesNotFitError | None = None
    for k in degrees:
        try:
            candidate = _predict_at(q, k, eff)
        except DoesNotFitError as exc:
            failure = exc
            continue
        if best is None or candidate.seconds_per_video < best.seconds_per_video:
            best = candidate
    if best is None:
        assert failure is not None
        raise failure
    return best


@dataclass(frozen=True)
class RealtimeNeed:
    """Accelerators of one kind that generate `rate` seconds of video per wall-clock second."""

    prediction: VideoPrediction  # one clip on the fewest accelerators-seconds
    rate: float

    @property
    def accelerators(self) -> int:
        """Whole groups of `sequence_parallel` accelerators, enough for the rate."""
        p = self.prediction
        groups = math.ceil(self.rate * p.compute_seconds_per_video_second / p.sequence_parallel - 1e-9)
        return max(groups, 1) * p.sequence_parallel

    def to_json(self) -> dict[str, Any]:
        p = self.prediction
        return {
            "accelerator": p.query.accelerator.id,
            "rate_video_seconds_per_second": self.rate,
            "accelerators": self.accelerators,
            "compute_seconds_per_video_second": p.compute_seconds_per_video_second,
            "clip_frames": p.query.frames,
            "clip_seconds": p.video_seconds,
            "clip_latency_s": p.seconds_per_video,
            "sequence_parallel": p.sequence_parallel,
        }


def clip_frames(model: VideoModelSpec, fps: float) -> int:
    """Frames of one clip at `fps` lasting as long as the model's default clip, rounded to the VAE's 1 + 4n."""
    seconds = model.frames / model.fps
    n = max(1, round((seconds * fps - 1) / model.vae_temporal))
    return 1 + n * model.vae_temporal


def realtime_fleet(
    model: VideoModelSpec,
    accelerator: Accelerator,
    width: int,
    height: int,
    fps: float,
    rate: float,
    eff: Efficiency,
    precision: Precision = "bf16",
    steps: int | None = None,
) -> RealtimeNeed:
    """How many accelerators generate `rate` seconds of `width`x`height` video at `fps` per wall-clock second,
    in clips of the model's default duration, each on the fewest accelerators it fits on (the cheapest way)."""
    if rate <= 0:
        raise PerfError(f"--rate must be positive seconds of video per second (got {rate}).")
    frames = clip_frames(model, fps)
    domain = accelerator.scale_up_domain or 8
    failure: DoesNotFitError | None = None
    for k in (2**i for i in range(int(math.log2(domain)) + 1)):
        if model.num_heads % k:
            continue
        q = VideoQuery(model, accelerator, k, width, height, frames, steps or model.steps, precision, k, fps)
        try:
            return RealtimeNeed(predict_video(q, eff), rate)
        except DoesNotFitError as exc:
            failure = exc
    assert failure is not None
    raise failure
