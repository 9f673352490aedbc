"""Calibration: compare predictions with published measurements, and fit a few efficiency factors to them.

A measurements file may hold three lists:
- `points` (the format of `llm-serving.yaml`): LLM serving, each with model, accelerator, count, precision,
  engine, scenario (and optional slo and tensor_parallel), input and output tokens, and `measured` figures among
  output_tokens_per_s, ttft_mean_s and tpot_mean_s;
- `video` (the format of `video-training.yaml`): model, accelerator, count, width, height, frames, steps and
  `measured: {seconds_per_video}`;
- `training`: model, accelerator, tokens, precision (optional count, sequence_length, global_batch_tokens) and
  `measured: {accelerator_hours}`.
Every entry may say `role: check`: it is reported but not fitted (published figures kept to test the model);
`publication`: the publication it comes from (cross-validation holds out a publication's rows together;
default: its `source`); `uncertain: why`: its setup is not known well enough to fit on (reported apart, never
fitted); `known_miss: why` (a check row): the mechanism the model lacks that makes it miss.

Honest fitting: a factor is fitted only where at least two fitted figures inform it, never more factors than
figures, and always from its prior (`calibration/priors.yaml`, each with its source), so that a fit, and every
fold of the cross-validation, starts from the same place whatever was fitted before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
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
    "CrossValidation",
    "Validated",
    "choose_parameters",
    "cross_validate",
    "load_priors",
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
    publication: str | None = Field(None, description="rows of one publication are held out together")
    uncertain: str | None = Field(None, description="why its setup is uncertain: reported apart, never fitted")
    known_miss: str | None = Field(None, description="a check row: why the model misses it")

    @property
    def group(self) -> str:
        """The publication, for cross-validation."""
        return self.publication or str(getattr(self, "source", self.id))

    @property
    def fitted(self) -> bool:
        return self.role == "calibrate" and self.uncertain is None


class CalibrationPoint(_Point):
    count: PositiveInt
    tensor_parallel: PositiveInt | None = None
    precision: Precision
    kv_precision: Precision | None = Field(None, description="the KV cache's precision, where the run states it")
    engine: Engine
    engine_version: str | None = Field(None, description="as published, e.g. 'vLLM 0.10.2'")
    max_num_seqs: PositiveInt | None = Field(None, description="the engine's limit on sequences in flight, as run")
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
                point = kind.model_validate(raw)
                if point.known_miss and point.role == "calibrate":
                    raise CalibrationError(
                        f"{path}: point {point.id}: known_miss is for check rows (role: check); a row the model "
                        "is known to miss is not one to fit."
                    )
                points.append(point)
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
        kv_precision=point.kv_precision,
        max_batch=point.max_num_seqs,
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
    uncertain: str | None = None  # why its setup is uncertain (never fitted)
    known_miss: str | None = None
    group: str = ""  # its publication

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.measured - 1

    @property
    def status(self) -> str:
        """fitted, check, uncertain, or known miss."""
        if self.uncertain:
            return "uncertain"
        if self.known_miss:
            return "known miss"
        return "fitted" if self.role == "calibrate" else "check"

    @property
    def regime(self) -> str:
        return _REGIMES[self.metric]


_REGIMES: dict[str, str] = {
    "output_tokens_per_s": "LLM throughput",
    "ttft_mean_s": "LLM TTFT",
    "tpot_mean_s": "LLM TPOT",
    "seconds_per_video": "video",
    "accelerator_hours": "training",
}


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
            found = _compare_one(point, eff, accelerators)
        except FlopexError as exc:
            raise CalibrationError(f"point {point.id}: {exc}") from None
        rows += [replace(r, uncertain=point.uncertain, known_miss=point.known_miss, group=point.group) for r in found]
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


def _support(points: Sequence[Point], accelerators: AcceleratorTable, eff: Efficiency) -> dict[str, list[str]]:
    """Each factor the points can inform, with the ids of the points that inform it.

    LLM serving: the compute efficiency of each precision measured, memory efficiency, link efficiency (points on
    more than one accelerator), one software factor per (vendor, engine) other than the NVIDIA/TRT-LLM
    reference, and the per-request overhead of engines with measured TTFT. Video: the attention efficiency of
    the accelerator (its own entry where the table has one). Training: the accelerator's MFU (likewise)."""
    support: dict[str, list[str]] = {}

    def add(name: str, pt: Point) -> None:
        support.setdefault(name, []).append(pt.id)

    for pt in points:
        acc = accelerators.resolve(pt.accelerator)
        if isinstance(pt, VideoPoint):
            own = acc.id in eff.video.attention_by_accelerator
            add(f"video.attention_by_accelerator.{acc.id}" if own else "video.attention_fraction", pt)
        elif isinstance(pt, TrainingPoint):
            own = acc.id in eff.training.mfu_by_accelerator
            add(f"training.mfu_by_accelerator.{acc.id}" if own else "training.mfu", pt)
        else:
            add(f"compute.peak_fraction.{'bf16' if pt.precision in ('int4', 'fp16') else pt.precision}", pt)
            for name in ("memory.fraction", "compute.half_tokens", "compute.attention_fraction"):
                add(name, pt)
            if pt.count > 1:
                add("comm.fraction", pt)
            if (acc.vendor, pt.engine) != ("NVIDIA", "trtllm"):
                add(f"software.{acc.vendor}.{pt.engine}", pt)
            if "ttft_mean_s" in pt.measured:
                add(f"engines.{pt.engine}.request_overhead_s", pt)
    return support


