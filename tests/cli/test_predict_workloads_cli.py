"""`flopex predict video|video-realtime|training|agent|modalities` through the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run


def test_predict_video_json_keeps_the_contract() -> None:
    code, out = run("predict", "video", "--model", "wan2.1-t2v-14b", "--accelerator", "H100-SXM", "--count", "1",
                    "--width", "1280", "--height", "720", "--frames", "81", "--steps", "50", "--json")  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert {"seconds_per_video", "accelerator_seconds_per_video", "compute_seconds_per_video_second"} <= set(data)
    assert data["compute_seconds_per_video_second"] == pytest.approx(data["accelerator_seconds_per_video"] / (81 / 16))
    assert data["price"]["usd_per_video"] > 0


def test_predict_video_generic_model_and_table() -> None:
    code, out = run("predict", "video", "--model", "generic", "--params-b", "5", "--accelerator", "A100-SXM-80GB")
    assert code == 0, out
    assert "seconds per video" in out and "VAE decode" in out
    code, out = run("predict", "video", "--model", "generic", "--accelerator", "H100")
    assert code == 2 and "--params-b" in out


def test_video_realtime_ranks_accelerators() -> None:
    code, out = run("predict", "video-realtime", "--accelerator", "H100-SXM", "--accelerator", "B200", "--json")
    assert code == 0, out
    data = json.loads(out)
    fleets = data["fleets"]
    assert [f["accelerator"] for f in fleets] == ["B200", "H100-SXM"]  # fewest first
    assert fleets[0]["accelerators"] < fleets[1]["accelerators"]


def test_predict_training_json_keeps_the_contract() -> None:
    code, out = run("predict", "training", "--model", "llama-2-70b", "--accelerator", "A100-SXM-80GB",
                    "--count", "2048", "--tokens", "2e12", "--json")  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert {"accelerator_hours", "wall_days", "mfu", "energy_kwh"} <= set(data)
    assert data["wall_days"] == pytest.approx(data["accelerator_hours"] / 2048 / 24)


def test_predict_agent_compares_the_three_retentions() -> None:
    args = ["predict", "agent", "--model", "llama-3.1-70b", "--accelerator", "H100-SXM", "--count", "8",
            "--precision", "fp8", "--turns-per-hour", "30", "--tokens-per-turn", "2000", "--output-per-turn", "300",
            "--idle-s", "60"]  # fmt: skip
    code, out = run(*args, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert set(data["policies"]) == {"hold", "offload", "recompute"}
    assert data["retention"] == data["cheapest_retention"]
    code, out = run(*args, "--retention", "hold", "--json")
    assert json.loads(out)["retention"] == "hold"
    code, out = run(*args, "--retention", "holds")
    assert code == 2 and "'hold'" in out
    code, out = run(*args)
    assert code == 0 and "(cheapest)" in out


def test_modalities_prints_all_three_with_assumptions() -> None:
    code, out = run("predict", "modalities", "--json")
    assert code == 0, out
    data = json.loads(out)
    names = [w["workload"] for w in data["workloads"]]
    assert names == ["1M chat output tokens", "1 minute of 1080p30 video", "1 agent session-hour"]
    assert all(w["usd"] > 0 and w["assumptions"] for w in data["workloads"])
    code, out = run("predict", "modalities", "--offer", "no-such-offer")
    assert code == 2 and "no such offer" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["video", "--model", "llama-3.1-8b", "--accelerator", "H100"], "predict llm"),
        (["video", "--model", "wan2.1-t2v-14b", "--accelerator", "H100", "--precision", "fp4"], "--precision fp8"),
        (["training", "--model", "llama-2-70b", "--accelerator", "A100", "--count", "4", "--tokens", "1e9"], "--count"),
        (["agent", "--model", "llama-3.1-8b", "--accelerator", "L4", "--precision", "bf16", "--turns-per-hour",
          "100", "--tokens-per-turn", "10", "--output-per-turn", "10", "--idle-s", "40"], "at most 89"),
    ],
)  # fmt: skip
def test_bad_workload_requests_are_clear_errors(args: list[str], message: str) -> None:
    code, out = run("predict", *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
