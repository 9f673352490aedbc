"""Time of one engine step: a per-operator roofline summed over the layers of one replica."""

from __future__ import annotations

from dataclasses import dataclass

from flopex.catalog import Accelerator, Precision
from flopex.models import ModelSpec
from flopex.perf._efficiency import Efficiency, Engine, EngineSettings
from flopex.perf._memory import BYTES, Layout, compute_precision

__all__ = ["Batch", "Rates", "StepTime", "rates_for", "step_time"]

_ACT_BYTES = 2  # activations travel at 16 bits between layers and across tensor-parallel ranks


@dataclass(frozen=True)
class Rates:
    """What one accelerator of a replica achieves, efficiency already applied (FLOP/s and bytes/s)."""

    gemm_flops: float  # eta_max x kappa x dense peak at the compute precision
    half_tokens: float
    attention_flops: float
    memory_bw: float
    link_bw: float  # one direction, per accelerator, comm efficiency applied
    link_latency_s: float
    peak_flops: float  # datasheet peak at the compute precision (for utilisation)
    peak_bw: float
    weight_bytes: float  # per parameter, transformer blocks
    step_overhead_s: float
    layer_overhead_s: float

    def gemm_efficiency(self, tokens: float) -> float:
        """Fraction of `gemm_flops` a GEMM of `tokens` rows reaches: eta(n) = n / (n + n_half)."""
        return tokens / (tokens + self.half_tokens)


def rates_for(
    acc: Accelerator,
    precision: Precision,
    kv_precision: Precision,
    engine: Engine,
    settings: EngineSettings,
    eff: Efficiency,
) -> Rates:
    """Effective per-accelerator rates for a (chip, precision, engine) triple."""
    kappa = eff.software_factor(acc.vendor, engine)
    cp = compute_precision(acc, precision)
    peak = acc.tflops[cp] * 1e12
    attn_precision = "fp8" if kv_precision == "fp8" and acc.runs("fp8") else cp
    attn_peak = acc.tflops.get(attn_precision, acc.tflops[cp]) * 1e12
    link = acc.scale_up_gb_s or eff.comm.pcie_gb_s.value
    peak_frac = eff.peak_fraction(acc, cp)
    # narrow weights can always be multiplied on the 16-bit units (weight-only), so never slower than those
    wide: Precision = "bf16" if acc.runs("bf16") else "fp16"
    gemm = max(peak * peak_frac, acc.tflops.get(wide, 0.0) * 1e12 * eff.peak_fraction(acc, wide))
    return Rates(
        gemm_flops=gemm * kappa,
        half_tokens=eff.compute.half_tokens.value,
        attention_flops=attn_peak * peak_frac * eff.compute.attention_fraction.value * kappa,
        memory_bw=acc.memory_bandwidth_tb_s * 1e12 * eff.memory_fraction(acc) * kappa,
        link_bw=link * 1e9 / 2 * eff.comm.fraction.value,
        link_latency_s=eff.comm.latency_s.value,
        peak_flops=peak,
        peak_bw=acc.memory_bandwidth_tb_s * 1e12,
        weight_bytes=BYTES[precision],
        step_overhead_s=settings.step_overhead_s,
        layer_overhead_s=settings.layer_overhead_s,
    )


@dataclass(frozen=True)
class Batch:
    """The work of one step of one replica.

    decode: sequences producing one token each, at mean context `context`;
    prefill_tokens: prompt tokens processed in this step; prefill_pairs: their (query, key) attention pairs;
    logits: tokens whose next-token distribution is computed (decode sequences plus finished prompts).
    """

    decode: float
    context: float
    prefill_tokens: float = 0.0
    prefill_pairs: float = 0.0
    logits: float = 0.0

    @property
    def tokens(self) -> float:
        return self.decode + self.prefill_tokens


@dataclass(frozen=True)
class StepTime:
    """Seconds of one step split by what bounds each part, with the work done (per accelerator)."""

    compute_s: float  # operators limited by arithmetic
    memory_s: float  # operators limited by memory bandwidth
    comm_s: float
    overhead_s: float
    flops: float
    bytes: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.memory_s + self.comm_s + self.overhead_s


