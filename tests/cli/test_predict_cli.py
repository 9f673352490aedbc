from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.test_cli import run

PREDICT = ["predict", "llm", "--model", "llama-3.1-70b", "--accelerator", "H100-SXM", "--count", "8",
           "--precision", "fp8", "--input-tokens", "1000", "--output-tokens", "1000"]  # fmt: skip


def test_predict_llm_json_keeps_the_contract() -> None:
    code, out = run(*PREDICT, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert {"output_tokens_per_s", "ttft_s", "tpot_s", "batch_size", "tensor_parallel", "replicas",
            "kv_capacity_tokens", "bound"} <= set(data)  # fmt: skip
    assert data["tensor_parallel"] * data["replicas"] <= 8


def test_predict_llm_table_names_what_bounds_it() -> None:
    code, out = run(*PREDICT)
    assert code == 0, out
    for text in ("output throughput", "TTFT mean / p99", "TPOT mean / p99", "memory per replica", "bound by"):
        assert text in out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--precision", "fp9", "Did you mean 'fp8'"),
        ("--accelerator", "H100-SMX", "H100-SXM"),
        ("--model", "llama-3.1-71b", "llama-3.1-70b"),
        ("--engine", "vlm", "'vllm'"),
        ("--scenario", "busy", "concurrency:K"),
    ],
)
def test_bad_flags_are_rejected_with_the_closest_value(flag: str, value: str, message: str) -> None:
    args = list(PREDICT)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, out = run(*args)
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_predict_with_a_local_config_json(tmp_path: Path) -> None:
    config = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072}  # fmt: skip
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, out = run("predict", "llm", "--model", str(path), "--accelerator", "L4", "--precision", "bf16", "--json")
    assert code == 0, out
    assert json.loads(out)["output_tokens_per_s"] > 0


def test_models_list_and_show() -> None:
    code, out = run("models", "list", "--json")
    assert code == 0
    assert {m["id"] for m in json.loads(out)} >= {"deepseek-v3", "llama-3.1-405b", "qwen3-235b-a22b"}
    code, out = run("models", "show", "deepseek-v3")
    assert code == 0 and "MLA" in out
    code, out = run("models", "show", "gpt-17")
    assert code == 2 and "Known ids" in out


def test_calibrate_report_prints_every_point() -> None:
    code, out = run("calibrate", "report", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {"measured", "predicted", "error", "role"} <= set(rows[0])
    metrics = [r["metric"] for r in rows]
    assert len(rows) == 42 + 15  # llm-serving.yaml, then video-training.yaml
    assert metrics.count("seconds_per_video") == 8 and metrics.count("accelerator_hours") == 7


def test_calibrate_report_cross_validates_by_publication() -> None:
    code, out = run("calibrate", "report", "--cross-validate", "--json")
    assert code == 0, out
    llm, video = json.loads(out)
    assert llm["folds"] == 2 and set(llm["not_fitted"]) == set()
    fitted = [r for r in llm["rows"] if r["status"] == "fitted"]
    assert len(fitted) == 7 and any(abs(r["held_out_error"] - r["error"]) > 0.05 for r in fitted)
    assert all(r["held_out"] == r["predicted"] for r in llm["rows"] if r["status"] == "uncertain")
    assert {r["publication"] for r in fitted} == {"TensorRT-LLM perf-overview v1.0", "NIM 1.8.0 benchmarking guide"}
    assert video["factors"]["video.attention_fraction"]["prior"] == 0.35


def test_calibrate_fit_writes_an_overlay_that_predictions_then_apply(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "src" / "flopex" / "data" / "calibration" / "llm-serving.yaml"
    points = [p for p in yaml.safe_load(shipped.read_text())["points"] if p["id"].startswith("trtllm")]
    subset = tmp_path / "mine.yaml"
    subset.write_text(yaml.safe_dump({"points": points}))
    out_file = tmp_path / "fitted.yaml"
    code, out = run("calibrate", "fit", str(subset), "--param", "compute.peak_fraction.fp8", "--output", str(out_file))
    assert code == 0, out
    overlay = yaml.safe_load(out_file.read_text())
    fitted = overlay["compute"]["peak_fraction"]["fp8"]["value"]
    code, out = run("calibrate", "report", str(subset), "--calibration", str(out_file), "--json")
    assert code == 0 and 0.2 <= fitted <= 0.8


def test_calibrate_probe_without_a_gpu_says_so_and_fails() -> None:
    code, out = run("calibrate", "probe")
    assert code == 2
    assert "PyTorch is not installed" in out or "no GPU" in out


def test_hosted_systems_are_modelled_from_their_published_speed() -> None:
    code, out = run("predict", "llm", "--model", "llama-3.1-8b", "--accelerator", "cerebras", "--precision", "fp8",
                    "--json")  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["bound"] == "hosted"
    assert data["output_tokens_per_s_per_user"] == 1800  # cerebras.ai launch blog, in hosted.yaml
    assert data["tpot_s"] == 1 / 1800
    code, out = run("predict", "llm", "--model", "deepseek-v3", "--accelerator", "sambanova", "--precision", "fp8")
    assert code == 2 and "publishes no per-user speed" in out


def test_predict_llm_gives_intervals_from_the_out_of_sample_error() -> None:
    args = ("predict", "llm", "--model", "llama-3.1-8b", "--accelerator", "H100-SXM", "--precision", "fp8", "--json")
    code, out = run(*args)
    assert code == 0, out
    j = json.loads(out)
    for key in ("output_tokens_per_s", "ttft_s", "tpot_s"):
        band = j["intervals"][key]
        assert band["low"] < j[key] < band["high"] and "out-of-sample" in band["basis"]
    code, wide = run(*args[:-1], "--confidence", "0.95", "--json")
    w = json.loads(wide)["intervals"]["output_tokens_per_s"]
    assert w["low"] < j["intervals"]["output_tokens_per_s"]["low"]


def test_predict_llm_takes_the_engines_batch_limit() -> None:
    args = ("predict", "llm", "--model", "llama-3.1-8b", "--accelerator", "H100-SXM", "--precision", "fp8",
            "--input-tokens", "128", "--output-tokens", "2048", "--json")  # fmt: skip
    code, out = run(*args, "--max-num-seqs", "64")
    assert code == 0, out
    capped = json.loads(out)
    assert capped["max_num_seqs"] == 64 and capped["batch_size"] <= 64
    code, out = run(*args)
    assert json.loads(out)["output_tokens_per_s"] > capped["output_tokens_per_s"]
    code, out = run(*args, "--max-num-seqs", "0")
    assert code == 2 and "--max-num-seqs" in out


def test_predict_video_and_training_give_intervals_from_their_regimes() -> None:
    code, out = run("predict", "video", "--model", "wan2.1-t2v-14b", "--accelerator", "H100-SXM", "--json")
    assert code == 0, out
    v = json.loads(out)
    band = v["intervals"]["seconds_per_video"]
    assert band["low"] < v["seconds_per_video"] < band["high"] and "video rows" in band["basis"]
    code, out = run("predict", "training", "--model", "llama-2-70b", "--accelerator", "A100-SXM-80GB", "--count",
                    "2048", "--tokens", "2e12", "--json")  # fmt: skip
    assert code == 0, out
    t = json.loads(out)
    hours = t["intervals"]["accelerator_hours"]
    assert hours["low"] < t["accelerator_hours"] < hours["high"] and "training rows" in hours["basis"]
