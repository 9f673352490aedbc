"""Reading workload files: YAML in, a validated `Workload` out, or an error naming file, line, field and fix."""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from flopex.errors import WorkloadError, did_you_mean
from flopex.models import load_presets, load_video_presets
from flopex.workloads._spec import (
    AgentWorkload,
    ChatWorkload,
    LengthBucket,
    TrainingWorkload,
    VideoWorkload,
    Workload,
)

__all__ = ["TraceSummary", "load_workload", "load_workload_text", "read_trace", "workload_schema"]

_ADAPTER: TypeAdapter[Workload] = TypeAdapter(Workload)
_KINDS: dict[str, type[BaseModel]] = {
    "chat": ChatWorkload,
    "completion": ChatWorkload,
    "video": VideoWorkload,
    "agent": AgentWorkload,
    "training": TrainingWorkload,
}


def workload_schema() -> dict[str, Any]:
    """The JSON Schema of a workload file."""
    schema = _ADAPTER.json_schema()
    schema["title"] = "flopex workload"
    return schema


def _field_names(model: type[BaseModel], seen: set[str] | None = None) -> set[str]:
    """Every field name reachable from `model` (for suggesting the closest key)."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for sub in getattr(info.annotation, "__args__", (info.annotation,)):
            if isinstance(sub, type) and issubclass(sub, BaseModel) and sub.__name__ not in (seen or set()):
                names |= _field_names(sub, (seen or set()) | {sub.__name__})
            for inner in getattr(sub, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _field_names(inner, (seen or set()) | {inner.__name__})
    return names


_ALL_FIELDS = set().union(*(_field_names(m) for m in _KINDS.values()))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (the deepest one that exists)."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            key = next((k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if match is None:
                return line
            node, line = match, (key or match).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _hint(error: ErrorDetails) -> str:
    """The closest valid value or key, where one can be named."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        return did_you_mean(str(error["loc"][-1]), _ALL_FIELDS)
    if kind == "union_tag_invalid":
        return did_you_mean(str(ctx.get("tag", value)), list(_KINDS))
    if kind in ("literal_error", "enum") and isinstance(value, str):
        options = re.findall(r"'([^']+)'", str(ctx.get("expected", "")))
        return did_you_mean(value, options)
    return ""


def _error(path: Path, node: yaml.Node | None, exc: ValidationError) -> WorkloadError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    if loc and loc[0] in _KINDS:  # the discriminated union puts the kind first
        loc = loc[1:]
    if error["type"] == "union_tag_invalid":
        loc = ("kind",)
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(node, loc)
    where = f"{path}:{line}" if line else str(path)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return WorkloadError(
        f"{where}: {field}: {message}.{_hint(error)} To fix: see `flopex workload schema` for every field."
    )


def _check_model(path: Path, node: yaml.Node | None, workload: Workload) -> None:
    video = isinstance(workload, VideoWorkload)
    known = load_video_presets() if video else load_presets()
    if workload.model.lower() in known or (not video and Path(workload.model).suffix == ".json"):
        return
    line = _line_of(node, ("model",))
    kind = "video model" if video else "language model"
    raise WorkloadError(
        f"{path}:{line}: model: unknown {kind} {workload.model!r}.{did_you_mean(workload.model, known)} "
        f"Known ids: {', '.join(known)}."
    )


class TraceSummary(BaseModel):
    requests: int
    requests_per_s: float
    buckets: tuple[LengthBucket, ...]


def read_trace(path: Path, buckets: int = 6) -> TraceSummary:
    """Rate and joint length histogram of a trace CSV (TIMESTAMP, ContextTokens, GeneratedTokens): requests
    sorted by input length and cut into `buckets` equal-count groups, each at its mean lengths."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
            if missing:
                raise WorkloadError(
                    f"{path}:1: the trace lacks column(s) {', '.join(sorted(missing))}. To fix: use the Azure "
                    "LLM inference trace format, TIMESTAMP,ContextTokens,GeneratedTokens."
                )
            times: list[datetime] = []
            pairs: list[tuple[int, int]] = []
            for line, row in enumerate(reader, start=2):
                try:
                    times.append(datetime.fromisoformat(row["TIMESTAMP"].strip()[:26]))
                    pairs.append((int(row["ContextTokens"]), max(int(row["GeneratedTokens"]), 1)))
                except (ValueError, TypeError):
                    raise WorkloadError(
                        f"{path}:{line}: cannot read this row ({row}). To fix: a timestamp like "
                        "2023-11-16 18:17:03.98 and whole numbers of tokens."
                    ) from None
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such trace file. To fix: give a path relative to the workload file.") from None
    if len(pairs) < 2:
        raise WorkloadError(f"{path}: a trace needs at least two requests to give a rate.")
    span = (max(times) - min(times)).total_seconds()
    if span <= 0:
        raise WorkloadError(f"{path}: every request has the same timestamp; the rate is undefined.")
    pairs.sort()
    k = min(buckets, len(pairs))
    groups = [pairs[i * len(pairs) // k : (i + 1) * len(pairs) // k] for i in range(k)]
    out = tuple(
        LengthBucket(
            input_tokens=max(1, round(sum(a for a, _ in g) / len(g))),
            output_tokens=max(1, round(sum(b for _, b in g) / len(g))),
            weight=len(g) / len(pairs),
        )
        for g in groups
    )
    return TraceSummary(requests=len(pairs), requests_per_s=len(pairs) / span, buckets=out)


def _with_trace(path: Path, workload: Workload) -> Workload:
    if not isinstance(workload, ChatWorkload) or workload.traffic.trace is None:
        return workload
    summary = read_trace((path.parent / workload.traffic.trace).resolve())
    traffic = workload.traffic.model_copy(
        update={"lengths": summary.buckets, "requests_per_s": workload.traffic.requests_per_s or summary.requests_per_s}
    )
    return workload.model_copy(update={"traffic": traffic})


def load_workload(path: Path) -> Workload:
    """Read and validate a workload file (YAML or JSON); a trace it names is read too."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError(
            f"{path}: no such file. To fix: give the path to a workload YAML (see examples/)."
        ) from None
    return load_workload_text(path, text)


def load_workload_text(path: Path, text: str) -> Workload:
    """Validate workload YAML text; `path` names it in errors and anchors a relative trace path."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise WorkloadError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{path}: expected a mapping with name, kind, model, traffic ... (see examples/).")
    if "kind" not in data:
        raise WorkloadError(f"{path}:1: kind: missing. To fix: add `kind:` with one of {', '.join(_KINDS)}.")
    try:
        workload = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _error(path, node, exc) from None
    _check_model(path, node, workload)
    return _with_trace(path, workload)
