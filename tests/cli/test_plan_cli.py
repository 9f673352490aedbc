"""`flopex plan` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from scipy.optimize import OptimizeResult, milp

import flopex.plan._milp as milp_module
from tests.cli.test_cli import run

ROOT = Path(__file__).resolve().parents[2]


def test_melange_mode_prints_melanges_answer() -> None:
    code, out = run("plan", "--melange", str(ROOT / "tests" / "fixtures" / "melange-example.json"), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["instances"] == {"A10G": 3, "A100-80GB": 1}
    assert data["cost_per_hour"] == 6.7


def test_plan_summary_and_json() -> None:
    code, out = run("plan", str(ROOT / "examples" / "fleet-plan.yaml"))
    assert code == 0, out
    assert "Plan fleet-plan" in out and "Binding:" in out and "HiGHS" in out
    code, out = run("plan", str(ROOT / "examples" / "enterprise-chat-70b.yaml"), "--json")
    data = json.loads(out)
    assert {"deployments", "workloads", "explanation", "solver", "usd_per_hour", "carbon_kg_per_hour"} <= set(data)
    assert data["plan_schema_version"] == 2


def test_pareto_plot(tmp_path: Path) -> None:
    svg = tmp_path / "front.svg"
    code, out = run("plan", str(ROOT / "examples" / "fleet-plan.yaml"), "--pareto", "cost,carbon", "--plot", str(svg),
                    "--no-verify")  # fmt: skip
    assert code == 0, out
    assert "Pareto frontier" in out and "this plan" in out.split("Pareto frontier")[1]
    # the headline compares like with like: no single offer meets two regions, so it says so
    assert "No single offer meets this plan's rules: each workload needs 2 failure domains (regions)" in out
    assert "Under its other rules, the cheapest single offer per workload costs $" in out
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert any((t.text or "").startswith("this plan: $") for t in root.iter("{http://www.w3.org/2000/svg}text"))


def test_pareto_json_marks_the_plan() -> None:
    code, out = run("plan", str(ROOT / "examples" / "enterprise-chat-70b.yaml"), "--pareto", "cost,carbon",
                    "--no-verify", "--json")  # fmt: skip
    assert code == 0, out
    data, _ = json.JSONDecoder().raw_decode(out)  # stderr's "skipped" lines may follow
    (mine,) = [p for p in data["pareto"] if p["this_plan"]]
    assert mine["usd_per_hour"] == data["usd_per_hour"]
    same = data["explanation"]["single_offer_same_rules"]
    assert same["rules_left_out"] == [] and same["usd_per_hour"] >= data["usd_per_hour"] - 1e-6
    assert "saving_vs_single_offer" not in data["explanation"]
    code, out = run("plan", str(ROOT / "examples" / "fleet-plan.yaml"), "--pareto", "cost,carbon", "--plot", "x.png")
    assert code == 2 and "SVG" in out


def test_plans_are_verified_in_the_simulator_unless_asked_not_to() -> None:
    code, out = run("plan", str(ROOT / "examples" / "conv-assistant.yaml"), "--json")
    assert code == 0, out
    v = json.loads(out)["verification"]
    assert v["met"] and v["target"] == 0.99 and v["not_verified"] == []
    last = v["workloads"][0]  # the plan kept, as simulated
    assert last["workload"] == "conv-assistant" and last["attainment"] >= 0.99 and last["requests"] > 1000
    code, out = run("plan", str(ROOT / "examples" / "conv-assistant.yaml"))
    assert "Verified in the simulator" in out and "conv-assistant: " in out
    code, out = run("plan", str(ROOT / "examples" / "conv-assistant.yaml"), "--no-verify", "--json")
    assert code == 0 and json.loads(out)["verification"] is None
    code, out = run("plan", str(ROOT / "examples" / "conv-assistant.yaml"), "--trace", "missing.csv")
    assert code == 2 and "missing.csv: no such trace file" in out


def test_infeasible_exits_1_and_explains() -> None:
    code, out = run("plan", str(ROOT / "examples" / "enterprise-chat-70b.yaml"), "--carbon-cap-kg-per-hour", "0.000001")
    assert code == 1
    assert "No plan" in out and "without the carbon cap: feasible" in out


def test_bad_inputs() -> None:
    code, out = run("plan")
    assert code == 2 and "--melange" in out
    code, out = run("plan", str(ROOT / "examples" / "fine-tune-8b.yaml"))
    assert code == 2 and "flopex quote" in out
    code, out = run("plan", str(ROOT / "examples" / "fleet-plan.yaml"), "--pareto", "cost,latency")
    assert code == 2 and "cost,carbon" in out


NOISY_SOLVER = """
import ctypes, sys
import flopex.plan._milp as milp_module
from flopex.cli import main

real = milp_module.milp
libc = ctypes.CDLL(None)


def noisy(*args, **kwargs):  # HiGHS writes some lines with C printf, past Python's sys.stdout
    libc.printf(b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\\n")
    return real(*args, **kwargs)


milp_module.milp = noisy
sys.argv = ["flopex", *sys.argv[1:]]
main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="C printf through ctypes.CDLL(None) is POSIX")
def test_solver_output_written_in_c_never_reaches_stdout() -> None:
    plan = ROOT / "examples" / "enterprise-chat-70b.yaml"
    done = subprocess.run(
        [sys.executable, "-c", NOISY_SOLVER, "plan", str(plan), "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing but the plan document
    assert data["status"] in ("optimal", "time_limit")
    assert "HighsMipSolverData" not in done.stdout


def test_a_loose_carbon_cap_is_not_blamed_for_what_leaving_out_unknown_power_costs() -> None:
    plan = str(ROOT / "examples" / "code-assistant.yaml")
    # far above what any fleet here emits; a TPU, which publishes no power, would be cheaper than the GPUs
    code, out = run("plan", plan, "--carbon-cap-kg-per-hour", "1000", "--no-verify")
    assert code == 0, out
    assert "Binding: the carbon cap" not in out
    assert "excluded because carbon is capped: costs $" in out


def _highs_stops_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every solve stops at its time limit with a plan 20% above HiGHS's bound."""

    def stopped(*args: Any, **kwargs: Any) -> OptimizeResult:
        result = milp(*args, **kwargs)
        result.status, result.message, result.mip_gap = 1, "Time limit reached.", 0.2
        result.mip_dual_bound = 0.8 * result["fun"]
        return result

    monkeypatch.setattr(milp_module, "milp", stopped)


def test_a_plan_stopped_at_its_time_limit_says_so_with_its_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    _highs_stops_at_its_limit(monkeypatch)
    plan = str(ROOT / "examples" / "enterprise-chat-70b.yaml")
    code, out = run("plan", plan, "--time-limit", "7")
    assert code == 0, out
    assert "Warning: The solver stopped at its time limit (7 s)" in out
    assert "may cost up to 20.0% less" in out and "--time-limit" in out
    code, out = run("plan", plan, "--json")
    data = json.loads(out)
    assert data["status"] == "time_limit" and data["solver"]["stopped_at_time_limit"]
    assert data["solver"]["gap"] == pytest.approx(0.2) and data["solver"]["time_limit_s"] >= 10
    assert len(data["warnings"]) == 1 and "20.0%" in data["warnings"][0]


def test_a_plan_solved_to_its_gap_has_no_warning() -> None:
    code, out = run("plan", str(ROOT / "examples" / "enterprise-chat-70b.yaml"), "--json")
    data = json.loads(out)
    assert data["status"] == "optimal" and data["warnings"] == [] and 0 <= data["solver"]["gap"] <= 0.01
