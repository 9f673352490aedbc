"""Reading CSV and YAML files with the line number of every record, for located error messages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flopex.errors import CatalogFileError

__all__ = ["Record", "read_csv_records", "read_yaml_sections"]


@dataclass(frozen=True)
class Record:
    """One row or mapping of a file: its values and where it starts."""

    values: dict[str, Any]
    line: int
    field_lines: dict[str, int]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogFileError(
            f"{path}: no such file. Check the path (given by --catalog, FLOPEX_CATALOG or your overlay folder)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogFileError(f"{path}: cannot be read ({exc}). Save it as UTF-8 text.") from None


def read_csv_records(path: Path) -> tuple[list[str], list[Record]]:
    """The header and every non-blank row (blank cells become None), with 1-based line numbers."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], []
    records: list[Record] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        values: dict[str, Any] = {}
        for i, cell in enumerate(row):
            key = header[i] if i < len(header) else f"column {i + 1}"
            values[key] = cell.strip() or None
        records.append(Record(values, line, {k: line for k in values}))
    return header, records


def _value(node: yaml.Node) -> Any:
    """The Python value of a node; a scalar YAML cannot construct (e.g. the date 2026-13-01) stays a string,
    so that validation reports it against its field instead of the whole file failing."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (ValueError, yaml.YAMLError):
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        raise


def _node_records(node: yaml.Node) -> Iterator[Record]:
    if not isinstance(node, yaml.SequenceNode):
        return
    for item in node.value:
        if not isinstance(item, yaml.MappingNode):
            yield Record({"__not_a_mapping__": True}, item.start_mark.line + 1, {})
            continue
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in item.value:
            key = str(key_node.value)
            values[key] = _value(value_node)
            lines[key] = key_node.start_mark.line + 1
        yield Record(values, item.start_mark.line + 1, lines)


def read_yaml_sections(path: Path, sections: tuple[str, ...]) -> tuple[dict[str, list[Record]], list[tuple[str, int]]]:
    """Records of each named top-level list, and the top-level keys (with lines) that are not known sections."""
    text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}" if exc.problem_mark else "somewhere"
        raise CatalogFileError(f"{path}: not valid YAML at {where}: {exc.problem}. Fix the syntax there.") from None
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"{path}: not valid YAML ({exc}).") from None
    found: dict[str, list[Record]] = {name: [] for name in sections}
    unknown: list[tuple[str, int]] = []
    if root is None:
        return found, unknown
    if not isinstance(root, yaml.MappingNode):
        raise CatalogFileError(f"{path}: expected a mapping with the keys {', '.join(sections)} at the top level.")
    for key_node, value_node in root.value:
        key = str(key_node.value)
        if key in found:
            found[key] = list(_node_records(value_node))
        elif key != "schema_version":
            unknown.append((key, key_node.start_mark.line + 1))
    return found, unknown
