"""The performance model: pure functions from (model, accelerator, precision, engine, workload) to speed."""

from __future__ import annotations

from flopex.perf._calibrate import (
    METRICS,
    CalibrationPoint,
    Comparison,
    FitResult,
    compare,
    default_parameters,
    fit,
    load_points,
)
from flopex.perf._efficiency import (
    ENGINES,
    Efficiency,
    Engine,
    EngineSettings,
    Factor,
    load_efficiency,
    merge_efficiency,
)
from flopex.perf._hosted import HostedPrediction, predict_hosted
from flopex.perf._memory import (
    BYTES,
    Layout,
    MemoryPlan,
    compute_precision,
    default_kv_precision,
    memory_plan,
    weight_bytes,
)
from flopex.perf._predict import (
    SCENARIO_SLOS,
    Bound,
    LLMQuery,
    Prediction,
    Scenario,
    parse_scenario,
    predict_llm,
    profile,
)
from flopex.perf._probe import ProbeResult, guess_accelerator, probe_overlay
from flopex.perf._serving import Replica, Steady
from flopex.perf._step import Batch, Rates, StepTime, rates_for, step_time

__all__ = [
    "METRICS",
    "CalibrationPoint",
    "Comparison",
    "FitResult",
    "HostedPrediction",
    "ProbeResult",
    "predict_hosted",
    "compare",
    "default_parameters",
    "fit",
    "guess_accelerator",
    "load_points",
    "probe_overlay",
    "BYTES",
    "ENGINES",
    "SCENARIO_SLOS",
    "Batch",
    "Bound",
    "Efficiency",
    "Engine",
    "EngineSettings",
    "Factor",
    "LLMQuery",
    "Layout",
    "MemoryPlan",
    "Prediction",
    "Rates",
    "Replica",
    "Scenario",
    "Steady",
    "StepTime",
    "compute_precision",
    "default_kv_precision",
    "load_efficiency",
    "memory_plan",
    "merge_efficiency",
    "parse_scenario",
    "predict_llm",
    "profile",
    "rates_for",
    "step_time",
    "weight_bytes",
]
