"""Mélange's input format (`gpu_info`, `workload_distribution`, `total_request_rate`, `slice_factor`) on
flopex's solver, with Mélange's whole-slice assignment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from flopex.errors import PlanError, first_validation_error
from flopex.plan._milp import solve
from flopex.plan._model import Candidate, Demand, Options, Solution

__all__ = ["MelangeInput", "melange_result", "read_melange", "solve_melange"]


class _Gpu(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: NonNegativeFloat
    tputs: list[list[NonNegativeFloat]] = Field(min_length=1)


class MelangeInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_info: dict[str, _Gpu] = Field(min_length=1)
    workload_distribution: list[list[NonNegativeFloat]] = Field(min_length=1)
    total_request_rate: PositiveFloat
    slice_factor: PositiveInt = 1


def read_melange(path: Path) -> MelangeInput:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file.") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    try:
        spec = MelangeInput.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{path}: {first_validation_error(exc)} (Mélange's format: gpu_info, workload_distribution, "
                        "total_request_rate, slice_factor).") from None  # fmt: skip
    shape = [len(row) for row in spec.workload_distribution]
    for gpu, info in spec.gpu_info.items():
        if [len(row) for row in info.tputs] != shape:
            raise PlanError(
                f"{path}: gpu_info.{gpu}.tputs has shape {[len(r) for r in info.tputs]} but workload_distribution "
                f"has {shape}; they must match bucket for bucket."
            )
    return spec


def solve_melange(spec: MelangeInput, time_limit_s: float = 10.0) -> Solution:
    weights = [p for row in spec.workload_distribution for p in row]
    rates = tuple(p * spec.total_request_rate for p in weights)
    labels = tuple(f"in{i}-out{j}" for i, row in enumerate(spec.workload_distribution) for j, _ in enumerate(row))
    candidates = [
        Candidate(
            id=gpu,
            workload="melange",
            offer=gpu,
            label=gpu,
            usd_per_hour=info.cost,
            capacity=tuple(t for row in info.tputs for t in row),
        )  # fmt: skip
        for gpu, info in spec.gpu_info.items()
    ]
    options = Options(utilisation=1.0, whole=True, slice_factor=spec.slice_factor, time_limit_s=time_limit_s,
                      mip_gap=1e-9)  # fmt: skip
    return solve(candidates, [Demand("melange", rates, labels)], options)


def melange_result(spec: MelangeInput, solution: Solution) -> dict[str, Any]:
    """Mélange's output: instances per GPU type and the cost per hour, plus flopex's solver report."""
    if not solution.feasible:
        raise PlanError(f"no mix of {', '.join(spec.gpu_info)} serves this load: {solution.message}")
    return {
        "instances": {gpu: solution.groups.get(gpu, 0) for gpu in spec.gpu_info},
        "cost_per_hour": round(solution.usd_per_hour, 6),
        "status": solution.status,
        "gap": solution.gap,
        "solve_seconds": solution.seconds,
    }
