"""Calibration: compare predictions with published measurements, and fit a few efficiency factors to them.

A measurements file may hold three lists:
- `points` (the format of `llm-serving.yaml`): LLM serving, each with model, accelerator, count, precision,
  engine, scenario (and optional slo and tensor_parallel), input and output tokens, and `measured` figures among
  output_tokens_per_s, ttft_mean_s and tpot_mean_s;
- `video` (the format of `video-training.yaml`): model, accelerator, count, width, height, frames, steps and
  `measured: {seconds_per_video}`;
- `training`: model, accelerator, tokens, precision (optional count, sequence_length, global_batch_tokens) and
  `measured: {accelerator_hours}`.
Every entry may say `role: check`: it is reported but not fitted (published figures kept to test the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError
from scipy.optimize import least_squares

from flopex.catalog import AcceleratorTable, Precision
from flopex.errors import CalibrationError, FlopexError, first_validation_error
from flopex.models import resolve_model, resolve_video_model
from flopex.perf._efficiency import Efficiency, Engine, merge_efficiency
from flopex.perf._predict import LLMQuery, Prediction, parse_scenario, predict_llm
from flopex.perf._training import TrainingQuery, min_training_count, predict_training
from flopex.perf._video import VideoQuery, predict_video

__all__ = [
    "METRICS",
    "CalibrationPoint",
    "Comparison",
    "Point",
    "TrainingPoint",
    "VideoPoint",
    "FitResult",
    "compare",
    "default_parameters",
    "fit",
    "load_points",
]

Metric = Literal["output_tokens_per_s", "ttft_mean_s", "tpot_mean_s", "seconds_per_video", "accelerator_hours"]
Role = Literal["calibrate", "check"]
METRICS: dict[str, Callable[[Prediction], float]] = {
    "output_tokens_per_s": lambda p: p.output_tokens_per_s,
    "ttft_mean_s": lambda p: p.point.ttft_s,
    "tpot_mean_s": lambda p: p.point.tpot_s,
}


class _Slo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_p99_s: PositiveFloat | None = None
    tpot_p99_s: PositiveFloat | None = None


class _Point(BaseModel):
    """What every measured point names first: its id, whether it calibrates or checks, the model and the chip
    (each kind ends with its figures and where they were published)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    role: Role = "calibrate"
    model: str
    accelerator: str


class CalibrationPoint(_Point):
    count: PositiveInt
    tensor_parallel: PositiveInt | None = None
    precision: Precision
    engine: Engine
    scenario: str
    slo: _Slo = _Slo()
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    measured: dict[Literal["output_tokens_per_s", "ttft_mean_s", "tpot_mean_s"], PositiveFloat] = Field(min_length=1)
    source: str = Field(min_length=1)