class _Acc:
    """Accumulates operators: each takes max(compute, memory) and is filed under what bounds it."""

    def __init__(self) -> None:
        self.compute = self.memory = self.flops = self.bytes = 0.0

    def add(self, flops: float, flops_per_s: float, nbytes: float, bytes_per_s: float, times: float = 1) -> None:
        tc, tm = flops / flops_per_s if flops else 0.0, nbytes / bytes_per_s
        if tc >= tm:
            self.compute += tc * times
        else:
            self.memory += tm * times
        self.flops += flops * times
        self.bytes += nbytes * times


def _linear(acc: _Acc, r: Rates, tokens: float, params: float, d: int, tp: int, layers: float) -> None:
    """Weight matrices of `params` values fed by `d`-wide activations, split over `tp` ranks."""
    if layers <= 0 or params <= 0:
        return
    flops = 2 * tokens * params / tp
    activations = tokens * (d + params / (d * tp)) * _ACT_BYTES
    nbytes = params * r.weight_bytes / tp + activations
    acc.add(flops, r.gemm_flops * r.gemm_efficiency(tokens), nbytes, r.memory_bw, layers)


def step_time(model: ModelSpec, layout: Layout, r: Rates, kv_bytes_per_token: float, batch: Batch) -> StepTime:
    """One step of one replica: every layer's GEMMs, attention and all-reduces, the output head, overhead.

    With pipeline parallelism the batch is split into one micro-batch per stage; a token crosses every stage,
    so the step (and TPOT) is the sum over stages of a micro-batch's time.
    """
    tp, pp = layout.tensor_parallel, layout.pipeline_parallel
    m = batch.tokens / pp  # tokens per micro-batch
    acc = _Acc()
    L = model.num_layers
    d = model.hidden_size
    _linear(acc, r, m, model.attention_params, d, tp, L)
    _linear(acc, r, m, model.dense_mlp_params, d, tp, model.dense_layers)
    if model.moe is not None:
        moe = model.moe
        _linear(acc, r, m, model.shared_expert_params, d, tp, model.moe_layers)
        touched = moe.num_experts * (1 - (1 - moe.experts_per_token / moe.num_experts) ** m)
        per_expert = m * moe.experts_per_token / touched
        flops = 2 * m * moe.experts_per_token * model.expert_params / tp
        nbytes = touched * model.expert_params * r.weight_bytes / tp
        rate = r.gemm_flops * r.gemm_efficiency(per_expert)
        acc.add(flops, rate, nbytes, r.memory_bw, model.moe_layers)
    head = model.vocab_size * model.hidden_size
    logits = max(batch.logits / pp, 1.0)
    rate = r.gemm_flops * r.gemm_efficiency(logits)
    acc.add(2 * logits * head / tp, rate, head * 2 / tp, r.memory_bw)
    # attention: decode reads each sequence's cache; prefill is causal attention over the prompt
    # (kv_bytes_per_token is the replica's, replication included, so each rank reads 1/tp of it)
    pairs = batch.decode / pp * batch.context
    attention = pairs * model.attention_flops_per_pair / tp
    acc.add(attention, r.attention_flops, pairs * kv_bytes_per_token / tp, r.memory_bw)
    if batch.prefill_pairs:
        prefill_flops = batch.prefill_pairs / pp * model.attention_flops_per_pair / tp
        acc.add(prefill_flops, r.attention_flops, batch.prefill_tokens / pp * kv_bytes_per_token / tp, r.memory_bw)
    comm = 0.0
    if tp > 1:
        message = m * model.hidden_size * _ACT_BYTES
        comm = 2 * L * (2 * (tp - 1) / tp * message / r.link_bw + r.link_latency_s)
    if pp > 1:
        comm += (pp - 1) / pp * (m * model.hidden_size * _ACT_BYTES / r.link_bw + r.link_latency_s)
    return StepTime(
        compute_s=acc.compute,
        memory_s=acc.memory,
        comm_s=comm,
        overhead_s=r.step_overhead_s + L * r.layer_overhead_s,
        flops=acc.flops,
        bytes=acc.bytes,
    )
