"""Efficiency factors: the shipped table, user overlays on top of it, and the lookups the model makes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from flopex.catalog import Accelerator, Precision
from flopex.errors import CalibrationError, first_validation_error

__all__ = [
    "ENGINES",
    "Efficiency",
    "Engine",
    "EngineSettings",
    "Factor",
    "load_efficiency",
    "merge_efficiency",
]

Engine = Literal["vllm", "sglang", "trtllm", "other"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang", "trtllm", "other")


class Factor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float = Field(ge=0)
    source: str = Field(min_length=1)


class _Compute(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    peak_fraction: dict[Precision, Factor]
    half_tokens: Factor
    attention_fraction: Factor


class _Memory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: Factor
    reserve: Factor
    workspace_gb: Factor


class _Comm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: Factor
    latency_s: Factor
    pcie_gb_s: Factor


class EngineSettings(BaseModel):
    """What a serving engine costs and how it schedules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_overhead_s: NonNegativeFloat
    layer_overhead_s: NonNegativeFloat = Field(description="kernel launch and synchronisation per layer per step")
    request_overhead_s: NonNegativeFloat
    kv_reservation: Literal["full", "paged"] = Field(
        description="full: KV for input + output is reserved on admission; paged: blocks are taken as tokens arrive"
    )
    max_batch: PositiveInt
    max_batch_tokens: PositiveInt
    source: str = Field(min_length=1)


class _Pair(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: str
    engine: Engine
    value: PositiveFloat
    source: str = Field(min_length=1)


class _Software(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Factor
    pairs: list[_Pair]


class Measured(BaseModel):
    """Fractions of peak measured on one accelerator (by `flopex calibrate probe`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    peak_fraction: dict[Precision, float] = {}
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    source: str = Field(min_length=1)


class _Video(BaseModel):
    """Diffusion-transformer video generation (PyTorch pipelines such as diffusers and xDiT)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attention_fraction: Factor
    attention_by_accelerator: dict[str, Factor] = {}
    vae_decode_flops_per_pixel: Factor
    activation_multiple: Factor


class _Training(BaseModel):
    """Pre-training at scale: utilisation, failures, the scale-out network and the sharding assumption."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mfu: Factor
    mfu_by_accelerator: dict[str, Factor] = {}
    large_scale_count: PositiveInt
    large_scale_factor: Factor
    goodput: Factor
    fp8_speedup: Factor
    scale_out_gb_s: Factor
    global_batch_tokens: Factor
    state_bytes_per_param: Factor
    working_bytes_per_token_hidden: Factor


class Efficiency(BaseModel):
    """The whole table after every layer is applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    compute: _Compute
    memory: _Memory
    comm: _Comm
    engines: dict[Engine, EngineSettings]
    software: _Software
    default_engine: dict[str, Engine]
    accelerators: dict[str, Measured] = {}
    video: _Video
    training: _Training

    def engine_for(self, acc: Accelerator) -> Engine:
        return self.default_engine.get(acc.vendor, "other")

    def software_factor(self, vendor: str, engine: Engine) -> float:
        for pair in self.software.pairs:
            if pair.vendor.lower() == vendor.lower() and pair.engine == engine:
                return pair.value
        return self.software.default.value

    def peak_fraction(self, acc: Accelerator, precision: Precision) -> float:
        measured = self.accelerators.get(acc.id)
        if measured is not None and precision in measured.peak_fraction:
            return measured.peak_fraction[precision]
        return self.compute.peak_fraction[precision].value

    def usable_bytes(self, acc: Accelerator) -> float:
        """Memory one accelerator leaves for a workload: the reserve fraction, less the fixed workspace."""
        return acc.memory_gb * 1e9 * self.memory.reserve.value - self.memory.workspace_gb.value * 1e9

    def video_attention_fraction(self, acc: Accelerator) -> float:
        factor = self.video.attention_by_accelerator.get(acc.id)
        return (factor or self.video.attention_fraction).value

    def training_mfu(self, acc: Accelerator, count: int) -> float:
        """Step MFU (model FLOPs over the dense 16-bit peak) for `count` accelerators of this kind."""
        t = self.training
        factor = t.mfu_by_accelerator.get(acc.id) or t.mfu
        # the large-scale penalty phases in over one doubling beyond large_scale_count, so that more
        # accelerators never lengthen a run
        phase = min(max(math.log2(max(count, 1) / t.large_scale_count), 0.0), 1.0)
        return factor.value * (1 - (1 - t.large_scale_factor.value) * phase)

    def memory_fraction(self, acc: Accelerator) -> float:
        measured = self.accelerators.get(acc.id)
        if measured is not None and measured.memory_fraction is not None:
            return measured.memory_fraction
        return self.memory.fraction.value


def _merge(base: Any, top: Any) -> Any:
    """Overlay `top` on `base`: mappings merge key by key, software pairs by (vendor, engine), the rest replace."""
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(top, list) and all(isinstance(p, Mapping) for p in base + top):
        by_key = {(str(p.get("vendor", "")).lower(), p.get("engine")): p for p in base}
        for pair in top:
            by_key[(str(pair.get("vendor", "")).lower(), pair.get("engine"))] = pair
        return list(by_key.values())
    return top


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such file.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CalibrationError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a mapping with keys such as compute, memory, engines, software.")
    return data


def merge_efficiency(base: Efficiency, overlay: Mapping[str, Any], where: str) -> Efficiency:
    """`base` with `overlay` applied; an invalid result names the overlay and the field."""
    try:
        return Efficiency.model_validate(_merge(base.model_dump(mode="json"), overlay))
    except ValidationError as exc:
        raise CalibrationError(
            f"{where}: {first_validation_error(exc)}. Compare with flopex's own table, "
            "src/flopex/data/efficiency.yaml, which has the same format."
        ) from None


def load_efficiency(overlays: Sequence[Path] = ()) -> Efficiency:
    """The shipped efficiency table with each overlay file applied in order."""
    text = resources.files("flopex.data").joinpath("efficiency.yaml").read_text(encoding="utf-8")
    table = Efficiency.model_validate(yaml.safe_load(text))
    for path in overlays:
        table = merge_efficiency(table, _read(path), str(path))
    return table
