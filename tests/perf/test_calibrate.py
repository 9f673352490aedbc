from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import yaml

from flopex.catalog import AcceleratorTable
from flopex.errors import CalibrationError
from flopex.perf import (
    Efficiency,
    ProbeResult,
    compare,
    fit,
    guess_accelerator,
    load_efficiency,
    load_points,
    merge_efficiency,
    probe_overlay,
)
from flopex.perf._calibrate import _overlay

SHIPPED_POINTS = Path(__file__).resolve().parents[2] / "src" / "flopex" / "data" / "calibration" / "llm-serving.yaml"
# MLPerf v4.1 H100 figures imply ~72% of the FP8 peak at the file's assumed 700-token mean input, beyond what
# every other row (and the MI300X result on the same benchmark) allows; see docs/performance.md.
MLPERF_H100 = {"mlperf41-llama2-70b-8xh100-offline", "mlperf41-llama2-70b-8xh100-server"}


def test_shipped_defaults_against_the_published_measurements(eff: Efficiency, accs: AcceleratorTable) -> None:
    rows = compare(load_points(SHIPPED_POINTS), eff, accs)
    assert len(rows) == 13
    errors = [abs(r.error) for r in rows]
    assert statistics.median(errors) <= 0.15
    others = [r for r in rows if r.point not in MLPERF_H100]
    assert all(abs(r.error) <= 0.20 for r in others), [(r.point, r.metric, round(r.error, 3)) for r in others]
    assert sum(abs(r.error) <= 0.15 for r in others) >= 8


def test_fit_recovers_a_known_software_factor(eff: Efficiency, accs: AcceleratorTable, tmp_path: Path) -> None:
    points = [p for p in load_points(SHIPPED_POINTS) if p.accelerator == "MI300X"]
    truth = merge_efficiency(eff, _overlay(["software.AMD.vllm"], [0.6], "truth"), "truth")
    measured = compare(points, truth, accs)
    rows = []
    for p in points:
        figures = {m.metric: m.predicted for m in measured if m.point == p.id}
        rows.append({**p.model_dump(mode="json", exclude={"slo"}), "measured": figures})
    data = {"points": rows}
    path = tmp_path / "measured.yaml"
    path.write_text(yaml.safe_dump(data))
    result = fit(load_points(path), eff, accs, ["software.AMD.vllm"])
    assert result.parameters["software.AMD.vllm"][1] == pytest.approx(0.6, rel=0.02)
    assert all(abs(r.error) < 0.01 for r in result.after)
    # the overlay it returns loads and gives the same answer
    overlay = tmp_path / "efficiency.yaml"
    overlay.write_text(yaml.safe_dump(result.overlay))
    assert load_efficiency([overlay]).software_factor("AMD", "vllm") == pytest.approx(0.6, rel=0.02)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("points: []", "empty"),
        ("nothing: 1", "points"),
        ("points:\n  - {id: x, model: llama-3.1-8b}", "point x: accelerator"),
        ("points: [", "not valid YAML"),
    ],
)
def test_bad_measurement_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        load_points(path)


def test_an_overlay_with_a_bad_value_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "efficiency.yaml"
    path.write_text("memory:\n  fraction: {value: -1, source: me}\n")
    with pytest.raises(CalibrationError, match=r"efficiency.yaml: memory.fraction.value"):
        load_efficiency([path])


def test_unknown_fit_parameter_lists_the_valid_ones(eff: Efficiency, accs: AcceleratorTable) -> None:
    with pytest.raises(CalibrationError, match="compute.peak_fraction"):
        fit(load_points(SHIPPED_POINTS)[:1], eff, accs, ["speed.of.light"])


def test_probe_overlay_sets_the_measured_fractions(accs: AcceleratorTable, tmp_path: Path) -> None:
    h100 = accs.resolve("H100-SXM")
    result = ProbeResult("NVIDIA H100 80GB HBM3", {"bf16": 700.0, "fp8": 1300.0}, 2.9, "2.5.0")
    assert guess_accelerator(result.device_name, accs) == h100
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(probe_overlay(result, h100)))
    table = load_efficiency([path])
    assert table.peak_fraction(h100, "fp8") == pytest.approx(1300 / 1979, rel=1e-3)
    assert table.memory_fraction(h100) == pytest.approx(2.9 / 3.35, rel=1e-3)
    assert table.memory_fraction(accs.resolve("A100-SXM-80GB")) == load_efficiency().memory.fraction.value


@pytest.mark.parametrize(
    ("name", "acc"),
    [("NVIDIA H100 PCIe", "H100-PCIE"), ("NVIDIA A100-SXM4-40GB", "A100-SXM-40GB"), ("NVIDIA L4", "L4"),
     ("NVIDIA H200", "H200-SXM"), ("NVIDIA GeForce RTX 4090", None)],
)  # fmt: skip
def test_guess_accelerator(accs: AcceleratorTable, name: str, acc: str | None) -> None:
    found = guess_accelerator(name, accs)
    assert (found.id if found else None) == acc


SHIPPED_VIDEO_TRAINING = SHIPPED_POINTS.parent / "video-training.yaml"


def test_video_and_training_points_are_all_reported(eff: Efficiency, accs: AcceleratorTable) -> None:
    points = load_points(SHIPPED_VIDEO_TRAINING)
    rows = compare(points, eff, accs)
    assert len(rows) == len(points) == 15
    calibrated = [r for r in rows if r.role == "calibrate"]
    assert {r.point for r in calibrated} == {"wan21-t2v-14b-720p-1xh100", "llama2-70b-pretraining"}
    assert all(abs(r.error) <= 0.03 for r in calibrated)
    video_checks = [r for r in rows if r.role == "check" and r.metric == "seconds_per_video"]
    assert all(abs(r.error) <= 0.20 for r in video_checks), [(r.point, round(r.error, 3)) for r in video_checks]


def test_fitting_video_and_training_reproduces_the_shipped_factors(eff: Efficiency, accs: AcceleratorTable) -> None:
    result = fit(load_points(SHIPPED_VIDEO_TRAINING), eff, accs)
    assert set(result.parameters) == {"video.attention_fraction", "training.mfu_by_accelerator.A100-SXM-80GB"}
    for name, (before, after) in result.parameters.items():
        assert after == pytest.approx(before, rel=0.01), name  # the shipped table is this fit
    # checks are reported after the fit too, but did not drive it
    assert len(result.after) == 15


def test_a_file_of_checks_only_has_nothing_to_fit(eff: Efficiency, accs: AcceleratorTable, tmp_path: Path) -> None:
    data = yaml.safe_load(SHIPPED_VIDEO_TRAINING.read_text())
    checks = {"video": [v for v in data["video"] if v.get("role") == "check"]}
    path = tmp_path / "checks.yaml"
    path.write_text(yaml.safe_dump(checks))
    with pytest.raises(CalibrationError, match="nothing to fit"):
        fit(load_points(path), eff, accs)


def test_a_bad_video_point_names_its_section_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"video": [{"id": "x", "model": "wan2.1-t2v-14b", "accelerator": "H100"}]}))
    with pytest.raises(CalibrationError, match="video point x: count: Field required"):
        load_points(path)
