"""Pre-training: model FLOPs, the utilisation reached at scale, the network and memory checks, time and energy.

Model FLOPs per token are 6·N (N active parameters: forward 2·N, backward 4·N) plus attention, 6·L·n_ctx·d
(Kaplan et al.'s forward 2·L·n_ctx·d with a causal mask, times three). Time is FLOPs over MFU x the dense
16-bit peak (x a speedup for FP8), divided by goodput for failures and restarts.

Stated assumptions:
- Sharding: weights, gradients and optimizer state fully sharded over all accelerators (FSDP / ZeRO-3);
  activations recomputed per layer, one sequence per accelerator per micro-step.
- Layout: tensor parallelism (a power of two dividing the heads) across one scale-up domain, and the fewest
  pipeline stages (powers of two, up to the layer count) whose data-parallel gradient reduction hides behind
  the step's compute, as large runs do (Llama 3 405B: TP8 x PP16 on 16K H100). Pipeline bubbles are inside
  the measured MFU.
- Network: each accelerator reduces its shard of the gradients (16-bit) over the scale-out network with a
  ring across the data-parallel replicas, overlapped with the backward pass; a step is never faster than it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flopex.catalog import Accelerator, Precision
from flopex.errors import DoesNotFitError, PerfError
from flopex.models import ModelSpec
from flopex.perf._efficiency import Efficiency

__all__ = ["TrainingPrediction", "TrainingQuery", "min_training_count", "predict_training", "training_flops"]

_GRAD_BYTES = 2  # gradients reduced at 16 bits
_CHECKPOINT_BYTES = 2  # one 16-bit hidden state per token per layer kept for recomputation


@dataclass(frozen=True)
class TrainingQuery:
    model: ModelSpec
    accelerator: Accelerator
    count: int
    tokens: float
    precision: Precision = "bf16"
    sequence_length: int = 4096
    global_batch_tokens: float | None = None  # None: the efficiency table's
    tensor_parallel_limit: int | None = None  # accelerators that share a scale-up fabric (one instance)


def training_flops(model: ModelSpec, tokens: float, sequence_length: int) -> float:
    """Model FLOPs of a run: (6·N_active + 6·L·n_ctx·d) per token."""
    per_token = 6 * model.active_params + 6 * model.num_layers * sequence_length * model.hidden_size
    return per_token * tokens


def _memory_per_accelerator(q: TrainingQuery, eff: Efficiency, count: int) -> tuple[float, float, float]:
    """(sharded state, activations, usable) in bytes per accelerator."""
    m, t = q.model, eff.training
    state = m.total_params * t.state_bytes_per_param.value / count
    per_token = m.hidden_size * (_CHECKPOINT_BYTES * m.num_layers + t.working_bytes_per_token_hidden.value)
    activations = q.sequence_length * per_token
    usable = eff.usable_bytes(q.accelerator)
    return state, activations, usable


def min_training_count(q: TrainingQuery, eff: Efficiency) -> int:
    """The fewest accelerators whose memory holds the sharded training state and one sequence's activations."""
    state, activations, usable = _memory_per_accelerator(q, eff, 1)
    room = usable - activations
    if room <= 0:
        raise DoesNotFitError(
            f"one {q.sequence_length:,}-token sequence of {q.model.id} needs {activations / 1e9:,.1f} GB of "
            f"activations even with recomputation, more than the {usable / 1e9:,.1f} GB usable on one "
            f"{q.accelerator.id}. To fix: shorten --sequence-length, or choose an accelerator with more memory "
            "(tensor and context parallelism are not modelled)."
        )
    return max(1, math.ceil(state / room))


@dataclass(frozen=True)
class TrainingPrediction:
    query: TrainingQuery
    flops: float
    mfu: float  # model FLOPs over the dense 16-bit peak, steady steps
    table_mfu: float  # what the efficiency table gives before the network check
    goodput: float
    precision_speedup: float
    compute_s_per_step: float
    network_s_per_step: float
    steps: float
    tensor_parallel: int
    pipeline_parallel: int
    min_count: int
    state_gb: float
    activations_gb: float
    usable_gb: float
    peak_flops: float

    @property
    def network_bound(self) -> bool:
        return self.network_s_per_step > self.compute_s_per_step

    @property
    def accelerator_hours(self) -> float:
        rate = self.mfu * self.precision_speedup * self.peak_flops * self.goodput
        return self.flops / rate / 3600

    @property
    def wall_days(self) -> float:
        return self.accelerator_hours / self.query.count / 24

    @property
    def energy_kwh(self) -> float | None:
        """Accelerators at TDP for every accelerator-hour (as the Llama papers count it); host and PUE excluded."""
        tdp = self.query.accelerator.tdp_w
        return None if tdp is None else self.accelerator_hours * tdp / 1000

    def to_json(self) -> dict[str, Any]:
        q = self.query
        return {
            "model": q.model.id,
            "accelerator": q.accelerator.id,
            "count": q.count,
            "tokens": q.tokens,
            "precision": q.precision,
            "sequence_length": q.sequence_length,
            "accelerator_hours": self.accelerator_hours,
            "wall_days": self.wall_days,
            "mfu": self.mfu,
            "goodput": self.goodput,
            "precision_speedup": self.precision_speedup,
            "flops": self.flops,
            "energy_kwh": self.energy_kwh,
            "min_count": self.min_count,
            "steps": self.steps,
            "tensor_parallel": self.tensor_parallel,
            "pipeline_parallel": self.pipeline_parallel,
            "data_parallel": self.query.count // (self.tensor_parallel * self.pipeline_parallel),
            "step_s": {"compute": self.compute_s_per_step, "network": self.network_s_per_step},
            "network_bound": self.network_bound,
            "memory_gb": {"usable": self.usable_gb, "state": self.state_gb, "activations": self.activations_gb},
        }