_GENERIC = ("compute.half_tokens", "compute.attention_fraction")  # fitted only when named


def choose_parameters(
    points: Sequence[Point], accelerators: AcceleratorTable, eff: Efficiency
) -> tuple[list[str], dict[str, str]]:
    """The factors the fitted points (not checks, not uncertain rows) inform at least twice, and why each other
    factor they touch is left alone."""
    fitted = [pt for pt in points if pt.fitted]
    chosen, skipped = [], {}
    support = _support(fitted, accelerators, eff)
    for name, ids in support.items():
        if name in _GENERIC:
            continue
        if len(ids) >= 2:
            chosen.append(name)
        else:
            skipped[name] = f"informed by one fitted point only ({ids[0]}): left at its prior"
    figures = _figures(fitted)
    if len(chosen) >= figures:  # fewer factors than figures: the best-informed first
        chosen.sort(key=lambda n: -len(support[n]))
        for name in chosen[max(figures - 1, 0) :]:
            skipped[name] = f"{figures} fitted figure(s) cannot fit {len(chosen)} factors: left at its prior"
        chosen = chosen[: max(figures - 1, 0)]
    return chosen, skipped


def default_parameters(points: Sequence[Point], accelerators: AcceleratorTable, eff: Efficiency) -> list[str]:
    """The factors `fit` moves when none are named (see `choose_parameters`)."""
    return choose_parameters(points, accelerators, eff)[0]


