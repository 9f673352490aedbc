"""Trace files named on the command line or in workload files: which workload each feeds, and their rows."""

from __future__ import annotations

import csv
from pathlib import Path

from flopex.cli._common import fail
from flopex.errors import SimError
from flopex.workloads import ChatWorkload

__all__ = ["read_trace", "trace_paths"]


def read_trace(path: Path) -> list[tuple[str, int, int]]:
    """(TIMESTAMP, ContextTokens, GeneratedTokens) rows of a trace in the Azure format."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append((row["TIMESTAMP"], int(row["ContextTokens"]), int(row["GeneratedTokens"])))
                except (KeyError, ValueError, TypeError):
                    raise SimError(
                        f"{path}:{line}: expected TIMESTAMP,ContextTokens,GeneratedTokens (the Azure trace format)."
                    ) from None
            return rows
    except FileNotFoundError:
        raise SimError(
            f"{path}: no such trace file. To fix: give the path of a CSV with TIMESTAMP, ContextTokens and "
            "GeneratedTokens columns (the Azure LLM inference trace format)."
        ) from None


def trace_paths(given: list[str] | None, chats: list[ChatWorkload], file: Path) -> dict[str, Path]:
    """Workload name -> trace file: the workloads' own `traffic.trace`, then `--trace [WORKLOAD=]FILE`."""
    out: dict[str, Path] = {}
    for w in chats:
        if w.traffic.trace is not None:
            out[w.name] = (file.parent / w.traffic.trace).resolve()
    for item in given or []:
        if "=" in item:
            name, path = item.split("=", 1)
            if name not in {w.name for w in chats}:
                fail(f"--trace {item!r}: no workload named {name!r} in {file}.")
            out[name] = Path(path)
        elif len(chats) == 1:
            out[chats[0].name] = Path(item)
        else:
            fail("--trace: this plan has several workloads; write --trace WORKLOAD=FILE for each.")
    return out