def _layout(q: TrainingQuery, batch: float, compute_s: float, scale_out: float) -> tuple[int, int, float]:
    """(tensor, pipeline, gradient-reduction seconds per step): the fewest stages that hide the reduction.

    A layout is feasible when every data-parallel replica gets at least one sequence per step; when none
    hides the reduction, the one that exposes least of it.
    """
    limit = min(q.accelerator.scale_up_domain or 1, q.count, q.tensor_parallel_limit or q.count)
    tp = 1
    while tp * 2 <= limit and q.model.num_heads % (tp * 2) == 0:
        tp *= 2
    options: list[tuple[bool, float, int, int]] = []
    pp = 1
    while pp <= q.model.num_layers and tp * pp <= q.count:
        dp = q.count // (tp * pp)
        shard = q.model.total_params * _GRAD_BYTES / (tp * pp)
        network = 2 * (dp - 1) / dp * shard / scale_out
        feasible = dp * q.sequence_length <= batch
        if feasible and network <= compute_s:
            return tp, pp, network
        options.append((not feasible, network, tp, pp))
        pp *= 2
    _, network, tp, pp = min(options)
    return tp, pp, network


def predict_training(q: TrainingQuery, eff: Efficiency) -> TrainingPrediction:
    """Accelerator-hours, wall-clock days and energy of a pre-training run on `count` accelerators."""
    if q.count < 1 or q.tokens <= 0 or q.sequence_length < 1:
        raise PerfError("--count, --tokens and --sequence-length must each be positive.")
    acc, t = q.accelerator, eff.training
    if q.precision not in ("bf16", "fp16", "fp8"):
        raise PerfError(
            f"--precision {q.precision}: flopex models training at bf16, fp16 or fp8. To fix: pass bf16 or fp8."
        )
    wide: Precision = "bf16" if acc.runs("bf16") else "fp16"
    if not acc.runs(wide) or (q.precision == "fp8" and not acc.runs("fp8")):
        runs = ", ".join(acc.tflops)
        raise PerfError(
            f"{acc.id} cannot train at {q.precision}: it runs {runs}. To fix: pass --precision "
            f"{'bf16' if acc.runs('bf16') else 'fp16'} or choose another accelerator."
        )
    if q.sequence_length > q.model.max_context:
        raise PerfError(
            f"--sequence-length {q.sequence_length:,} exceeds {q.model.id}'s context of {q.model.max_context:,}."
        )
    needed = min_training_count(q, eff)
    state, activations, usable = _memory_per_accelerator(q, eff, q.count)
    if q.count < needed:
        raise DoesNotFitError(
            f"{q.model.id} does not fit for training on {q.count} x {acc.id}: fully sharded state takes "
            f"{state / 1e9:,.1f} GB per accelerator plus {activations / 1e9:,.1f} GB of activations, against "
            f"{usable / 1e9:,.1f} GB usable. What would fit: --count {needed} or more."
        )
    peak = acc.tflops[wide] * 1e12
    speedup = t.fp8_speedup.value if q.precision == "fp8" else 1.0
    table_mfu = eff.training_mfu(acc, q.count)
    batch = q.global_batch_tokens or t.global_batch_tokens.value
    flops = training_flops(q.model, q.tokens, q.sequence_length)
    per_step_flops = flops / q.tokens * batch
    compute = per_step_flops / (q.count * table_mfu * speedup * peak)
    tp, pp, network = _layout(q, batch, compute, t.scale_out_gb_s.value * 1e9)
    mfu = table_mfu if network <= compute else table_mfu * compute / network
    return TrainingPrediction(
        query=q,
        flops=flops,
        mfu=mfu,
        table_mfu=table_mfu,
        goodput=t.goodput.value,
        precision_speedup=speedup,
        compute_s_per_step=compute,
        network_s_per_step=network,
        steps=q.tokens / batch,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        min_count=needed,
        state_gb=state / 1e9,
        activations_gb=activations / 1e9,
        usable_gb=usable / 1e9,
        peak_flops=peak,
    )
