"""Workload specs (chat, completion, video, agent sessions, training) and their YAML loader."""

from __future__ import annotations

from flopex.workloads._load import TraceSummary, load_workload, load_workload_text, read_trace, workload_schema
from flopex.workloads._spec import (
    HOURS_PER_MONTH,
    AgentWorkload,
    ChatWorkload,
    Constraints,
    LengthBucket,
    TokenSlo,
    TokenTraffic,
    TrainingWorkload,
    VideoWorkload,
    Workload,
    WorkloadKind,
    nearest_bucket,
)

__all__ = [
    "HOURS_PER_MONTH",
    "AgentWorkload",
    "ChatWorkload",
    "Constraints",
    "LengthBucket",
    "TokenSlo",
    "TokenTraffic",
    "TraceSummary",
    "TrainingWorkload",
    "VideoWorkload",
    "Workload",
    "WorkloadKind",
    "load_workload",
    "load_workload_text",
    "nearest_bucket",
    "read_trace",
    "workload_schema",
]