class _VideoMeasured(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds_per_video: PositiveFloat


class VideoPoint(_Point):
    count: PositiveInt
    sequence_parallel: PositiveInt | None = None
    precision: Precision = "bf16"
    width: PositiveInt
    height: PositiveInt
    frames: PositiveInt
    steps: PositiveInt
    measured: _VideoMeasured
    source: str = Field(min_length=1)


class _TrainingMeasured(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accelerator_hours: PositiveFloat


class TrainingPoint(_Point):
    count: PositiveInt | None = Field(None, description="unpublished: the fewest that fit, at least one domain")
    tokens: PositiveFloat
    precision: Precision = "bf16"
    sequence_length: PositiveInt = 4096
    global_batch_tokens: PositiveFloat | None = None
    measured: _TrainingMeasured
    source: str = Field(min_length=1)


Point = CalibrationPoint | VideoPoint | TrainingPoint
_SECTIONS: dict[str, type[CalibrationPoint] | type[VideoPoint] | type[TrainingPoint]] = {
    "points": CalibrationPoint,
    "video": VideoPoint,
    "training": TrainingPoint,
}


def load_points(path: Path) -> list[Point]:
    """Every point of a measurements file; a bad point names its index, id and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such file.") from None
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(k), list) for k in _SECTIONS):
        raise CalibrationError(
            f"{path}: expected a mapping with a `points:` list (the format of llm-serving.yaml) or `video:` and "
            "`training:` lists (the format of video-training.yaml)."
        )
    points: list[Point] = []
    for section, kind in _SECTIONS.items():
        for index, raw in enumerate(data.get(section) or []):
            try:
                points.append(kind.model_validate(raw))
            except ValidationError as exc:
                name = raw.get("id", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
                label = "point" if section == "points" else f"{section} point"
                raise CalibrationError(f"{path}: {label} {name}: {first_validation_error(exc)}.") from None
    if not points:
        raise CalibrationError(f"{path}: its lists are empty; add at least one measurement.")
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
    role: Role = "calibrate"

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1


def _compare_one(point: Point, eff: Efficiency, accelerators: AcceleratorTable) -> list[Comparison]:
    acc = accelerators.resolve(point.accelerator)
    if isinstance(point, VideoPoint):
        model = resolve_video_model(point.model)
        vq = VideoQuery(
            model,
            acc,
            point.count,
            point.width,
            point.height,
            point.frames,
            point.steps,
            point.precision,
            point.sequence_parallel,
        )
        video = predict_video(vq, eff)
        m = point.measured.seconds_per_video
        return [
            Comparison(
                point.id,
                "seconds_per_video",
                m,
                video.seconds_per_video,
                f"SP{video.sequence_parallel}",
                point.source,
                point.role,
            )
        ]
    if isinstance(point, TrainingPoint):
        tq = TrainingQuery(
            resolve_model(point.model),
            acc,
            point.count or 1,
            point.tokens,
            point.precision,
            point.sequence_length,
            point.global_batch_tokens,
        )
        if point.count is None:
            domain = acc.scale_up_domain or 1
            tq = replace(tq, count=domain * math.ceil(min_training_count(tq, eff) / domain))
        run = predict_training(tq, eff)
        dp = tq.count // (run.tensor_parallel * run.pipeline_parallel)
        layout = f"TP{run.tensor_parallel}/PP{run.pipeline_parallel}/DP{dp}"
        m = point.measured.accelerator_hours
        return [Comparison(point.id, "accelerator_hours", m, run.accelerator_hours, layout, point.source, point.role)]
    prediction = predict_llm(_query(point, accelerators), eff)
    return [
        Comparison(
            point.id, metric, value, METRICS[metric](prediction), str(prediction.layout), point.source, point.role
        )
        for metric, value in point.measured.items()
    ]


def compare(points: Sequence[Point], eff: Efficiency, accelerators: AcceleratorTable) -> list[Comparison]:
    """Measured against predicted for every figure of every point."""
    rows = []
    for point in points:
        try:
            rows += _compare_one(point, eff, accelerators)
        except FlopexError as exc:
            raise CalibrationError(f"point {point.id}: {exc}") from None
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
    "video.attention": (0.1, 0.9),
    "training.mfu": (0.1, 0.7),
}


def default_parameters(points: Sequence[Point], accelerators: AcceleratorTable, eff: Efficiency) -> list[str]:
    """The few factors the calibration points (not the checks) can inform.

    LLM serving: compute efficiency of each precision measured, memory and link efficiency, one software
    factor per (vendor, engine) other than the NVIDIA/TRT-LLM reference, and the per-request overhead of
    engines with measured TTFT. Video: the attention efficiency of the accelerator (its own entry where the
    table has one). Training: the accelerator's MFU (its own entry where the table has one)."""
    fitted = [pt for pt in points if pt.role == "calibrate"]
    params: list[str] = []
    for pt in fitted:
        acc = accelerators.resolve(pt.accelerator)
        if isinstance(pt, VideoPoint):
            own = acc.id in eff.video.attention_by_accelerator
            params.append(f"video.attention_by_accelerator.{acc.id}" if own else "video.attention_fraction")
        elif isinstance(pt, TrainingPoint):
            own = acc.id in eff.training.mfu_by_accelerator
            params.append(f"training.mfu_by_accelerator.{acc.id}" if own else "training.mfu")
    llm = [pt for pt in fitted if isinstance(pt, CalibrationPoint)]
    if not llm:
        return list(dict.fromkeys(params))
    for p in dict.fromkeys(pt.precision for pt in llm):
        params.append(f"compute.peak_fraction.{'bf16' if p in ('int4', 'fp16') else p}")
    params += ["memory.fraction", "comm.fraction"]
    for pt in llm:
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
        "compute.attention_fraction, memory.fraction, comm.fraction, software.<vendor>.<engine>, "
        "engines.<engine>.<overhead>, video.attention_fraction, video.attention_by_accelerator.<id>, "
        "training.mfu and training.mfu_by_accelerator.<id>."
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
    points: Sequence[Point],
    eff: Efficiency,
    accelerators: AcceleratorTable,
    parameters: Sequence[str] | None = None,
    note: str = "fitted by flopex calibrate fit",
) -> FitResult:
    """Least squares on log(predicted / measured) over every measured figure, within physical bounds."""
    names = list(parameters or default_parameters(points, accelerators, eff))
    if not names:
        raise CalibrationError("nothing to fit: every point is a check (role: check). Mark some as calibrate.")
    fitted_points = [pt for pt in points if pt.role == "calibrate"]
    low, high = np.array([_bounds(n)[0] for n in names]), np.array([_bounds(n)[1] for n in names])
    start = np.array([_get(eff, n) for n in names])
    start = np.clip(start, low, high)

    def table(x: np.ndarray) -> Efficiency:
        return merge_efficiency(eff, _overlay(names, list(x), note), "fit")

    def residuals(x: np.ndarray) -> np.ndarray:
        rows = compare(fitted_points, table(x), accelerators)
        return np.array([math.log(r.predicted / r.measured) for r in rows])

    solution = least_squares(residuals, start, bounds=(low, high), diff_step=[1e-3] * len(names), x_scale="jac")
    fitted = table(solution.x)
    return FitResult(
        parameters={n: (float(a), float(b)) for n, a, b in zip(names, start, solution.x, strict=True)},
        overlay=_overlay(names, list(solution.x), note),
        before=compare(points, eff, accelerators),
        after=compare(points, fitted, accelerators),
    )
