from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopex.errors import ModelConfigError, UnknownModelError
from flopex.models import load_presets, read_hf_config, resolve_model

DESIGN_LLM_IDS = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b",
    "llama-3.1-405b", "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-72b", "qwen3-235b-a22b", "deepseek-v3",
]  # fmt: skip


def test_every_design_llm_id_has_a_preset() -> None:
    assert set(DESIGN_LLM_IDS) <= set(load_presets())


@pytest.mark.parametrize("model_id", DESIGN_LLM_IDS)
def test_parameter_counts_match_the_published_totals_within_2_percent(model_id: str) -> None:
    preset = load_presets()[model_id]
    assert preset.spec.total_params / 1e9 == pytest.approx(preset.published.total_b, rel=0.02)
    if preset.published.active_b is not None:
        assert preset.spec.active_params / 1e9 == pytest.approx(preset.published.active_b, rel=0.02)
    else:
        assert preset.spec.active_params == preset.spec.total_params


@pytest.mark.parametrize(
    ("model_id", "kib"),
    # KV bytes per token at BF16 from reference/performance.md 1.1
    [("llama-2-70b", 320), ("llama-3.1-8b", 128), ("llama-3.1-405b", 504), ("mixtral-8x7b", 128),
     ("llama-2-7b", 512)],
)  # fmt: skip
def test_kv_bytes_per_token_match_the_reference(model_id: str, kib: int) -> None:
    assert resolve_model(model_id).kv_elements_per_token * 2 == kib * 1024


def test_mla_caches_one_latent_per_token() -> None:
    spec = resolve_model("deepseek-v3")
    assert spec.kv_elements_per_token * 2 / 1024 == pytest.approx(69, rel=0.02)  # reference: about 69 KiB
    assert spec.kv_shards == 1


def test_a_local_config_json_reads_like_the_preset(tmp_path: Path) -> None:
    config = {
        "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 4096,
        "num_hidden_layers": 94, "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128,
        "moe_intermediate_size": 1536, "intermediate_size": 12288, "num_experts": 128, "num_experts_per_tok": 8,
        "vocab_size": 151936, "max_position_embeddings": 40960,
    }  # fmt: skip
    folder = tmp_path / "my-qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    spec = resolve_model(str(folder))
    assert spec.id == "my-qwen"
    assert spec.total_params == resolve_model("qwen3-235b-a22b").total_params


def test_unknown_model_names_the_closest_id() -> None:
    with pytest.raises(UnknownModelError, match="llama-3.1-70b"):
        resolve_model("llama-3.1-7b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"hidden_size": 4096, "num_attention_heads": 32}', "missing 'num_hidden_layers'"),
        ('{"hidden_size": "wide", "num_attention_heads": 32}', "'hidden_size' must be an integer"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ModelConfigError, match=message):
        read_hf_config(path)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no such file"):
        resolve_model(str(tmp_path / "nope" / "config.json"))
