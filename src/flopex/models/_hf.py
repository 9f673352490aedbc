"""Build a `ModelSpec` from a Hugging Face `config.json` (read from disk; nothing is downloaded)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flopex.errors import ModelConfigError, first_validation_error
from flopex.models._spec import MLASpec, ModelSpec, MoESpec

__all__ = ["SUPPORTED_MODEL_TYPES", "read_hf_config", "spec_from_hf_config"]

#: model_type values whose config layout flopex reads. Others with the same keys also work.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3")
_QKV_BIAS_TYPES = ("qwen2",)


def _required(config: Mapping[str, Any], key: str, where: str) -> int:
    value = config.get(key)
    if value is None:
        raise ModelConfigError(
            f"{where}: missing {key!r}. flopex reads decoder-only transformers "
            f"({', '.join(SUPPORTED_MODEL_TYPES)}); add the key or pass a model id (see `flopex models list`)."
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelConfigError(f"{where}: {key!r} must be an integer, got {value!r}.")
    return value


def _moe(config: Mapping[str, Any], where: str) -> MoESpec | None:
    experts = config.get("num_local_experts") or config.get("n_routed_experts") or config.get("num_experts")
    if not experts:
        return None
    shared = int(config.get("n_shared_experts") or 0)
    shared_width = int(config.get("shared_expert_intermediate_size") or 0)
    if shared_width and not shared:
        shared = 1  # Qwen2-MoE: one shared expert of its own width
    width = config.get("moe_intermediate_size") or config.get("intermediate_size")
    return MoESpec(
        num_experts=int(experts),
        experts_per_token=_required(config, "num_experts_per_tok", where),
        expert_intermediate_size=int(width or 0),
        shared_experts=shared,
        shared_intermediate_size=shared_width,
        dense_layers=int(config.get("first_k_dense_replace") or 0),
    )


def _mla(config: Mapping[str, Any], where: str) -> MLASpec | None:
    if config.get("kv_lora_rank") is None:
        return None
    return MLASpec(
        q_lora_rank=config.get("q_lora_rank"),
        kv_lora_rank=_required(config, "kv_lora_rank", where),
        qk_nope_head_dim=_required(config, "qk_nope_head_dim", where),
        qk_rope_head_dim=_required(config, "qk_rope_head_dim", where),
        v_head_dim=_required(config, "v_head_dim", where),
    )


def spec_from_hf_config(config: Mapping[str, Any], model_id: str, *, where: str = "", source: str = "") -> ModelSpec:
    """The ModelSpec a Hugging Face config describes; `where` names the file in error messages."""
    where = where or model_id
    hidden = _required(config, "hidden_size", where)
    heads = _required(config, "num_attention_heads", where)
    layers = _required(config, "num_hidden_layers", where)
    try:
        moe = _moe(config, where)
        mla = _mla(config, where)
        if moe is not None and moe.dense_layers == 0 and config.get("intermediate_size") is None:
            dense_width = moe.expert_intermediate_size  # every layer is MoE: the dense width is never used
        else:
            dense_width = _required(config, "intermediate_size", where)
        architectures = config.get("architectures") or [config.get("model_type") or "unknown"]
        return ModelSpec(
            id=model_id,
            architecture=str(architectures[0]),
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=dense_width,
            vocab_size=_required(config, "vocab_size", where),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=bool(config.get("attention_bias", False)) or config.get("model_type") in _QKV_BIAS_TYPES,
            max_context=int(config.get("max_position_embeddings") or 4096),
            moe=moe,
            mla=mla,
            source=source,
        )
    except ValidationError as exc:
        raise ModelConfigError(f"{where}: {first_validation_error(exc)}.") from None


def read_hf_config(path: Path) -> ModelSpec:
    """Read a local config.json (or a folder holding one) into a ModelSpec named after its folder."""
    file = path / "config.json" if path.is_dir() else path
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelConfigError(f"{file}: no such file. Give a model id or the path to a config.json.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{file}: cannot be read ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(config, dict):
        raise ModelConfigError(f"{file}: expected a JSON object (a Hugging Face config.json).")
    if "text_config" in config and "hidden_size" not in config:
        config = config["text_config"]
    name = file.parent.name if file.name == "config.json" else file.stem
    return spec_from_hf_config(config, name.lower() or "model", where=str(file), source=str(file))