def load_priors(path: Path | None = None) -> dict[str, tuple[float, str]]:
    """Where each factor a fit may move starts: factor -> (value, source), from `calibration/priors.yaml`."""
    if path is None:
        text = resources.files("flopex.data").joinpath("calibration/priors.yaml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return {name: (float(v["value"]), str(v["source"])) for name, v in (data.get("priors") or {}).items()}


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
    parameters: dict[str, tuple[float, float]]  # name -> (start, fitted)
    overlay: dict[str, Any]
    before: list[Comparison]
    after: list[Comparison]
    skipped: dict[str, str] = field(default_factory=dict)  # factor -> why it was not fitted
    starts: dict[str, str] = field(default_factory=dict)  # factor -> where its start came from


def _figures(points: Sequence[Point]) -> int:
    return sum(len(pt.measured) if isinstance(pt, CalibrationPoint) else 1 for pt in points)


def _from_priors(eff: Efficiency, names: Sequence[str], priors: Mapping[str, tuple[float, str]]) -> Efficiency:
    """The table with each named factor that has a prior set to it."""
    reset = [n for n in names if n in priors]
    if not reset:
        return eff
    return merge_efficiency(eff, _overlay(reset, [priors[n][0] for n in reset], "prior"), "priors")


def fit(
    points: Sequence[Point],
    eff: Efficiency,
    accelerators: AcceleratorTable,
    parameters: Sequence[str] | None = None,
    note: str = "fitted by flopex calibrate fit",
    priors: Mapping[str, tuple[float, str]] | None = None,
    reset: Sequence[str] = (),
    allow_nothing: bool = False,
) -> FitResult:
    """Least squares on log(predicted / measured) over every figure of the fitted points, within physical
    bounds, each factor starting from its prior. `reset` names further factors set to their priors without
    being fitted (a cross-validation fold whose points no longer inform them)."""
    priors = load_priors() if priors is None else priors
    fitted_points = [pt for pt in points if pt.fitted]
    support = _support(fitted_points, accelerators, eff)
    skipped: dict[str, str] = {}
    if parameters:
        names = list(dict.fromkeys(parameters))
        for name in names:
            _bounds(name)
            ids = support.get(name, [])
            if len(ids) < 2:
                told = f"only {ids[0]}" if ids else "none"
                raise CalibrationError(
                    f"{name} is informed by {len(ids)} fitted point(s) ({told}); flopex never fits a factor to "
                    "fewer than two. Add measurements that depend on it, or leave it out of --param."
                )
    else:
        names, skipped = choose_parameters(points, accelerators, eff)
    figures = _figures(fitted_points)
    if names and len(names) >= figures:
        raise CalibrationError(
            f"{len(names)} factors ({', '.join(names)}) from {figures} fitted figure(s) would be underdetermined: "
            "fit fewer factors (--param) or add measurements."
        )
    base = _from_priors(eff, list(dict.fromkeys([*names, *reset, *skipped])), priors)
    starts = {n: "prior" if n in priors else "the table's value (no prior)" for n in names}
    if not names and not allow_nothing:
        why = "; ".join(f"{n}: {w}" for n, w in skipped.items()) or "every point is a check or uncertain"
        raise CalibrationError(
            f"nothing to fit: no factor is informed by two or more fitted points ({why}). Mark more points as "
            "calibrate (no `role: check`), or add measurements."
        )
    if not names:
        rows = compare(points, base, accelerators)
        return FitResult({}, {}, compare(points, eff, accelerators), rows, skipped, starts)
    low, high = np.array([_bounds(n)[0] for n in names]), np.array([_bounds(n)[1] for n in names])
    start = np.clip(np.array([_get(base, n) for n in names]), low, high)

    def table(x: np.ndarray) -> Efficiency:
        return merge_efficiency(base, _overlay(names, list(x), note), "fit")

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
        skipped=skipped,
        starts=starts,
    )


# --- cross-validation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    """One figure predicted by the fit on every fitted point (in sample) and by the fit that left its
    publication out (held out; the same for a row that is never fitted)."""

    row: Comparison
    held_out: float

    @property
    def held_out_error(self) -> float:
        return self.held_out / self.row.measured - 1


@dataclass(frozen=True)
class CrossValidation:
    rows: list[Validated]
    fit: FitResult  # on every fitted point
    folds: int


def cross_validate(
    points: Sequence[Point],
    eff: Efficiency,
    accelerators: AcceleratorTable,
    priors: Mapping[str, tuple[float, str]] | None = None,
    on_fold: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Leave one publication out: for each publication with fitted points, fit (from the priors) on the fitted
    points of every other publication and predict its own. Factors that a fold's points no longer inform twice
    stay at their priors there, so nothing fitted on a publication reaches its held-out prediction."""
    priors = load_priors() if priors is None else priors
    whole = fit(points, eff, accelerators, priors=priors, allow_nothing=True)
    every = [*whole.parameters, *whole.skipped]
    held: dict[tuple[str, str], float] = {}
    groups = list(dict.fromkeys(pt.group for pt in points if pt.fitted))
    for group in groups:
        rest = [pt for pt in points if pt.group != group]
        own = [pt for pt in points if pt.group == group and pt.fitted]
        fold = fit(rest, eff, accelerators, priors=priors, reset=every, allow_nothing=True)
        table = fold_table(fold, eff, every, priors)
        for r in compare(own, table, accelerators):
            held[(r.point, r.metric)] = r.predicted
        if on_fold is not None:
            on_fold(group)
    rows = [Validated(r, held.get((r.point, r.metric), r.predicted)) for r in whole.after]
    return CrossValidation(rows, whole, len(groups))


def fold_table(
    result: FitResult | None, eff: Efficiency, names: Sequence[str], priors: Mapping[str, tuple[float, str]]
) -> Efficiency:
    """The table a fold predicts with: every factor at its prior, those the fold fitted at their fitted value."""
    base = _from_priors(eff, names, priors)
    return base if result is None or not result.overlay else merge_efficiency(base, result.overlay, "fold")
