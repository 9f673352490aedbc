"""`flopex simulate` through the real CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.cli.test_cli import run

ROOT = Path(__file__).resolve().parents[2]
TRACE = str(ROOT / "tests" / "fixtures" / "azure-conv-10min.csv")
CONV = str(ROOT / "examples" / "conv-assistant.yaml")


def test_simulate_a_trace_with_json_and_plots(tmp_path: Path) -> None:
    code, out = run("simulate", CONV, "--trace", TRACE, "--plan-scale", "1.5", "--json")
    assert code == 0, out
    data = json.loads(out)
    w = data["workloads"]["conv-assistant"]
    # every request of the ten-minute slice is served by the fleet or sent to a hosted API as planned
    assert data["completed"] + data["sent_to_hosted_apis"] == 2867 and data["dropped"] == 0
    assert {"p50", "p90", "p99", "mean"} <= set(w["ttft_s"]) and 0 <= w["slo_attainment"] <= 1
    assert data["cost_usd"] > 0 and data["energy_kwh"] > 0
    code, out = run("simulate", CONV, "--trace", TRACE, "--plot", str(tmp_path))
    assert code == 0, out
    assert "Simulated" in out and "SLO met" in out
    for name in ("queue.svg", "utilisation.svg", "ttft-cdf.svg"):
        assert ET.parse(tmp_path / name).getroot().tag.endswith("svg")


def test_synthetic_arrivals_and_faults_are_deterministic() -> None:
    args = ("simulate", CONV, "--arrivals", "gamma", "--duration", "120", "--seed", "7", "--json")
    first, second = run(*args), run(*args)
    assert first == second and first[0] == 0


def test_bad_simulate_inputs() -> None:
    code, out = run("simulate", CONV)
    assert code == 2 and "--trace" in out
    code, out = run("simulate", CONV, "--arrivals", "bursty")
    assert code == 2 and "Choose from" in out
    code, out = run("simulate", str(ROOT / "examples" / "video-service.yaml"), "--arrivals", "poisson")
    assert code == 2 and "chat or completion" in out
    code, out = run("simulate", CONV, "--trace", TRACE, "--fail", "nonsense")
    assert code == 2 and "REPLICA@START:SECONDS" in out
