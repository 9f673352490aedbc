"""Calibration: compare predictions with published measurements, and fit a few efficiency factors to them.

Measurements use the format of `llm-serving.yaml`: `points`, each with model, accelerator, count, precision,
engine, scenario (and optional slo and tensor_parallel), input and output tokens, and `measured` figures among
output_tokens_per_s, ttft_mean_s and tpot_mean_s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError
from scipy.optimize import least_squares

from flopex.catalog import AcceleratorTable, Precision
from flopex.errors import CalibrationError, FlopexError, first_validation_error
from flopex.models import resolve_model
from flopex.perf._efficiency import Efficiency, Engine, merge_efficiency
from flopex.perf._predict import LLMQuery, Prediction, parse_scenario, predict_llm

__all__ = [
    "METRICS",
    "CalibrationPoint",
    "Comparison",
    "FitResult",
    "compare",
    "default_parameters",
    "fit",
    "load_points",
]

Metric = Literal["output_tokens_per_s", "ttft_mean_s", "tpot_mean_s"]
METRICS: dict[Metric, Callable[[Prediction], float]] = {
    "output_tokens_per_s": lambda p: p.output_tokens_per_s,
    "ttft_mean_s": lambda p: p.point.ttft_s,
    "tpot_mean_s": lambda p: p.point.tpot_s,
}


class _Slo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_p99_s: PositiveFloat | None = None
    tpot_p99_s: PositiveFloat | None = None


class CalibrationPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    model: str
    accelerator: str
    count: PositiveInt
    tensor_parallel: PositiveInt | None = None
    precision: Precision
    engine: Engine
    scenario: str
    slo: _Slo = _Slo()
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    measured: dict[Metric, PositiveFloat] = Field(min_length=1)
    source: str = Field(min_length=1)


def load_points(path: Path) -> list[CalibrationPoint]:
    """Every point of a measurements file; a bad point names its index, id and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such file.") from None
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise CalibrationError(f"{path}: expected a mapping with a `points:` list (the format of llm-serving.yaml).")
    points = []
    for index, raw in enumerate(data["points"]):
        try:
            points.append(CalibrationPoint.model_validate(raw))
        except ValidationError as exc:
            name = raw.get("id", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
            raise CalibrationError(f"{path}: point {name}: {first_validation_error(exc)}.") from None
    if not points:
        raise CalibrationError(f"{path}: `points:` is empty; add at least one measurement.")
    return points


def _query(point: CalibrationPoint, accelerators: AcceleratorTable) -> LLMQuery:
    return LLMQuery(
        model=resolve_model(point.model),
        accelerator=accelerators.resolve(point.accelerator),
        count=point.count,
        precision=point.precision,
        input_tokens=point.input_tokens,
        output_tokens=point.output_tokens,
        scenario=parse_scenario(point.scenario, point.slo.ttft_p99_s, point.slo.tpot_p99_s),
        engine=point.engine,
        tensor_parallel=point.tensor_parallel,
    )


@dataclass(frozen=True)
class Comparison:
    point: str
    metric: Metric
    measured: float
    predicted: float
    layout: str
    source: str

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1


def compare(points: Sequence[CalibrationPoint], eff: Efficiency, accelerators: AcceleratorTable) -> list[Comparison]:
    """Measured against predicted for every figure of every point."""
    rows = []
    for point in points:
        try:
            prediction = predict_llm(_query(point, accelerators), eff)
        except FlopexError as exc:
            raise CalibrationError(f"point {point.id}: {exc}") from None
        for metric, value in point.measured.items():
            rows.append(
                Comparison(point.id, metric, value, METRICS[metric](prediction), str(prediction.layout), point.source)
            )
    return rows


# --- fitting ------------------------------------------------------------------------------------------------

#: Bounds of every parameter `fit` may move, addressed by a dotted path into the efficiency table.
_BOUNDS: dict[str, tuple[float, float]] = {
    "compute.peak_fraction": (0.2, 0.8),
    "compute.half_tokens": (10.0, 2000.0),
    "compute.attention_fraction": (0.1, 1.0),
    "memory.fraction": (0.4, 0.98),
    "comm.fraction": (0.3, 1.0),
    "software": (0.3, 1.0),
    "engines": (0.0, 0.2),
}


def default_parameters(points: Sequence[CalibrationPoint], accelerators: AcceleratorTable) -> list[str]:
    """The few factors the points can inform: compute efficiency of each precision measured, memory and
    link efficiency, one software factor per (vendor, engine) other than the NVIDIA/TRT-LLM reference, and the
    per-request overhead of engines with measured TTFT."""
    params: list[str] = []
    for p in dict.fromkeys(pt.precision for pt in points):
        params.append(f"compute.peak_fraction.{'bf16' if p in ('int4', 'fp16') else p}")
    params += ["memory.fraction", "comm.fraction"]
    for pt in points:
        vendor = accelerators.resolve(pt.accelerator).vendor
        if (vendor, pt.engine) != ("NVIDIA", "trtllm"):
            params.append(f"software.{vendor}.{pt.engine}")
        if "ttft_mean_s" in pt.measured:
            params.append(f"engines.{pt.engine}.request_overhead_s")
    return list(dict.fromkeys(params))


def _bounds(name: str) -> tuple[float, float]:
    for prefix, bound in _BOUNDS.items():
        if name.startswith(prefix):
            return bound
    raise CalibrationError(
        f"cannot fit {name!r}: flopex fits compute.peak_fraction.<precision>, compute.half_tokens, "
        "compute.attention_fraction, memory.fraction, comm.fraction, software.<vendor>.<engine> and "
        "engines.<engine>.<overhead>."
    )


def _get(eff: Efficiency, name: str) -> float:
    parts = name.split(".")
    if parts[0] == "software":
        return eff.software_factor(parts[1], parts[2])  # type: ignore[arg-type]
    node: Any = eff.model_dump()
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            raise CalibrationError(f"cannot fit {name!r}: no such factor in the efficiency table.")
        node = node[part]
    return float(node["value"] if isinstance(node, Mapping) else node)


def _overlay(names: Sequence[str], values: Sequence[float], note: str) -> dict[str, Any]:
    """The overlay (in the efficiency file's format) that sets each named factor."""
    overlay: dict[str, Any] = {}
    pairs: list[dict[str, Any]] = []
    for name, value in zip(names, values, strict=True):
        parts = name.split(".")
        if parts[0] == "software":
            pairs.append({"vendor": parts[1], "engine": parts[2], "value": round(float(value), 4), "source": note})
            continue
        node = overlay
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[0] == "engines":
            node[parts[-1]] = round(float(value), 6)
        else:
            node[parts[-1]] = {"value": round(float(value), 4), "source": note}
    if pairs:
        overlay["software"] = {"pairs": pairs}
    return overlay


@dataclass(frozen=True)
class FitResult:
    parameters: dict[str, tuple[float, float]]  # name -> (before, after)
    overlay: dict[str, Any]
    before: list[Comparison]
    after: list[Comparison]


def fit(
    points: Sequence[CalibrationPoint],
    eff: Efficiency,
    accelerators: AcceleratorTable,
    parameters: Sequence[str] | None = None,
    note: str = "fitted by flopex calibrate fit",
) -> FitResult:
    """Least squares on log(predicted / measured) over every measured figure, within physical bounds."""
    names = list(parameters or default_parameters(points, accelerators))
    low, high = np.array([_bounds(n)[0] for n in names]), np.array([_bounds(n)[1] for n in names])
    start = np.array([_get(eff, n) for n in names])
    start = np.clip(start, low, high)

    def table(x: np.ndarray) -> Efficiency:
        return merge_efficiency(eff, _overlay(names, list(x), note), "fit")

    def residuals(x: np.ndarray) -> np.ndarray:
        rows = compare(points, table(x), accelerators)
        return np.array([math.log(r.predicted / r.measured) for r in rows])

    solution = least_squares(residuals, start, bounds=(low, high), diff_step=[1e-3] * len(names), x_scale="jac")
    fitted = table(solution.x)
    return FitResult(
        parameters={n: (float(a), float(b)) for n, a, b in zip(names, start, solution.x, strict=True)},
        overlay=_overlay(names, list(solution.x), note),
        before=compare(points, eff, accelerators),
        after=compare(points, fitted, accelerators),
    )
