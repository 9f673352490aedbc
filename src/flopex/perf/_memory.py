"""Precisions, weights, the KV cache and how much of it fits."""

from __future__ import annotations

from dataclasses import dataclass

from flopex.catalog import Accelerator, Precision
from flopex.errors import UnsupportedPrecisionError
from flopex.models import ModelSpec
from flopex.perf._efficiency import Efficiency, EngineSettings

__all__ = [
    "BYTES",
    "Layout",
    "MemoryPlan",
    "compute_precision",
    "default_kv_precision",
    "memory_plan",
    "weight_bytes",
]

#: Bytes per stored value at each precision.
BYTES: dict[Precision, float] = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "fp4": 0.5}
_GB = 1e9


#: What to try instead of a precision a chip lacks, nearest first.
_FALLBACKS: dict[Precision, tuple[Precision, ...]] = {
    "fp4": ("fp8", "int8", "int4"),
    "fp8": ("int8", "bf16", "fp16"),
    "int8": ("fp8", "bf16", "fp16"),
    "int4": ("int8", "fp8"),
    "bf16": ("fp16",),
    "fp16": ("bf16",),
}


def compute_precision(acc: Accelerator, precision: Precision, flag: str = "--precision") -> Precision:
    """The matrix-unit precision that runs `precision` on `acc`, or a clear error.

    int4 is weight-only quantisation (W4A16, as AWQ/GPTQ/Marlin kernels run it): weights are stored at 4 bits
    and multiplied at the chip's 16-bit rate. Every other precision needs native matrix units.
    """
    if precision == "int4":
        sixteen: tuple[Precision, ...] = ("bf16", "fp16")
        for p in sixteen:
            if acc.runs(p):
                return p
    elif acc.runs(precision):
        return precision
    native = [p for p in acc.tflops if p in BYTES]
    instead = next((p for p in _FALLBACKS[precision] if acc.runs(p)), native[0])
    raise UnsupportedPrecisionError(
        f"{acc.id} has no native {precision} matrix units; it runs {', '.join(native)}"
        + (" (and int4 weight-only on its 16-bit units)" if {"bf16", "fp16"} & set(native) else "")
        + f". To fix: pass {flag} {instead} or choose an accelerator that runs {precision} "
        "(see `flopex hardware list`)."
    )


def default_kv_precision(acc: Accelerator, precision: Precision) -> Precision:
    """FP8 KV cache when the weights are 8-bit or narrower and the chip runs FP8 (as MLPerf and NIM serve);
    otherwise the chip's 16-bit type."""
    if BYTES[precision] <= 1 and acc.runs("fp8"):
        return "fp8"
    return "bf16" if acc.runs("bf16") else "fp16"


def weight_bytes(model: ModelSpec, precision: Precision) -> float:
    """Stored weights: transformer blocks at `precision`, embeddings and the output head at 16 bits."""
    embed = model.embedding_params
    return (model.total_params - embed) * BYTES[precision] + embed * 2


@dataclass(frozen=True)
class Layout:
    """How `count` accelerators are arranged: tensor x pipeline parallel per replica, times replicas."""

    tensor_parallel: int
    pipeline_parallel: int
    replicas: int

    @property
    def per_replica(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    def __str__(self) -> str:
        pp = f" x PP{self.pipeline_parallel}" if self.pipeline_parallel > 1 else ""
        return f"{self.replicas} x (TP{self.tensor_parallel}{pp})"


@dataclass(frozen=True)
class MemoryPlan:
    """Memory of one replica, in bytes, and the KV cache it leaves."""

    usable: float
    weights: float
    workspace: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int

    @property
    def kv_bytes(self) -> float:
        return max(0.0, self.usable - self.weights - self.workspace)

    @property
    def fits(self) -> bool:
        return self.kv_capacity_tokens > 0


def memory_plan(
    model: ModelSpec,
    acc: Accelerator,
    precision: Precision,
    kv_precision: Precision,
    layout: Layout,
    eff: Efficiency,
    engine: EngineSettings,
) -> MemoryPlan:
    """Weights, workspace and KV capacity of one replica.

    Workspace per accelerator: a fixed allowance plus the activations of the largest step
    (max_batch_tokens x (4·d + 2·ff/TP) values at 16 bits). Under TP the KV cache splits by KV head and is
    replicated once TP exceeds the KV heads (always, for MLA's single latent).
    """
    n = layout.per_replica
    usable = n * acc.memory_gb * _GB * eff.memory.reserve.value
    moe = model.moe
    ffn = model.intermediate_size if moe is None else moe.expert_intermediate_size * moe.experts_per_token
    activations = engine.max_batch_tokens * (4 * model.hidden_size + 2 * ffn / layout.tensor_parallel) * 2
    workspace = n * (eff.memory.workspace_gb.value * _GB + activations)
    replication = layout.tensor_parallel / min(layout.tensor_parallel, model.kv_shards)
    kv_per_token = model.kv_elements_per_token * BYTES[kv_precision] * replication
    weights = weight_bytes(model, precision)
    free = usable - weights - workspace
    capacity = int(free // kv_per_token) if free > 0 else 0
    return MemoryPlan(usable, weights, workspace, kv_per_token, capacity)
