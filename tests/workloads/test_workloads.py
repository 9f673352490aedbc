"""Workload files: the shipped examples, the schema, traces and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flopex.errors import WorkloadError
from flopex.workloads import ChatWorkload, TokenSlo, load_workload, read_trace, workload_schema

# the examples that are workloads (the others are plans, which list workloads, and gateway configurations)
EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.yaml")
    if "kind" in yaml.safe_load(p.read_text())
)


def test_examples_cover_every_kind() -> None:
    kinds = {load_workload(p).kind for p in EXAMPLES}
    assert kinds == {"chat", "completion", "video", "agent", "training"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_loads(path: Path) -> None:
    w = load_workload(path)
    assert w.name == path.stem


def test_schema_lists_the_kinds() -> None:
    schema = workload_schema()
    text = str(schema)
    for kind in ("chat", "completion", "video", "agent", "training"):
        assert f"'{kind}'" in text
    assert schema["title"] == "flopex workload"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return path


CHAT = (
    "name: x\nkind: chat\nmodel: llama-3.1-8b\n"
    "traffic:\n  requests_per_s: 2\n  input_tokens: 100\n  output_tokens: 10\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CHAT.replace("kind: chat", "kind: chatt"), r"w.yaml:2: kind: .*Did you mean 'chat'"),
        (
            CHAT + "constraints:\n  market: [spot]\n",
            r"w.yaml:9: constraints.market: unknown field. Did you mean 'markets'",
        ),
        (CHAT + "constraints:\n  markets: [spots]\n", r"w.yaml:9: constraints.markets.0: .*Did you mean 'spot'"),
        (CHAT.replace("  output_tokens: 10\n", ""), "input_tokens and output_tokens go together"),
        (CHAT.replace("  requests_per_s: 2\n", ""), "requests_per_s is required"),
        (CHAT + "slo: {e2e_p99_s: 2, ttft_p99_s: 1}\n", "either e2e_p99_s or"),
        (CHAT.replace("llama-3.1-8b", "llama-3.1-8c"), r"w.yaml:3: model: unknown language model .*'llama-3.1-8b'"),
        ("name: x\nmodel: m\n", "kind: missing"),
        ("kind: [", "not valid YAML"),
    ],
)
def test_bad_files_name_line_field_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        load_workload(_write(tmp_path, text))


def test_a_trace_gives_the_rate_and_length_buckets(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:00:00.0000000,100,10\n"
        "2023-11-16 18:00:01.0000000,300,30\n"
        "2023-11-16 18:00:02.0000000,200,20\n"
        "2023-11-16 18:00:04.0000000,400,0\n"
    )
    summary = read_trace(trace, buckets=2)
    assert summary.requests == 4
    assert summary.requests_per_s == pytest.approx(4 / 4.0)
    # sorted by prompt: (100,10),(200,20) | (300,30),(400,1): zero outputs count as one token
    assert [(b.input_tokens, b.output_tokens, b.weight) for b in summary.buckets] == [(150, 15, 0.5), (350, 16, 0.5)]
    w = load_workload(_write(tmp_path, "name: x\nkind: chat\nmodel: llama-3.1-8b\ntraffic:\n  trace: t.csv\n"))
    assert isinstance(w, ChatWorkload)
    assert w.traffic.requests_per_s == pytest.approx(1.0)
    assert w.traffic.mean_lengths() == (250.0, 15.25)  # one bucket per request: (10 + 20 + 30 + 1) / 4


def test_a_bad_trace_row_names_its_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,100,10\nyesterday,1,1\n")
    with pytest.raises(WorkloadError, match="t.csv:3: cannot read this row"):
        read_trace(trace)
    trace.write_text("when,ContextTokens\n")
    with pytest.raises(WorkloadError, match="lacks column"):
        read_trace(trace)


def test_an_end_to_end_slo_splits_into_first_token_and_the_rest() -> None:
    ttft, tpot = TokenSlo(e2e_p99_s=10.0).limits(100)
    assert ttft == pytest.approx(1.0)
    assert ttft + 100 * tpot == pytest.approx(10.0)
